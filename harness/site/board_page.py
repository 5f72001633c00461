"""A board's page: its leaderboard (best run per method, ranked, with every column of the
metric catalogue that the board has), the robustness heatmap, accuracy against latency,
per-slice AUROC and localization."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.core.metrics import column_key, leaderboard_metrics, names
from harness.results import plots, queries
from harness.results.leaderboard import TIE_ALPHA, edition
from harness.results.store import ResultStore
from harness.site.glossary import explanations
from harness.site.render import Pages, Table, code_reference, num, slice_order, slug


def columns(task: str, groups: tuple[str, ...]) -> list[tuple[str, str, bool]]:
    """A board table's columns of the metric groups: (key, label, lower is better)."""
    return [(m.key, m.label_for(task), m.lower_is_better) for m in leaderboard_metrics(task, groups)]


COMPACT = ("mean_corrupted_auroc", "p50_ms", "throughput_ips")
"""What the first screen shows beside rank, method, primary metric, margin and verification."""
GROUPS = (
    ("Ranking metrics", ("ranking",)),
    ("Calibration", ("calibration",)),
    ("Localization", ("localization",)),
    ("Robustness and cost", ("robustness", "cost")),
)


def column_groups(task: str, present: set[str]) -> list[tuple[str, list[tuple[str, str, bool]]]]:
    """The board's further columns, grouped as the page's collapsible sections (only those it has)."""
    out = []
    for title, groups in GROUPS:
        shown = [c for c in columns(task, groups) if c[0] in present]
        if shown:
            out.append((title, shown))
    return out


def method_cards(store: ResultStore, methods: list[str]) -> dict[str, dict]:
    """Each method's stored card (family, learning type), for the line beneath its name."""
    return {m: json.loads(queries.method_card(store, m) or "{}") for m in methods}


def best_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a board table that are their method's ranked best run, in rank order."""
    if table.empty:
        return table
    return table[table["best"].fillna(False).astype(bool)].reset_index(drop=True)


def ranked_apart(best: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the ranked best runs, those ranked apart as possibly contaminated), each in rank order."""
    if best.empty or "contamination" not in best:
        return best, best.iloc[0:0]
    apart = best["contamination"].notna()
    return best[~apart].reset_index(drop=True), best[apart].reset_index(drop=True)


def filter_choices(table: pd.DataFrame, cards: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """The leaderboard's filters, each with the values its rows hold: (row attribute, values)."""
    if table.empty:
        return []
    verification = table["verification"].where(table["verification"].notna(), "local")
    present = {
        "family": {cards.get(m, {}).get("family") for m in table["method"]},
        "learning": {cards.get(m, {}).get("learning") for m in table["method"]},
        "verification": set(verification),
        "device": set(table["device"]),
    }
    return [(key, sorted(v for v in values if v)) for key, values in present.items()]


def board_table(store: ResultStore, board: str) -> pd.DataFrame:
    """One row per run on the board's current edition, as assembled in the leaderboard table
    (ranked best runs first), with every clean metric, robustness, latency and submission."""
    entries = queries.board_entries(store, board)
    if entries.empty:
        return entries
    ids = entries["run_id"].tolist()
    metrics = queries.clean_metrics(store, ids)
    wide = metrics.pivot(index="run_id", columns="metric", values="value")
    wide.columns = [column_key(c) for c in wide.columns]
    located = metrics[metrics["metric"].isin(names("localization"))]
    for bound in ("ci_low", "ci_high") if not located.empty else ():
        interval = located.pivot(index="run_id", columns="metric", values=bound)
        interval.columns = [f"{column_key(c)}_{bound}" for c in interval.columns]
        wide = wide.join(interval)
    latency = queries.latency(store, ids)
    one = latency[latency["batch_size"] == 1].set_index("run_id")[["p50_ms", "param_count", "latency_device"]]
    many = latency[latency["batch_size"] == 32].set_index("run_id")[["throughput_ips"]]
    table = entries.set_index("run_id").join(wide).join(queries.robustness(store, ids)).join(one).join(many)
    return table.join(submissions(store, ids, board)).reset_index()


def submissions(store: ResultStore, ids: list[str], board: str) -> pd.DataFrame:
    """Per submitted run: verification status and date, the reported primary metric and a
    short code reference (runs of this database have none)."""
    ed = edition(store, board)
    frame = queries.submissions_of(store, ids, ed.primary_metric if ed else "auroc")
    frame["code_ref"] = [code_reference(json.loads(c)) for c in frame["code"]]
    return frame.drop(columns="code").set_index("run_id")


def variant_of(store: ResultStore, board: str) -> dict:
    """A few-shot variant's parent, shots and draw; {} for any other board."""
    ed = edition(store, board)
    return ed.variant if ed else {}


TRACKS = {"shots": "few-shot", "noise": "noisy-training"}
"""The variant tracks a board page shows: the `[variant]` key that varies, and its name."""


