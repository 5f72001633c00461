"""Foundations every stage uses and that use no stage: errors, paths, content hashes, provenance,
verified cache files, stored map encoding, precisions, the registry type and the metric catalogue."""
