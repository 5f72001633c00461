"""Every question asked of the results database, by name: the SQL of the leaderboard's assembly,
the site, comparisons, grids and submissions lives here, beside the schema (`store`), and
nowhere else (a test looks).

Each function takes an open `ResultStore`. Run ids are passed as lists (`unnest`), never
formatted into the SQL.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.results.store import RUN_TABLES, ResultStore, insert_rows

# --- runs ------------------------------------------------------------------------------------------


def ok_runs(store: ResultStore) -> pd.DataFrame:
    """Every completed run, oldest first."""
    return store.query("SELECT * FROM runs WHERE status = 'ok' ORDER BY finished_at")


def all_runs(store: ResultStore) -> pd.DataFrame:
    """Every run of the database, whatever its status, oldest first."""
    return store.query("SELECT * FROM runs ORDER BY started_at")


def recent_runs(store: ResultStore, limit: int) -> pd.DataFrame:
    """The newest runs with their status, clean test AUROC and error."""
    return store.query(
        "SELECT r.run_id, r.board, r.method, r.status, r.started_at, m.value AS auroc, r.error FROM runs r "
        "LEFT JOIN metrics m ON m.run_id = r.run_id AND m.metric = 'auroc' AND m.slice = 'all' "
        "AND m.condition = 'clean' ORDER BY r.started_at DESC LIMIT ?",
        [limit],
    )


def run_seeds(store: ResultStore, run_ids: list[str]) -> pd.DataFrame:
    return store.query("SELECT run_id, seed, finished_at FROM runs WHERE run_id IN (SELECT unnest(?))", [run_ids])


def run_params(store: ResultStore, run_id: str) -> str | None:
    """A run's parameters as the JSON it stored."""
    rows = store.query("SELECT params FROM runs WHERE run_id = ?", [run_id])
    return None if rows.empty else rows.iloc[0, 0]


def method_card(store: ResultStore, method: str) -> str | None:
    """The method's card (JSON) as its most recent run stored it."""
    rows = store.query(
        "SELECT method_card FROM runs WHERE method = ? AND method_card IS NOT NULL "
        "ORDER BY finished_at DESC NULLS LAST LIMIT 1",
        [method],
    )
    return None if rows.empty else rows.iloc[0, 0]


def method_boards(store: ResultStore, method: str) -> list[str]:
    """The boards a method has a completed run on."""
    rows = store.query("SELECT DISTINCT board FROM runs WHERE method = ? AND status = 'ok'", [method])
    return sorted(rows["board"])


def boards_with_ok_runs(store: ResultStore) -> list[str]:
    return store.query("SELECT DISTINCT board FROM runs WHERE status = 'ok' ORDER BY board")["board"].tolist()


def board_runs(store: ResultStore, board: str, seed_group_columns: tuple[str, ...]) -> pd.DataFrame:
    """A board's completed runs, oldest first, with a hash of the columns that make a seed group."""
    group = ", ".join(f"coalesce({c}, chr(0))" for c in seed_group_columns)
    return store.query(
        "SELECT run_id, method, seed, finished_at, split_sha256, dataset_sha256, weights_card, "
        f"md5(concat_ws('|', {group})) AS seed_group FROM runs WHERE board = ? AND status = 'ok' ORDER BY finished_at",
        [board],
    )


def latest_run_edition(store: ResultStore, board: str) -> pd.DataFrame:
    """What the latest completed run of a board recorded of its board (databases before editions)."""
    return store.query(
        "SELECT board_version, task, split_sha256, dataset_sha256, targets FROM runs WHERE board = ? "
        "AND status = 'ok' ORDER BY finished_at DESC LIMIT 1",
        [board],
    )


def superseded_runs(store: ResultStore, board: str) -> int:
    """Completed runs of the board not on its current edition (not in its leaderboard)."""
    rows = store.query(
        "SELECT count(*) AS n FROM runs WHERE board = ? AND status = 'ok' "
        "AND run_id NOT IN (SELECT run_id FROM leaderboard WHERE board = ?)",
        [board, board],
    )
    return int(rows["n"].iloc[0])


def done_cells(store: ResultStore) -> dict[str, str]:
    """Cell key -> the newest completed run with it (what a grid skips)."""
    rows = store.query("SELECT cell_key, max(run_id) AS run_id FROM runs WHERE status = 'ok' GROUP BY cell_key")
    return dict(zip(rows["cell_key"], rows["run_id"], strict=True))


def cell_keys(store: ResultStore, run_ids: list[str]) -> set[str]:
    return set(store.query("SELECT cell_key FROM runs WHERE run_id IN (SELECT unnest(?))", [run_ids])["cell_key"])


