"""Robustness of one run to the stress suite, and its corruption errors relative to a
reference method (computed where the leaderboard is assembled, since it needs another run)."""

from __future__ import annotations

import numpy as np

Aurocs = dict[tuple[str, int], float]  # (condition, severity) -> AUROC; ("clean", 0) included


def robustness_summary(aurocs: Aurocs) -> dict:
    """Clean vs corrupted AUROC: the mean over corrupted conditions, the worst one, the drop."""
    clean = aurocs[("clean", 0)]
    corrupted = {k: v for k, v in aurocs.items() if k[0] != "clean"}
    if not corrupted:
        return {"clean_auroc": clean}
    worst = min(corrupted, key=lambda k: corrupted[k])
    mean = float(np.mean(list(corrupted.values())))
    return {
        "clean_auroc": clean,
        "mean_corrupted_auroc": mean,
        "worst_condition": worst[0],
        "worst_severity": worst[1],
        "worst_auroc": corrupted[worst],
        "auroc_drop": clean - mean,
    }


def corruption_errors(aurocs: Aurocs, reference: Aurocs) -> tuple[float | None, float | None]:
    """(mCE, relative mCE), ImageNet-C style, or None where undefined.

    Error is 1 - AUROC. CE of a corruption: summed error over its severities divided by the
    reference method's; mCE: mean CE over corruptions. Relative CE uses the errors' increase
    over clean instead (undefined when the reference does not degrade). Both need the
    reference's AUROC on every condition of the run.
    """
    corrupted = [k for k in aurocs if k[0] != "clean"]
    if not corrupted or not all(k in reference for k in aurocs):
        return None, None
    ce, rel = [], []
    for name in sorted({k[0] for k in corrupted}):
        keys = [k for k in corrupted if k[0] == name]
        ref_err = sum(1 - reference[k] for k in keys)
        ce.append(sum(1 - aurocs[k] for k in keys) / ref_err if ref_err > 0 else np.nan)
        ref_increase = sum(reference[("clean", 0)] - reference[k] for k in keys)
        increase = sum(aurocs[("clean", 0)] - aurocs[k] for k in keys)
        rel.append(increase / ref_increase if ref_increase > 0 else np.nan)
    mce = float(np.mean(ce)) if not np.isnan(ce).any() else None
    relative = float(np.mean(rel)) if not np.isnan(rel).any() else None
    return mce, relative
