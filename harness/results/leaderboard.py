"""The leaderboard of every board, assembled from the stored runs and stored back in the
`leaderboard` table, which the site reads.

Assembly is where results of several runs meet: which board edition (frozen split and dataset
hashes) is current, each method's best run on it by the board's primary metric (for a method
run with several seeds: its best configuration by the mean across seeds, shown by the run of
the median seed), mean and standard deviation across seeds, ranks, tie
marks (the task's paired test of each method's best run against the leader's) and corruption
errors relative to the board's reference method. A run whose predictions no longer match
their recorded hash is never ranked: it is listed with a flag.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from harness.boards.ledger import Contamination, contamination
from harness.core.errors import DataIntegrityError
from harness.results import queries
from harness.results.compare import tie_p_values
from harness.results.store import ResultStore, now
from harness.scoring.robustness import corruption_errors

TIE_ALPHA = 0.05
# Runs that differ only in their seed: the same method, parameters, code, weights, precision
# and device type. A method is ranked on the mean of its best such group across seeds.
SEED_GROUP_COLUMNS = (
    "method", "params", "method_code", "weights_id", "precision", "explain", "split_part(device, ':', 1)",
)  # fmt: skip


@dataclass(frozen=True)
class Edition:
    """The board file a leaderboard ranks runs of, as the database recorded it."""

    board: str
    version: int | None
    task: str
    primary_metric: str
    split_sha256: str
    dataset_sha256: str | None
    reference_method: str | None
    description: str = ""
    targets: tuple[str, ...] = ()
    reported: tuple[dict, ...] = ()  # the board file's [[reported]] numbers, never ranked
    map_sample: int = 0  # maps kept per split (0: every clean image)
    variant: dict = field(default_factory=dict)  # a few-shot variant's parent, shots, draw
    datasets: tuple[str, ...] = ()  # the datasets its images come from


def edition(store: ResultStore, board: str) -> Edition | None:
    """The newest recorded edition of a board (highest version, then most recently recorded);
    for a database written before editions were recorded, that of the board's latest run."""
    rows = queries.board_edition_row(store, board)
    if not rows.empty:
        r = rows.iloc[0]
        targets = tuple(json.loads(r["targets"])) if isinstance(r["targets"], str) else ()
        dataset = r["dataset_sha256"] if isinstance(r["dataset_sha256"], str) else None
        return Edition(
            board,
            int(r["version"]),
            r["task"],
            r["primary_metric"],
            r["split_sha256"],
            dataset,
            r["reference_method"] if isinstance(r["reference_method"], str) else None,
            r["description"] or "",
            targets,
            tuple(json.loads(r["reported"])) if isinstance(r.get("reported"), str) else (),
            int(r["map_sample"]) if pd.notna(r.get("map_sample")) else 0,
            json.loads(r["variant"]) if isinstance(r.get("variant"), str) else {},
            tuple(json.loads(r["datasets"])) if isinstance(r.get("datasets"), str) else (),
        )
    runs = queries.latest_run_edition(store, board)
    if runs.empty:
        return None
    r = runs.iloc[0]
    targets = tuple(json.loads(r["targets"])) if isinstance(r["targets"], str) else ()
    version = None if pd.isna(r["board_version"]) else int(r["board_version"])
    return Edition(board, version, r["task"], "auroc", r["split_sha256"], r["dataset_sha256"], None, "", targets)


def edition_runs(store: ResultStore, ed: Edition) -> tuple[pd.DataFrame, int]:
    """(ok runs ranked on the edition, number of ok runs on other editions). Without a dataset
    hash (real datasets) the runs on the board's split with the latest run's dataset hash; with
    none on the board's split, the latest run's split and dataset."""
    runs = queries.board_runs(store, ed.board, SEED_GROUP_COLUMNS)
    if runs.empty:
        return runs, 0
    split, dataset = ed.split_sha256, ed.dataset_sha256
    if dataset is None:
        on_split = runs[runs["split_sha256"] == split]
        latest = (on_split if not on_split.empty else runs).iloc[-1]
        split, dataset = latest["split_sha256"], latest["dataset_sha256"]
    current = (runs["split_sha256"] == split) & (runs["dataset_sha256"] == dataset)
    return runs[current].reset_index(drop=True), int((~current).sum())