def prediction_count(store: ResultStore, run_id: str) -> int:
    """Rows of a run's predictions: every validation and test image under every condition."""
    return int(store.query("SELECT count(*) AS n FROM predictions WHERE run_id = ?", [run_id])["n"].item())


def local_predictions_hash(store: ResultStore, run_id: str) -> str | None:
    """The predictions hash of a run of this database that no import wrote (None: there is none)."""
    rows = store.query(
        "SELECT predictions_sha256 FROM runs WHERE run_id = ? "
        "AND run_id NOT IN (SELECT run_id FROM submissions WHERE imported_rows)",
        [run_id],
    )
    return None if rows.empty else rows["predictions_sha256"].iloc[0]


# --- metrics -----------------------------------------------------------------------------------


def primary_values(store: ResultStore, run_ids: list[str], metric: str) -> pd.DataFrame:
    """Runs' clean test `metric` with its interval, indexed by run id."""
    return store.query(
        "SELECT run_id, value, ci_low, ci_high FROM metrics WHERE condition = 'clean' AND slice = 'all' "
        "AND metric = ? AND run_id IN (SELECT unnest(?))",
        [metric, run_ids],
    ).set_index("run_id")


def primary_value(store: ResultStore, run_id: str, metric: str) -> float | None:
    """A run's clean test value of `metric` over all its images (None when it has none)."""
    rows = primary_values(store, [run_id], metric)
    return None if rows.empty else float(rows["value"].iloc[0])


def completed_metrics(store: ResultStore, columns: tuple[str, ...]) -> pd.DataFrame:
    """Every metric row of the completed runs: run id, board, method and `columns`."""
    shown = ", ".join(f"m.{c}" for c in ("run_id", "board", "method", *columns))
    return store.query(f"SELECT {shown} FROM metrics m JOIN runs r USING (run_id) WHERE r.status = 'ok' ORDER BY ALL")


def clean_metrics(store: ResultStore, run_ids: list[str]) -> pd.DataFrame:
    """Every clean test metric of the runs over all their images (slice 'all'), with intervals."""
    return store.query(
        "SELECT run_id, metric, value, ci_low, ci_high FROM metrics WHERE condition = 'clean' AND slice = 'all' "
        "AND run_id IN (SELECT unnest(?))",
        [run_ids],
    )


def condition_aurocs(store: ResultStore, run_ids: list[str]) -> pd.DataFrame:
    """AUROC of each run over all its images (slice 'all'), per condition and severity (clean too)."""
    return store.query(
        "SELECT run_id, condition, severity, value FROM metrics WHERE slice = 'all' AND metric = 'auroc' "
        "AND run_id IN (SELECT unnest(?))",
        [run_ids],
    )


def corrupted_aurocs(store: ResultStore, run_ids: list[str]) -> pd.DataFrame:
    """AUROC of each run under each corruption and severity, with its method."""
    return store.query(
        "SELECT m.run_id, r.method, m.condition, m.severity, m.value FROM metrics m JOIN runs r USING (run_id) "
        "WHERE m.slice = 'all' AND m.metric = 'auroc' AND m.condition <> 'clean' AND m.run_id IN (SELECT unnest(?))",
        [run_ids],
    )


def named_metrics(store: ResultStore, run_ids: list[str], metrics: list[str]) -> pd.DataFrame:
    """Clean test values of the named metrics, every slice, with each run's method."""
    return store.query(
        "SELECT r.method, m.slice, m.metric, m.value, m.ci_low, m.ci_high, m.n, m.n_pos, m.flag FROM metrics m "
        "JOIN runs r USING (run_id) WHERE m.condition = 'clean' AND m.metric IN (SELECT unnest(?)) "
        "AND m.run_id IN (SELECT unnest(?)) ORDER BY m.slice, r.method, m.metric",
        [metrics, run_ids],
    )


def slice_aurocs(store: ResultStore, run_ids: list[str]) -> pd.DataFrame:
    """Clean test AUROC of every slice but `all`, with each run's method."""
    return store.query(
        "SELECT r.method, m.slice, m.value, m.ci_low, m.ci_high, m.n, m.n_pos, m.flag FROM metrics m "
        "JOIN runs r USING (run_id) WHERE m.condition = 'clean' AND m.metric = 'auroc' AND m.slice <> 'all' "
        "AND m.run_id IN (SELECT unnest(?)) ORDER BY m.slice",
        [run_ids],
    )


def finding_metrics(store: ResultStore, run_id: str) -> pd.DataFrame:
    """A multi-label run's clean test metrics per finding."""
    return store.query(
        "SELECT slice, metric, value, ci_low, ci_high, n_pos, flag FROM metrics "
        "WHERE run_id = ? AND condition = 'clean' AND slice LIKE 'finding=%' ORDER BY slice, metric",
        [run_id],
    )


