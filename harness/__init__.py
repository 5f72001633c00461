"""xrbench: a benchmark harness for anomaly detection and classification on X-ray images."""

__version__ = "0.1.0"
