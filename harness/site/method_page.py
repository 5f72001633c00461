"""A method's page: its card, parameters and weights, its result on every board, ROC and PR
curves, reliability diagrams, AUROC against severity, and per board a gallery of its largest
errors and the clean vs corrupted case study, with its maps and the ground truth."""

from __future__ import annotations

import json
import re
from urllib.parse import quote_plus

import numpy as np
import pandas as pd

from harness.core.maps import decode
from harness.results import plots, queries
from harness.results.store import ResultStore
from harness.site.render import Pages, mask_array, png_array, slug


def method_page(pages: Pages, store: ResultStore, method: str, board_tables: dict[str, pd.DataFrame]) -> None:
    results, curves, reliability, severity, galleries = [], {}, {}, {}, {}
    for board in queries.method_boards(store, method):
        current = board_tables.get(board, pd.DataFrame())
        if current.empty:
            continue
        current = current[(current["method"] == method) & current["best"].fillna(False).astype(bool)]
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
    )


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


def gallery(pages: Pages, store: ResultStore, run_id: str, name: str) -> list[dict]:
    """Thumbnails of a run's gallery: each image with its map and ground truth overlaid."""
    rows = queries.gallery(store, run_id)
    if rows.empty:
        return []
    heats = gallery_maps(store, run_id, rows)
    # One scale for the run, from its clean images: a corrupted case study saturates it
    # rather than washing out every other map.
    clean = [h for h, c in zip(heats, rows["condition"], strict=True) if h is not None and c == "clean"]
    shown = clean or [h for h in heats if h is not None]
    scale = tuple(np.percentile(np.concatenate([h.ravel() for h in shown]), [1, 99])) if shown else (0.0, 1.0)
    out = []
    for k, (row, heat) in enumerate(zip(rows.itertuples(), heats, strict=True)):
        condition = "clean" if row.condition == "clean" else f"{row.condition} s{row.severity}"
        caption = f"{row.image_id} · {condition}" + (f" · score {row.score:.3g}" if row.score == row.score else "")
        thumbnail = (png_array(row.image), heat, mask_array(row.mask), json.loads(row.boxes), scale)
        path = pages.plot(plots.overlay_job, thumbnail, f"{name}-g{k}", "png")
        out.append({"kind": row.kind, "finding": row.finding, "path": path, "caption": caption})
    return out


def gallery_maps(store: ResultStore, run_id: str, rows: pd.DataFrame) -> list[np.ndarray | None]:
    """The stored map of each gallery image (its finding's channel on a multi-label board)."""
    run = store.run(run_id)
    maps = store.maps(run_id) if isinstance(run.get("maps_sha256"), str) else pd.DataFrame()
    stored = {(r.image_id, r.condition, int(r.severity)): r._asdict() for r in maps.itertuples()}
    targets = json.loads(run["targets"]) if isinstance(run.get("targets"), str) else []
    heats = []
    for row in rows.itertuples():
        heat = stored.get((row.image_id, row.condition, int(row.severity)))
        channel = targets.index(row.finding) if row.finding in targets else 0
        heats.append(None if heat is None else decode(heat)[channel])
    return heats


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
