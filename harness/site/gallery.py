"""Gallery thumbnails shared by the method and comparison pages: a gallery image with a run's
stored map overlaid on one scale per run, and the ground truth's outline and boxes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.core.maps import decode
from harness.results import plots, queries
from harness.results.store import ResultStore
from harness.site.render import Pages, mask_array, png_array


def map_scale(heats: list[np.ndarray | None], conditions: list[str]) -> tuple[float, float]:
    """One colour scale for a run's maps, from its clean images: a corrupted case study
    saturates it rather than washing out every other map."""
    clean = [h for h, c in zip(heats, conditions, strict=True) if h is not None and c == "clean"]
    shown = clean or [h for h in heats if h is not None]
    return tuple(np.percentile(np.concatenate([h.ravel() for h in shown]), [1, 99])) if shown else (0.0, 1.0)


def thumbnails(
    pages: Pages, rows: pd.DataFrame, heats: list[np.ndarray | None], name: str, scores: bool = True
) -> list[dict]:
    """Queue one overlay per gallery row; returns each one's kind, finding, path and caption
    (with the row's score unless `scores` is false: a row drawn under another run's map)."""
    scale = map_scale(heats, rows["condition"].tolist())
    out = []
    for k, (row, heat) in enumerate(zip(rows.itertuples(), heats, strict=True)):
        condition = "clean" if row.condition == "clean" else f"{row.condition} s{row.severity}"
        score = f" · score {row.score:.3g}" if scores and row.score == row.score else ""
        caption = f"{row.image_id} · {condition}{score}"
        thumbnail = (png_array(row.image), heat, mask_array(row.mask), json.loads(row.boxes), scale)
        path = pages.plot(plots.overlay_job, thumbnail, f"{name}-g{k}", "png")
        out.append({"kind": row.kind, "finding": row.finding, "path": path, "caption": caption,
                    "has_map": heat is not None})  # fmt: skip
    return out


def gallery(pages: Pages, store: ResultStore, run_id: str, name: str) -> list[dict]:
    """Thumbnails of a run's gallery: each image with its map and ground truth overlaid."""
    rows = queries.gallery(store, run_id)
    return thumbnails(pages, rows, gallery_maps(store, run_id, rows), name) if not rows.empty else []


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
