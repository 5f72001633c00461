"""What every column of the site means: the column headers' tooltips and the glossary page,
both from the metric catalogue (`harness.core.metrics`) and the few columns that are not
metrics, so that a new metric is explained wherever it is shown."""

from __future__ import annotations

from harness.core.metrics import METRICS
from harness.site.render import Pages

COLUMNS = {
    "rank": ("Rank", "Position by the board's primary metric on the clean test split (1 = best). A method run "
             "with several seeds is ranked on its mean over seeds."),
    "method": ("Method", "The registered method, with its family and what it learns from (one-class: normal "
               "training images only; few-shot: a handful of normal reference images; supervised: labelled images; "
               "zero-shot: nothing from the board; none: a fixed rule)."),
    "pretraining": ("Pretraining mark", "'pretraining saw <dataset>': the run's backbone card "
                    "(datasets/backbones.toml) lists the board's dataset among its pretraining data. Unless the card "
                    "shows that split disjoint from the board's test split, the run is ranked apart, under 'Possibly "
                    "contaminated'."),
    "delta": ("Δ to leader", "The primary metric minus the leader's, and the p-value of the paired test against "
              "the leader on the same test images (DeLong's test for AUROC, else a paired patient-level "
              "bootstrap). 'tied' marks p ≥ 0.05: the data cannot separate the method from the leader."),
    "verified": ("Verified", "verified: a submitted bundle whose metrics xrbench recomputed from its per-image "
                 "predictions and found equal; failed: it did not verify (never ranked); local: a run of this "
                 "database, not submitted."),
    "device": ("Device", "Where the latency was measured (CUDA-timed on a GPU)."),
}  # fmt: skip


def direction(lower_is_better: bool) -> str:
    return "lower is better" if lower_is_better else "higher is better"


def explanations(task: str | None = None) -> dict[str, str]:
    """Column key -> its one-line explanation (the headers' tooltips)."""
    out = {key: f"{label}: {about}" for key, (label, about) in COLUMNS.items()}
    for _, m in METRICS.items():
        if task is None or task in m.tasks:
            out[m.key] = f"{m.label_for(task)}: {m.about} ({direction(m.lower_is_better)})"
    return out


def glossary_page(pages: Pages) -> None:
    """Every column the site shows, with its direction and definition."""
    metrics = [
        {"key": m.key, "label": m.label, "group": m.group, "about": m.about, "direction": direction(m.lower_is_better),
         "tasks": ", ".join(m.tasks)}
        for _, m in METRICS.items()
    ]  # fmt: skip
    others = [{"key": key, "label": label, "about": about} for key, (label, about) in COLUMNS.items()]
    pages.write("glossary.html", "glossary.html", metrics=metrics, others=others)
