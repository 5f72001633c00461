"""Building blocks methods share: backbones and their weights, feature extractors, embedding and
patch-bank methods, nearest neighbours, the coreset, scorers, augmentations, losses,
reconstruction networks, the training loop and its checkpoints, in-harness pretraining."""
