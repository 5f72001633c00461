"""Registered methods: one module per method (configured variants of a method, such as
`simclr-knn`, live beside it). `methods/intensity.py` is the shortest complete example;
`methods/knn.py` shows a method built from the shared extractor and scorer pieces."""