def _condition_aurocs(store: ResultStore, run_ids: list[str]) -> dict[str, dict[tuple[str, int], float]]:
    rows = queries.condition_aurocs(store, run_ids)
    out: dict[str, dict[tuple[str, int], float]] = {r: {} for r in run_ids}
    for r in rows.itertuples():
        out[r.run_id][(r.condition, int(r.severity))] = float(r.value)
    return out


def _corruption_errors(runs: pd.DataFrame, aurocs: dict, reference_method: str | None) -> pd.DataFrame:
    """mCE and relative mCE of each run against the newest run of the reference method that was
    measured on every condition of it (the reference method against itself)."""
    references = runs[runs["method"] == reference_method].sort_values("finished_at", ascending=False)
    rows = []
    for r in runs.itertuples():
        needed = set(aurocs[r.run_id])
        if r.method == reference_method:
            ref_id = r.run_id
        else:
            ref_id = next((x for x in references["run_id"] if needed <= set(aurocs[x])), None)
        mce, relative = corruption_errors(aurocs[r.run_id], aurocs[ref_id]) if ref_id else (None, None)
        rows.append({"run_id": r.run_id, "mce": mce, "relative_mce": relative, "reference_run_id": ref_id})
    return pd.DataFrame(rows, columns=["run_id", "mce", "relative_mce", "reference_run_id"]).set_index("run_id")


def _verified(store: ResultStore, run_ids: list[str]) -> dict[str, str | None]:
    """run id -> None, or why it cannot be ranked: its predictions no longer match their hash,
    or it is a submission that failed verification (imported with --unverified)."""
    failed = queries.failed_submissions(store, run_ids)
    flags: dict[str, str | None] = {
        r.run_id: f"submission failed verification (check '{r.failed_check}'): {r.message}" for r in failed.itertuples()
    }
    for run_id in set(run_ids) - set(flags):
        try:
            store.predictions(run_id)
            flags[run_id] = None
        except DataIntegrityError as exc:
            flags[run_id] = str(exc)
    return flags


def newest_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """The newest run of each seed of each seed group: a seed run again replaces its older run."""
    return runs.sort_values("finished_at", ascending=False).drop_duplicates(["seed_group", "seed"])


def seed_statistics(rankable: pd.DataFrame) -> pd.DataFrame:
    """Per rankable run: its seed group's number of seeds, mean and standard deviation (ddof 1)
    of the primary metric across seeds, the newest run of each seed counting once."""
    newest = newest_per_seed(rankable)
    stats = newest.groupby("seed_group")["value"].agg(seeds="count", seed_mean="mean", seed_std="std")
    per_run = rankable[["run_id", "seed_group"]].join(stats, on="seed_group")
    return per_run.drop(columns="seed_group").set_index("run_id")