def track_rows(variant_tables: dict[str, pd.DataFrame], variants: dict[str, dict], key: str) -> pd.DataFrame:
    """One track of a board (`key`: shots or noise): per method and value, the primary metric of
    its best run on each draw's variant, summarised over the draws (mean, standard deviation,
    range)."""
    rows = [
        {"method": r.method, key: variants[b][key], "draw": variants[b]["draw"], "value": r.value}
        for b, table in variant_tables.items() if key in variants[b] and not table.empty
        for r in best_rows(table).itertuples()
    ]  # fmt: skip
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows).groupby(["method", key])["value"].agg(["mean", "std", "min", "max", "count"])
    return out.reset_index().rename(columns={"count": "draws", "std": "sd"}).sort_values(["method", key])


def track_grid(pages: Pages, rows: pd.DataFrame, key: str, name: str) -> dict:
    """A track as shown: one row per method, one column per value (exported as rows)."""
    values = sorted(rows[key].unique())
    cells = {(r["method"], r[key]): r for r in rows.to_dict("records")}
    table = [{"method": m, "cells": [cells.get((m, v)) for v in values]} for m in dict.fromkeys(rows["method"])]
    labels = [f"k = {v}" if key == "shots" else f"{v:.0%} abnormal" for v in values]
    return {"title": TRACKS[key], "labels": labels, "rows": table, "table": pages.export(rows, f"{name}-{TRACKS[key]}")}


def board_page(
    pages: Pages,
    store: ResultStore,
    board: str,
    table: pd.DataFrame,
    pairs: dict[tuple[str, str], str],
    tracks: dict[str, pd.DataFrame] | None = None,
) -> dict:
    """Write the board's page, linking each method compared with the leader to the comparison;
    returns what the index shows of it."""
    ed = edition(store, board)
    task = ed.task if ed else "anomaly"
    best, apart = ranked_apart(best_rows(table))
    name = slug(board)
    ids = best["run_id"].tolist() if not best.empty else []
    heatmap, corrupt = corruption_heatmap(pages, store, best, ids, name)
    slice_table, slice_grid, slice_methods = slices(pages, store, ids, name)
    localization = localization_table(pages, store, ids, name)
    cards = method_cards(store, sorted(set(table["method"]))) if not table.empty else {}
    info = {
        "board": board,
        "slug": name,
        "task": task,
        "primary": column_key(ed.primary_metric if ed else "auroc"),
        "description": ed.description if ed else "",
        "methods": len(best),
        "superseded": queries.superseded_runs(store, board),
        "split_sha256": ed.split_sha256 if ed else "",
        "dataset_sha256": (ed.dataset_sha256 or "") if ed else "",
        "best_method": best.iloc[0]["method"] if len(best) else "",
        "best_value": best.iloc[0]["value"] if len(best) else None,
        "updated": str(table["finished_at"].max())[:16] if not table.empty else "",
        "mce_reference": queries.reference_method(store, board),
        "map_sample": ed.map_sample if ed else 0,
    }
    pages.write(
        f"boards/{name}.html",
        "board.html",
        info=info,
        best=best,
        all_runs=pages.export(table, f"{name}-all-runs"),
        best_ids=set(ids) | set(apart["run_id"] if not apart.empty else ()),
        apart=apart,
        flagged=table[table["flag"].notna()] if not table.empty else table,
        table=pages.export(best, f"{name}-leaderboard"),
        compact=[c for c in columns(task, ("robustness", "cost")) if c[0] in COMPACT and c[0] in best.columns],
        groups=column_groups(task, set(best.columns)) if not best.empty else [],
        cards=cards,
        filters=filter_choices(table, cards),
        leader=best.iloc[0]["value"] if len(best) else None,
        primary_label=dict((k, label) for k, label, _ in columns(task, ("ranking",))).get(
            info["primary"], info["primary"]
        ),
        explain=explanations(task),
        localization=localization,
        heatmap=heatmap,
        scatter=latency_scatter(pages, best, name),
        slices=slice_table,
        slice_grid=slice_grid,
        slice_methods=slice_methods,
        corruptions=corrupt,
        tie_alpha=TIE_ALPHA,
        compared=leader_comparisons(best, pairs),
        tracks=[track_grid(pages, rows, key, name) for key, rows in (tracks or {}).items() if not rows.empty],
        variant=ed.variant if ed else {},
        reported=reported_table(pages, ed.reported if ed else (), name, table, ed.board if ed else board),
    )
    return info


def leader_comparisons(best: pd.DataFrame, pairs: dict[tuple[str, str], str]) -> dict[str, str]:
    """Each ranked method's comparison page with the board's leader, where one was built."""
    if best.empty:
        return {}
    leader = best.iloc[0]["method"]
    return {m: pairs.get((leader, m)) or pairs.get((m, leader)) for m in best["method"][1:] if
            pairs.get((leader, m)) or pairs.get((m, leader))}  # fmt: skip


def reported_table(
    pages: Pages, reported: tuple[dict, ...], name: str, table: pd.DataFrame, board: str
) -> Table | None:
    """The numbers papers published on the board's protocol, as the board file gives them, with
    the runs verified here of the same recipe beside them (`verified_beside`)."""
    if not reported:
        return None
    keys = ["method", "metric", "value", "spread", "n_runs", "source", "protocol"]
    rows = [{k: entry.get(k) for k in keys} | verified_beside(entry, table, board) for entry in reported]
    return pages.export(pd.DataFrame(rows), f"{name}-reported")


