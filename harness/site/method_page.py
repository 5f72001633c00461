"""A method's page: its card, parameters and weights, its result on every board, ROC and PR
curves, reliability diagrams, AUROC against severity, and per board a gallery of its largest
errors and the clean vs corrupted case study, with its maps and the ground truth."""

from __future__ import annotations

import json
import re
from urllib.parse import quote_plus

import numpy as np
import pandas as pd

from harness.results import plots, queries
from harness.results.store import ResultStore
from harness.site.board_page import best_rows
from harness.site.gallery import gallery
from harness.site.render import Pages, slug


def method_page(pages: Pages, store: ResultStore, method: str, board_tables: dict[str, pd.DataFrame]) -> None:
    results, curves, reliability, severity, galleries, sweeps = [], {}, {}, {}, {}, {}
    for board in queries.method_boards(store, method):
        current = board_tables.get(board, pd.DataFrame())
        if current.empty:
            continue
        if not (swept := sweep_rows(current[current["method"] == method])).empty:
            sweeps[board] = pages.export(swept, f"method-{slug(method)}-{slug(board)}-sweep")
        current = best_rows(current)
        current = current[current["method"] == method]
        if current.empty:  # only runs on a superseded edition, or with altered predictions
            continue
        best = current.iloc[0].copy()
        best["board"] = board
        results.append(best)
        curves.update(curve_points(store, board, best["run_id"]))
        bins = queries.calibration_bins(store, best["run_id"])
        if not bins.empty:
            reliability[board] = bins
        sev = queries.severity_aurocs(store, best["run_id"])
        if not sev.empty:
            severity[board] = (sev, best["auroc"])
        galleries[board] = gallery(pages, store, best["run_id"], f"{slug(method)}-{slug(board)}")
    name = slug(method)
    frame = pd.DataFrame(results)
    card = queries.method_card(store, method)
    params = queries.run_params(store, frame.iloc[0]["run_id"]) if len(frame) else None
    pages.write(
        f"methods/{name}.html",
        "method.html",
        method=method,
        card=json.loads(card) if card else None,
        results=pages.export(frame, f"method-{name}"),
        roc=pages.plot(plots.roc_and_pr, curves, f"{name}-roc") if curves else None,
        reliability=pages.plot(plots.reliability_diagrams, reliability, f"{name}-reliability") if reliability else None,
        severity=pages.plot(plots.auroc_vs_severity, severity, f"{name}-severity") if severity else None,
        params=json.loads(params or "{}"),
        weights=frame.iloc[0]["weights_id"] if len(frame) else "n/a",
        galleries={b: g for b, g in galleries.items() if g},
        sweeps=sweeps,
    )


def sweep_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The method's primary metric against every parameter its runs on a board vary (a sweep):
    one row per setting, with the mean and standard deviation over its seeds and the interval
    of one run (its first seed's); empty when every run has the same parameters."""
    if runs.empty:
        return pd.DataFrame()
    params = pd.DataFrame([json.loads(p) for p in runs["params"]], index=runs.index).astype(str)
    varying = [c for c in params.columns if params[c].nunique() > 1]
    if not varying:
        return pd.DataFrame()
    frame = runs.assign(**{c: params[c] for c in varying}).sort_values(["seed", "finished_at"])
    frame = frame.drop_duplicates([*varying, "seed"], keep="last")  # a seed run again counts once
    rows = []
    for setting, group in frame.groupby(varying, sort=True):
        first, values = group.iloc[0], group["value"]
        named = dict(zip(varying, setting if isinstance(setting, tuple) else (setting,), strict=True))
        spread = values.std(ddof=1) if len(group) > 1 else None
        interval = {"ci_low": first["value_ci_low"], "ci_high": first["value_ci_high"]}
        rows.append({**named, "value": values.mean(), "sd": spread, "seeds": len(group), **interval})
    return pd.DataFrame(rows)


def curve_points(store: ResultStore, board: str, run_id: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(labels, scores) of a run's clean test predictions for ROC and PR curves; on
    multi-label boards pooled over (image, finding) pairs (micro average)."""
    frame = store.predictions(run_id)
    frame = frame[(frame["split"] == "test") & (frame["condition"] == "clean")]
    if frame.empty:
        return {}
    if frame["score"].notna().all():
        return {board: (frame["label"].to_numpy(), frame["score"].to_numpy())}
    pooled = np.concatenate(frame["target_labels"].to_numpy()), np.concatenate(frame["scores"].to_numpy())
    return {f"{board} (micro over findings)": pooled}


ARXIV = re.compile(r"arXiv:(\d{4}\.\d{4,5})", re.IGNORECASE)
DOI = re.compile(r"\b(10\.\d{4,9}/[^\s,;]+[^\s,;.])")
YEAR = re.compile(r"\b(19|20)\d\d\b")


def reference_link(reference: str) -> str:
    """Where a card's reference can be read: its arXiv or DOI page, else a scholarly search for a
    reference that cites a paper (names a year); '' for one that does not (a rule, a baseline)."""
    if found := ARXIV.search(reference):
        return f"https://arxiv.org/abs/{found.group(1)}"
    if found := DOI.search(reference):
        return f"https://doi.org/{found.group(1)}"
    if YEAR.search(reference):
        return "https://scholar.google.com/scholar?q=" + quote_plus(reference.split(";")[0])
    return ""


def methods_index(pages: Pages, store: ResultStore) -> None:
    """Every method with a completed run: its card, its paper, and the boards it is ranked on."""
    runs = queries.ok_runs(store)
    rows = []
    for method in sorted(runs["method"].unique()) if not runs.empty else []:
        card = json.loads(queries.method_card(store, method) or "{}")
        boards = sorted(runs[runs["method"] == method]["board"].unique())
        reference = card.get("reference", "")
        rows.append({"method": method, "family": card.get("family", ""), "learning": card.get("learning", ""),
                     "description": card.get("description", ""), "reference": reference,
                     "link": reference_link(reference), "boards": boards})  # fmt: skip
    pages.write("methods/index.html", "methods.html", methods=rows)