def evaluated_finding_slices(store: ResultStore, run_id: str) -> set[str]:
    """The `finding=<name>` slices with a clean test AUROC (the findings a macro mean averaged)."""
    rows = store.query(
        "SELECT slice FROM metrics WHERE run_id = ? AND condition = 'clean' AND metric = 'auroc' "
        "AND slice LIKE 'finding=%' AND value IS NOT NULL AND NOT isnan(value)",
        [run_id],
    )
    return set(rows["slice"])


def run_table(
    store: ResultStore, table: str, run_id: str, columns: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
) -> pd.DataFrame:
    """A run's rows of one of the run tables (`store.RUN_TABLES`): the named `columns`, or every
    column but the run id and those in `exclude`; metrics and latency in a stable order."""
    if table not in RUN_TABLES or table == "runs":
        raise ValueError(f"not a table of a run's rows: {table}")
    shown = ", ".join(columns) if columns else f"* EXCLUDE ({', '.join(('run_id', *exclude))})"
    order = {"metrics": "ORDER BY ALL", "latency": "ORDER BY batch_size"}.get(table, "")
    return store.query(f"SELECT {shown} FROM {table} WHERE run_id = ? {order}", [run_id])


def calibration_bins(store: ResultStore, run_id: str) -> pd.DataFrame:
    """A run's clean reliability bins, per calibrator."""
    return store.query(
        "SELECT calibrator, mean_confidence, accuracy, count FROM calibration_bins "
        "WHERE run_id = ? AND condition = 'clean' ORDER BY calibrator, \"index\"",
        [run_id],
    )


def severity_aurocs(store: ResultStore, run_id: str) -> pd.DataFrame:
    """A run's AUROC per corruption and severity."""
    return store.query(
        "SELECT condition, severity, value FROM metrics WHERE run_id = ? AND slice = 'all' "
        "AND metric = 'auroc' AND condition <> 'clean'",
        [run_id],
    )


def risk_coverage(store: ResultStore, run_id: str) -> pd.DataFrame:
    """A run's clean risk-coverage curves, by what orders the deferrals."""
    return store.query(
        "SELECT coverage, risk, coalesce(abstain_by, 'confidence') AS abstain_by FROM risk_coverage "
        "WHERE run_id = ? AND condition = 'clean' ORDER BY abstain_by, coverage",
        [run_id],
    )


def robustness(store: ResultStore, run_ids: list[str]) -> pd.DataFrame:
    return store.query(
        "SELECT run_id, mean_corrupted_auroc, worst_auroc, worst_condition, worst_severity FROM robustness "
        "WHERE run_id IN (SELECT unnest(?))",
        [run_ids],
    ).set_index("run_id")


def latency(store: ResultStore, run_ids: list[str]) -> pd.DataFrame:
    return store.query(
        "SELECT run_id, batch_size, p50_ms, throughput_ips, param_count, device AS latency_device FROM latency "
        "WHERE run_id IN (SELECT unnest(?))",
        [run_ids],
    )


def gallery(store: ResultStore, run_id: str) -> pd.DataFrame:
    return store.query("SELECT * FROM gallery WHERE run_id = ? ORDER BY kind, finding, rank", [run_id])


# --- boards and the leaderboard -------------------------------------------------------------------


def boards_with_reported_numbers(store: ResultStore) -> list[str]:
    """Boards whose newest recorded edition holds [[reported]] numbers."""
    rows = store.query(
        "SELECT board, arg_max(reported, (coalesce(version, 0), recorded_at)) AS reported FROM boards GROUP BY board"
    )
    return sorted(rows.loc[rows["reported"].notna(), "board"])


def board_edition_row(store: ResultStore, board: str) -> pd.DataFrame:
    """The newest recorded edition of a board: highest version, then most recently recorded."""
    return store.query(
        "SELECT * FROM boards WHERE board = ? ORDER BY version DESC NULLS LAST, recorded_at DESC LIMIT 1", [board]
    )


def reference_method(store: ResultStore, board: str) -> str | None:
    rows = store.query("SELECT reference_method FROM boards WHERE board = ? LIMIT 1", [board])
    return None if rows.empty or not isinstance(rows.iloc[0, 0], str) else rows.iloc[0, 0]


def replace_leaderboard(store: ResultStore, board: str, rows: pd.DataFrame) -> None:
    """The board's leaderboard rows, replaced in one transaction."""
    with store.transaction() as con:
        con.execute("DELETE FROM leaderboard WHERE board = ?", [board])
        insert_rows(con, "leaderboard", rows)


