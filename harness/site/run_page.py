"""A run's page: its provenance and latency; for a submission its verification and every clean
metric reported beside verified; for a multi-label run its per-finding table and curves."""

from __future__ import annotations

import json

import numpy as np

from harness.core.metrics import METRICS
from harness.results import plots, queries
from harness.results.store import ResultStore
from harness.site.render import Pages, code_reference, slug

FINDING_COLUMNS = [(m.name, m.label) for _, m in METRICS.items() if m.per_finding and "multilabel" in m.tasks]
"""The per-finding table of a multi-label run page (F1, precision, recall at the threshold)."""


def run_page(pages: Pages, store: ResultStore, run_id: str) -> None:
    run = store.run(run_id)
    run["versions"] = json.loads(run["versions"] or "{}")
    if isinstance(run.get("diagnostics"), str):
        run["diagnostics"] = json.dumps(json.loads(run["diagnostics"]), indent=1)
    latency = pages.export(queries.run_table(store, "latency", run_id), f"run-{slug(run_id)}-latency")
    pages.write(
        f"runs/{slug(run_id)}.html",
        "run.html",
        run=run,
        latency=latency,
        submission=submission(pages, store, run_id),
        findings=findings_section(pages, store, run),
    )


def submission(pages: Pages, store: ResultStore, run_id: str) -> dict | None:
    """A submitted run's verification, and its clean test metrics reported beside verified."""
    rows = queries.submission(store, run_id)
    if rows.empty:
        return None
    info = rows.iloc[0].to_dict()
    info["notes"] = json.loads(info["notes"] or "[]")
    info["code_ref"] = code_reference(json.loads(info["code"]))
    both = queries.reported_vs_verified(store, run_id)
    info["metrics"] = pages.export(both, f"run-{slug(run_id)}-reported-vs-verified")
    return info


def findings_section(pages: Pages, store: ResultStore, run: dict) -> dict | None:
    """A multi-label run's clean test metrics per finding (value and interval), its ROC and
    PR curves per finding, and its risk-coverage curves (by confidence and, when the method
    reports a variance, by uncertainty)."""
    if run.get("task") != "multilabel":
        return None
    run_id, name = run["run_id"], f"run-{slug(run['run_id'])}"
    metrics = queries.finding_metrics(store, run_id)
    overall = queries.clean_metrics(store, [run_id]).drop(columns="run_id").set_index("metric")
    risk = queries.risk_coverage(store, run_id)
    curves = finding_curves(store, run_id, json.loads(run.get("targets") or "[]"))
    metrics = metrics.assign(finding=metrics["slice"].str.removeprefix("finding="))
    rows = [
        {"finding": f, **{r.metric: r._asdict() for r in group.itertuples(index=False)}}
        for f, group in metrics.groupby("finding", sort=False)
    ]
    return {
        "table": pages.export(metrics, f"{name}-findings"),
        "rows": rows,
        "columns": FINDING_COLUMNS,
        "overall": {m: r._asdict() for m, r in zip(overall.index, overall.itertuples(index=False), strict=True)},
        "curves": pages.plot(plots.roc_and_pr, curves, f"{name}-findings-roc-pr") if curves else None,
        "risk": pages.plot(plots.risk_coverage_curves, risk, f"{name}-risk-coverage") if not risk.empty else None,
    }


def finding_curves(store: ResultStore, run_id: str, targets: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(truth, logits) of each finding with both classes on the clean test split."""
    frame = store.predictions(run_id)
    test = frame[(frame["split"] == "test") & (frame["condition"] == "clean")]
    if test.empty:
        return {}
    truth, scores = np.stack(test["target_labels"].to_numpy()), np.stack(test["scores"].to_numpy())
    return {t: (truth[:, k], scores[:, k]) for k, t in enumerate(targets) if truth[:, k].min() != truth[:, k].max()}
