"""Is a method's own uncertainty useful? For methods that report a variance per score
(MC-dropout, test-time augmentation), over every (image, finding) pair of a test condition:

- `uncertainty_auroc`: the AUROC of the variance for telling the classifier's errors (decisions
  at the validation threshold: the board's F1 threshold, or each finding's) from its correct
  decisions: 0.5 is useless, 1 flags every error first;
- the risk-coverage curve when the most uncertain pairs are deferred first (`abstain_by =
  "uncertainty"`, its AURC as `aurc_uncertainty`), beside the task's curve that defers the least
  confident first (stored without `abstain_by`, its AURC as `aurc`). Risk here is the error
  rate at the validation threshold, so both curves end at the same point.
"""

from __future__ import annotations

import numpy as np

from harness.scoring.evaluation import Evaluation, Fitted, metric_row
from harness.scoring.metrics import MetricValue, auroc
from harness.scoring.selective import deferral_curve

NAN = float("nan")


def decisions(scores: np.ndarray, fitted: Fitted) -> np.ndarray:
    """Positive decisions at the validation threshold(s), the scores' shape."""
    threshold = fitted.thresholds if fitted.thresholds is not None else fitted.threshold
    return scores >= np.asarray(threshold)


def uncertainty_rows(
    truth: np.ndarray, scores: np.ndarray, variances: np.ndarray, fitted: Fitted, condition: str, severity: int
) -> Evaluation:
    """The metrics and curve of the module docstring for one test condition."""
    errors = (decisions(scores, fitted) != (truth == 1)).ravel().astype(float)
    spread = variances.reshape(errors.shape)
    out = Evaluation()
    n_images, n_errors = len(truth), int(errors.sum())
    value = auroc(errors, spread) if 0 < n_errors < len(errors) else NAN
    flag = None if 0 < n_errors < len(errors) else "the classifier makes no errors (or only errors) here"
    out.metrics.append(
        metric_row(condition, severity, MetricValue("uncertainty_auroc", value, NAN, NAN, n_images, n_errors), flag)
    )
    coverage, risk = deferral_curve(errors, np.argsort(spread, kind="stable"))
    out.metrics.append(
        metric_row(
            condition, severity, MetricValue("aurc_uncertainty", float(risk.mean()), NAN, NAN, n_images, n_errors)
        )
    )
    out.add_curve(coverage, risk, condition, severity, "uncertainty")
    return out