def ranked_runs(rankable: pd.DataFrame) -> pd.DataFrame:
    """One run per method, best first: of the method's seed group with the highest mean (then
    the newest), the run of the median seed (the lower of the two middle ones), so that a
    method with several seeds is neither ranked nor shown on its luckiest one."""
    newest = newest_per_seed(rankable)
    order = newest.assign(last=newest.groupby("seed_group")["finished_at"].transform("max"))
    order = order.sort_values(["seed_mean", "last"], ascending=[False, False])
    best_groups = order.drop_duplicates("method")["seed_group"]
    picked = []
    for group in best_groups:
        members = newest[newest["seed_group"] == group].sort_values(["value", "seed"])
        picked.append(members.iloc[(len(members) - 1) // 2])
    return pd.DataFrame(picked, columns=rankable.columns)


def assemble(store: ResultStore, board: str) -> pd.DataFrame:
    """Rank the board's current edition and store the result (replacing the board's rows)."""
    ed = edition(store, board)
    if ed is None:
        return pd.DataFrame()
    runs, _ = edition_runs(store, ed)
    ids = runs["run_id"].tolist()
    flags = _verified(store, ids)
    table = runs.join(queries.primary_values(store, ids, ed.primary_metric), on="run_id")
    table = table.join(_corruption_errors(runs, _condition_aurocs(store, ids), ed.reference_method), on="run_id")
    table["flag"] = table["run_id"].map(flags)
    table["primary_metric"] = ed.primary_metric
    judged = [_judge(card, ed) for card in table["weights_card"]]
    table["contamination"] = [j.reason for j in judged]
    table["pretraining"] = [json.dumps(list(j.marks)) if j.marks else None for j in judged]
    rankable = table[table["flag"].isna() & table["value"].notna()]
    table = table.join(seed_statistics(rankable), on="run_id")
    table["best"], table["rank"], table["tie_p"] = False, pd.NA, float("nan")
    for apart in (False, True):  # the possibly contaminated runs are ranked among themselves
        part = rankable[rankable["contamination"].notna() == apart]
        _rank(store, ed, table, table.loc[table["run_id"].isin(part["run_id"])])
    table["tied"] = (table["tie_p"] >= TIE_ALPHA) & (table["rank"] > 1)
    table["board"], table["assembled_at"] = board, now()
    columns = ["board", "run_id", "method", "primary_metric", "value", "ci_low", "ci_high", "best", "rank", "tie_p"]
    columns += ["tied", "mce", "relative_mce", "reference_run_id", "flag", "seeds", "seed_mean", "seed_std"]
    columns += ["seed_group", "contamination", "pretraining", "assembled_at"]
    apart = table["contamination"].notna()
    out = (
        table[columns]
        .assign(apart=apart)
        .sort_values(["apart", "rank", "value"], ascending=[True, True, False], na_position="last")
        .drop(columns="apart")
    )
    queries.replace_leaderboard(store, board, out)
    return out.reset_index(drop=True)


def _judge(card: object, ed: Edition) -> Contamination:
    """A run's stored backbone card judged on the edition's datasets (runs stored before cards:
    not contaminated, as they all started from random or ImageNet weights)."""
    if not isinstance(card, str) or not ed.datasets:
        return Contamination((), None)
    return contamination(json.loads(card), ed.board, set(ed.datasets))


def _rank(store: ResultStore, ed: Edition, table: pd.DataFrame, candidates: pd.DataFrame) -> None:
    """Rank `candidates` (one run per method, see `ranked_runs`) and test each against their
    leader, writing best, rank and tie_p into `table`."""
    if candidates.empty:
        return
    best = ranked_runs(candidates)
    leaders_first = best["run_id"].tolist()
    p_values = tie_p_values(store, ed.task, leaders_first, ed.primary_metric)
    rows = table["run_id"].isin(leaders_first)
    table.loc[rows, "best"] = True
    table.loc[rows, "rank"] = table.loc[rows, "run_id"].map({r: k + 1 for k, r in enumerate(leaders_first)})
    table.loc[rows, "tie_p"] = table.loc[rows, "run_id"].map(dict(zip(leaders_first, p_values, strict=True)))


def assemble_all(store: ResultStore) -> list[str]:
    """Assemble the leaderboard of every board with a completed run; returns their names."""
    boards = queries.boards_with_ok_runs(store)
    for board in boards:
        assemble(store, board)
    queries.drop_leaderboards_except(store, boards)
    return boards


def run_entry(store: ResultStore, run_id: str) -> dict:
    """A run's leaderboard row (rank, ties, mCE), or {} when it is not on a current edition."""
    row = queries.leaderboard_row(store, run_id)
    if row is None:
        return {}
    row["ranked"] = queries.ranked_count(store, row["board"])
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
