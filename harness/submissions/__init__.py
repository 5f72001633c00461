"""Submission bundles: their format, verification and import into the results database."""
