"""Model selection inside a method: what a method that trains may measure on the validation
split to pick its epoch (the harness's own metrics are the score stage's, not a method's)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def macro_auroc(targets: np.ndarray, logits: np.ndarray) -> float:
    """Mean of scikit-learn's AUROC over the findings (columns) that have both classes; NaN
    when none has."""
    usable = [k for k in range(targets.shape[1]) if targets[:, k].min() != targets[:, k].max()]
    if not usable:
        return float("nan")
    return float(np.mean([roc_auc_score(targets[:, k], logits[:, k]) for k in usable]))
