"""Method-against-method pages (`compare/<a>-vs-<b>.html`) for the top pairs of every board:
the paired difference with its interval and p-value on each board both are ranked on, their
slices side by side, and the same gallery images under both methods' maps."""

from __future__ import annotations

import pandas as pd

from harness.core.errors import XRBenchError
from harness.results import queries
from harness.results.compare import compare_runs
from harness.results.store import ResultStore
from harness.site.board_page import best_rows
from harness.site.gallery import gallery_maps, thumbnails
from harness.site.render import Pages, num, slice_order, slug

TOP = 3
"""Each board's best `TOP` methods are compared pairwise."""
SHARED_IMAGES = 6
"""Gallery images shown under both methods' maps, per board."""


def compare_path(a: str, b: str) -> str:
    return f"compare/{slug(a)}-vs-{slug(b)}.html"


def top_pairs(tables: dict[str, pd.DataFrame]) -> dict[tuple[str, str], str]:
    """The method pairs among each board's top ranked methods, the better-ranked one first
    where they first meet, each with its page's path."""
    pairs: dict[tuple[str, str], str] = {}
    for table in tables.values():
        best = best_rows(table)
        methods = best[best["rank"].notna()].sort_values("rank")["method"].head(TOP).tolist() if not best.empty else []
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                if (b, a) not in pairs:
                    pairs.setdefault((a, b), compare_path(a, b))
    return pairs


def best_runs(tables: dict[str, pd.DataFrame], method: str) -> dict[str, pd.Series]:
    """The method's ranked best run on each board."""
    out = {}
    for board, table in tables.items():
        rows = best_rows(table)
        rows = rows[rows["method"] == method] if not rows.empty else rows
        if not rows.empty:
            out[board] = rows.iloc[0]
    return out


def board_difference(store: ResultStore, board: str, run_a: pd.Series, run_b: pd.Series) -> dict:
    """The paired comparison of the two runs on the board's clean test images."""
    row = {"board": board, "run_a": run_a["run_id"], "run_b": run_b["run_id"]}
    metric = "auroc"
    try:
        c = compare_runs(store, run_a["run_id"], run_b["run_id"], metric=metric)
    except XRBenchError as exc:  # different test images (another dataset version): say so
        return {**row, "value_a": run_a["value"], "value_b": run_b["value"], "reason": str(exc)}
    p = c.delong_p if c.delong_p == c.delong_p else c.bootstrap_p
    return {**row, "value_a": c.value_a, "value_b": c.value_b, "difference": c.difference, "ci_low": c.ci_low,
            "ci_high": c.ci_high, "p": p, "test": "DeLong" if c.delong_p == c.delong_p else "paired bootstrap",
            "reason": ""}  # fmt: skip


def shared_gallery(pages: Pages, store: ResultStore, run_a: str, run_b: str, name: str) -> list[dict]:
    """Gallery images of either run (the first `SHARED_IMAGES`), each under both runs' maps."""
    rows = pd.concat([queries.gallery(store, run_a), queries.gallery(store, run_b)], ignore_index=True)
    if rows.empty:
        return []
    rows = rows.drop_duplicates(["image_id", "condition", "severity"]).head(SHARED_IMAGES).reset_index(drop=True)
    sides = [
        thumbnails(pages, rows, gallery_maps(store, run, rows), f"{name}-{k}", scores=False)
        for k, run in enumerate((run_a, run_b))
    ]
    return [{"caption": a["caption"], "kind": a["kind"], "a": a, "b": b} for a, b in zip(*sides, strict=True)]


def compare_page(pages: Pages, store: ResultStore, a: str, b: str, tables: dict[str, pd.DataFrame]) -> None:
    runs_a, runs_b = best_runs(tables, a), best_runs(tables, b)
    boards = []
    for board in sorted(set(runs_a) & set(runs_b)):
        ra, rb = runs_a[board], runs_b[board]
        name = f"{slug(a)}-vs-{slug(b)}-{slug(board)}"
        slices = queries.slice_aurocs(store, [ra["run_id"], rb["run_id"]])
        boards.append({
            "board": board,
            "difference": board_difference(store, board, ra, rb),
            "slices": slice_rows(slices, a, b),
            "images": shared_gallery(pages, store, ra["run_id"], rb["run_id"], name),
        })  # fmt: skip
    summary = pd.DataFrame([x["difference"] for x in boards])
    pages.write(compare_path(a, b), "compare.html", a=a, b=b, boards=boards,
                table=pages.export(summary, f"compare-{slug(a)}-vs-{slug(b)}"))  # fmt: skip


def slice_rows(slices: pd.DataFrame, a: str, b: str) -> list[dict]:
    """One row per slice: each method's AUROC with its interval, and the difference."""
    out = []
    for name in sorted(set(slices["slice"]), key=slice_order) if not slices.empty else []:
        here = slices[slices["slice"] == name].set_index("method")
        cells = [here.loc[m] if m in here.index else None for m in (a, b)]
        finite = [c is not None and c["value"] == c["value"] for c in cells]
        shown = [
            f"{num(c['value'])} [{num(c['ci_low'], 2)}, {num(c['ci_high'], 2)}]" if ok
            else "too few cases" if c is not None else "no result"
            for c, ok in zip(cells, finite, strict=True)
        ]  # fmt: skip
        both = all(finite)
        out.append({"slice": name, "a": shown[0], "b": shown[1],
                    "difference": cells[0]["value"] - cells[1]["value"] if both else None})  # fmt: skip
    return out


def compare_index(pages: Pages, pairs: dict[tuple[str, str], str]) -> None:
    pages.write("compare/index.html", "compare_index.html", pairs=[(a, b, path) for (a, b), path in pairs.items()])