def verified_beside(entry: dict, table: pd.DataFrame, board: str) -> dict:
    """For an entry naming the xrbench recipe it runs (`runs_here`): the mean, standard deviation
    (ddof 1) and number of seeds of its metric over this board's ranked runs of that method whose
    parameters include the recipe's, the newest run of each seed counting once; else the
    command that would run it."""
    recipe = entry.get("runs_here")
    out: dict = {"here": "", "here_mean": None, "here_sd": None, "here_seeds": 0, "here_command": ""}
    if not recipe:
        return out
    params = recipe.get("params", {})
    out["here"] = " ".join([recipe["method"], *(f"{k}={v}" for k, v in params.items())])
    args = " ".join(f"--param {k}={v}" for k, v in params.items())
    out["here_command"] = f"make bench METHOD={recipe['method']} BOARD={board}" + (f" ARGS='{args}'" if args else "")
    key = column_key(entry["metric"])
    if table.empty or key not in table:
        return out
    runs = table[(table["method"] == recipe["method"]) & table["flag"].isna()]
    matches = [all(json.loads(p).get(k) == v for k, v in params.items()) for p in runs["params"]]
    runs = runs[np.array(matches, dtype=bool)]
    values = runs.sort_values("finished_at", ascending=False).drop_duplicates("seed")[key].dropna()
    if len(values):
        sd = float(values.std(ddof=1)) if len(values) > 1 else None
        out |= {"here_mean": float(values.mean()), "here_sd": sd, "here_seeds": len(values)}
    return out


def latency_scatter(pages: Pages, best: pd.DataFrame, name: str) -> str | None:
    """Accuracy against latency of the best runs measured at batch 1."""
    points = best.dropna(subset=["p50_ms"]) if not best.empty else best
    if points.empty:
        return None
    data = points.rename(columns={"p50_ms": "latency_ms"})[["method", "auroc", "latency_ms"]]
    return pages.plot(plots.accuracy_vs_latency, data, f"{name}-scatter")


def corruption_heatmap(
    pages: Pages, store: ResultStore, best: pd.DataFrame, ids: list[str], name: str
) -> tuple[str | None, Table | None]:
    """AUROC per method (rows, in rank order) and corrupted condition (columns)."""
    corrupt = queries.corrupted_aurocs(store, ids)
    if corrupt.empty:
        return None, None
    corrupt["column"] = corrupt["condition"] + " s" + corrupt["severity"].astype(str)
    grid = corrupt.pivot(index="method", columns="column", values="value")
    grid = grid.reindex(index=[m for m in best["method"] if m in grid.index])
    plot = pages.plot(plots.corruption_heatmap, grid, f"{name}-corruptions")
    return plot, pages.export(grid.reset_index(), f"{name}-corruptions")


def localization_table(pages: Pages, store: ResultStore, ids: list[str], name: str) -> Table | None:
    """Localization metrics of the best runs, overall and per finding, with intervals."""
    frame = queries.named_metrics(store, ids, list(names("localization")))
    return pages.export(frame, f"{name}-localization") if not frame.empty else None


def slice_cell(row: pd.Series) -> dict:
    """One cell of the slice grid: the AUROC with its interval and counts, or why there is none.
    A value with a flag is a multi-label macro mean over only some findings (marked *)."""
    if not np.isfinite(row["value"]):
        return {"shown": "too few cases", "value": "", "interval": "", "count": f"n={num(row['n'])}", "worst": False}
    return {
        "shown": num(row["value"]) + ("*" if isinstance(row["flag"], str) else ""),
        "value": f"{row['value']:.6f}",
        "interval": f"[{num(row['ci_low'], 2)}, {num(row['ci_high'], 2)}]",
        "count": f"n={num(row['n'])}, {num(row['n_pos'])} abnormal",
        "worst": bool(row["worst"]),
    }


def slices(pages: Pages, store: ResultStore, ids: list[str], name: str) -> tuple[Table, list[dict], list[str]]:
    """Per-slice AUROC of the best runs: the exported rows, and the grid shown (one row per
    slice in natural order, one cell per method), each method's worst slice marked."""
    rows = queries.slice_aurocs(store, ids)
    if rows.empty:
        return pages.export(rows, f"{name}-slices"), [], []
    subgroup = ~rows["slice"].str.startswith("finding=") & np.isfinite(rows["value"].astype(float))
    lowest = rows[subgroup].groupby("method")["value"].transform("min")
    rows["worst"] = subgroup & (rows["value"] == lowest.reindex(rows.index))
    methods = list(dict.fromkeys(rows["method"]))
    cells = {(r.method, r.slice): slice_cell(r) for _, r in rows.iterrows()}
    grid = [
        {"slice": s, "order": i, "cells": [cells.get((m, s)) for m in methods]}
        for i, s in enumerate(sorted(set(rows["slice"]), key=slice_order))
    ]
    return pages.export(rows.drop(columns="worst"), f"{name}-slices"), grid, methods
