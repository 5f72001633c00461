"""Self-supervised pretraining inside the harness (`pretraining`), by SimCLR, MoCo, MAE or
CutPaste (one module each)."""