def drop_leaderboards_except(store: ResultStore, boards: list[str]) -> None:
    """Forget the leaderboards of boards that have no completed run any more."""
    with store.transaction() as con:
        con.execute("DELETE FROM leaderboard WHERE board NOT IN (SELECT unnest(?))", [boards])


def leaderboard_row(store: ResultStore, run_id: str) -> dict[str, Any] | None:
    rows = store.query("SELECT * FROM leaderboard WHERE run_id = ?", [run_id])
    return None if rows.empty else rows.iloc[0].to_dict()


def ranked_count(store: ResultStore, board: str) -> int:
    """How many runs the board's stored leaderboard ranks."""
    rows = store.query("SELECT count(*) AS n FROM leaderboard WHERE board = ? AND rank IS NOT NULL", [board])
    return int(rows["n"][0])


def leaderboards(store: ResultStore) -> pd.DataFrame:
    """The stored leaderboard of every board, best first."""
    return store.query("SELECT * FROM leaderboard ORDER BY board, rank NULLS LAST, value DESC")


def board_entries(store: ResultStore, board: str) -> pd.DataFrame:
    """The board's leaderboard rows (ranked runs first) with their runs' seed, device, weights, time and
    parameters."""
    return store.query(
        "SELECT l.run_id, l.method, l.value, l.ci_low AS value_ci_low, l.ci_high AS value_ci_high, l.best, "
        "l.rank, l.tie_p, l.tied, l.mce, l.relative_mce, l.flag, l.seeds, l.seed_mean, l.seed_std, "
        "l.contamination, l.pretraining, r.seed, "
        "r.device, r.weights_id, r.finished_at, r.precision, r.params FROM leaderboard l JOIN runs r USING (run_id) "
        "WHERE l.board = ? ORDER BY l.rank NULLS LAST, l.value DESC NULLS LAST",
        [board],
    )


# --- submissions -----------------------------------------------------------------------------------


def failed_submissions(store: ResultStore, run_ids: list[str]) -> pd.DataFrame:
    """Submissions among the runs that failed verification (imported with --unverified)."""
    return store.query(
        "SELECT run_id, failed_check, message FROM submissions WHERE status <> 'verified' "
        "AND run_id IN (SELECT unnest(?))",
        [run_ids],
    )


def submissions_of(store: ResultStore, run_ids: list[str], primary_metric: str) -> pd.DataFrame:
    """Per submitted run: verification, date, code, bundle and the reported primary metric."""
    return store.query(
        "SELECT s.run_id, s.status AS verification, s.verified_at, s.code, s.bundle, r.value AS reported_value "
        "FROM submissions s LEFT JOIN reported_metrics r ON r.run_id = s.run_id AND r.condition = 'clean' "
        "AND r.slice = 'all' AND r.metric = ? WHERE s.run_id IN (SELECT unnest(?))",
        [primary_metric, run_ids],
    )


def submission(store: ResultStore, run_id: str) -> pd.DataFrame:
    return store.query("SELECT * FROM submissions WHERE run_id = ?", [run_id])


def submissions_with_bundle(store: ResultStore, bundle_sha256: str) -> pd.DataFrame:
    return store.query("SELECT run_id, status FROM submissions WHERE bundle_sha256 = ?", [bundle_sha256])


def submission_bundle(store: ResultStore, run_id: str) -> pd.DataFrame:
    return store.query("SELECT bundle, bundle_sha256, status FROM submissions WHERE run_id = ?", [run_id])


def reported_vs_verified(store: ResultStore, run_id: str) -> pd.DataFrame:
    """A submission's clean test metrics as reported beside as verified."""
    return store.query(
        "SELECT metric, r.value AS reported, m.value AS verified "
        "FROM (SELECT metric, value FROM reported_metrics WHERE run_id = ? AND condition = 'clean' "
        "AND slice = 'all') r FULL JOIN (SELECT metric, value FROM metrics WHERE run_id = ? "
        "AND condition = 'clean' AND slice = 'all') m USING (metric) ORDER BY metric",
        [run_id, run_id],
    )


def replace_submission(
    store: ResultStore, run_id: str, tables: dict[str, pd.DataFrame], own_rows: bool, run_tables: tuple[str, ...]
) -> None:
    """Store an imported submission in one transaction: its earlier import's rows go, then the
    run's rows (unless `own_rows`: a run of this database keeps its own), the reported metrics
    and the submission row."""
    with store.transaction() as con:
        for table in ("submissions", "reported_metrics", *(() if own_rows else run_tables)):
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        for table, frame in tables.items():
            if own_rows and table in run_tables:
                continue
            insert_rows(con, table, frame)
