"""Registered methods: one module per method. See methods/knn.py for a short example."""
