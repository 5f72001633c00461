"""Results in DuckDB: runs, per-image predictions and metrics, with full provenance.

A run is inserted as `running` when it starts; its predictions, metrics and final status are
written in one transaction when it ends, so a crash or Ctrl-C leaves no partial results. A
run that fails is marked `failed` with its error.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from harness.core.errors import DatabaseLocked, DataIntegrityError, UnknownRunError, XRBenchError, first_line
from harness.core.fingerprints import PREDICTION_KEY, PREDICTION_SCHEMA, PREDICTIONS_HASH_SCHEME, predictions_sha256
from harness.core.maps import maps_sha256

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    board VARCHAR NOT NULL,
    board_version INTEGER,
    method VARCHAR NOT NULL,
    params VARCHAR,             -- JSON object, merged with the method's defaults
    targets VARCHAR,            -- multi-label boards: JSON list, the order of predictions.scores
    task VARCHAR,               -- anomaly | multilabel
    seed INTEGER,
    git_commit VARCHAR,
    git_dirty BOOLEAN,
    split_sha256 VARCHAR,
    excluded_images VARCHAR,    -- JSON list of manifest images left out on the run's machine (NULL: none)
    dataset_sha256 VARCHAR,
    weights_id VARCHAR,
    weights_sha256 VARCHAR,
    weights_card VARCHAR,       -- JSON: the weights' card from datasets/backbones.toml (pretraining data)
    python_version VARCHAR,
    torch_version VARCHAR,
    timm_version VARCHAR,
    xrbench_version VARCHAR,
    versions VARCHAR,           -- JSON object of other library versions
    device VARCHAR,
    threads INTEGER,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR NOT NULL,    -- running | ok | failed
    error VARCHAR,
    fit_seconds DOUBLE,
    predict_seconds DOUBLE,
    threshold DOUBLE,           -- decision threshold chosen on the validation split
    map_level DOUBLE,           -- map value exceeded by 5% of normal validation pixels (box metrics)
    temperature DOUBLE,         -- multi-label boards: logit temperature fitted on validation
    predictions_sha256 VARCHAR, -- over every stored prediction, to spot silent changes
    fit_peak_memory_bytes BIGINT,
    decode_ips DOUBLE,          -- data pipeline: PNG decode + resize, images per second
    cache_read_ips DOUBLE,      -- data pipeline: reading the preprocessed cache
    precision VARCHAR,          -- autocast dtype of predict: fp32 | bf16 | fp16
    explain VARCHAR,            -- gradcam | gradcam++ when the maps are saliency maps of the score
    diagnostics VARCHAR,        -- JSON: what the fitted method reports (Method.diagnostics)
    method_card VARCHAR,        -- JSON: the method's card as the site shows it
    method_code VARCHAR,        -- JSON: source files and their SHA-256, or a plugin's distribution and version
    predictions_hash_scheme INTEGER, -- how predictions_sha256 was computed (NULL: scheme 1)
    maps_sha256 VARCHAR,        -- over the stored maps (NULL when the method keeps none)
    scoring_version INTEGER,    -- harness.scoring.score.SCORING_VERSION of the code that scored the run
    host VARCHAR,               -- the machine and process that ran it: a 'running' run whose
    pid INTEGER,                -- process is gone is stale (see ResultStore.stale_runs)
    process_started BIGINT,     -- the process's start time (clock ticks since boot), against pid reuse
    cell_key VARCHAR,           -- what identifies the result (harness.run.runner.cell_key): grids skip done cells
    cpu_features VARCHAR,       -- JSON: torch's CPU capability and numpy's SIMD levels (provenance.cpu_features)
    stress_sha256 VARCHAR       -- the corrupted test set the run read (harness.data.stress.stress_sha256)
);
CREATE TABLE IF NOT EXISTS predictions (
    run_id VARCHAR NOT NULL,
    image_id VARCHAR NOT NULL,
    patient_id VARCHAR,         -- for patient-level (cluster) resampling
    split VARCHAR NOT NULL,
    condition VARCHAR NOT NULL,
    severity INTEGER NOT NULL DEFAULT 0,
    label INTEGER,              -- 1: abnormal (any finding)
    score DOUBLE,               -- anomaly boards
    scores DOUBLE[],            -- multi-label boards: one logit per board target
    target_labels INTEGER[],    -- multi-label boards: multi-hot truth, same order
    variances DOUBLE[]          -- methods reporting uncertainty: each score's variance, same order
);
CREATE TABLE IF NOT EXISTS maps (
    run_id VARCHAR NOT NULL,
    image_id VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    condition VARCHAR NOT NULL,
    severity INTEGER NOT NULL,
    channels INTEGER,           -- 1 on anomaly boards, one per target on multi-label boards
    height INTEGER,
    width INTEGER,
    scale DOUBLE,               -- value = float16 value * scale
    data BLOB                   -- float16, little-endian, (channels, height, width)
);
CREATE TABLE IF NOT EXISTS gallery (
    run_id VARCHAR NOT NULL,
    kind VARCHAR,               -- false positive | false negative | case study
    finding VARCHAR,            -- multi-label boards: the finding the error is about
    rank INTEGER,
    image_id VARCHAR,
    condition VARCHAR,
    severity INTEGER,
    score DOUBLE,
    margin DOUBLE,              -- distance to the threshold
    image BLOB,                 -- PNG of the input at the board's resolution
    mask BLOB,                  -- PNG of the ground-truth mask, when the board has masks
    boxes VARCHAR               -- JSON [[x, y, w, h], ...] in board pixels
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id VARCHAR NOT NULL,
    board VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    condition VARCHAR NOT NULL,
    severity INTEGER NOT NULL DEFAULT 0,
    slice VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE,
    ci_low DOUBLE,
    ci_high DOUBLE,
    n INTEGER,
    n_pos INTEGER,
    flag VARCHAR                -- why a value is missing or unreliable (small slice, small n)
);
CREATE TABLE IF NOT EXISTS calibration_bins (
    run_id VARCHAR NOT NULL,
    condition VARCHAR NOT NULL,
    severity INTEGER NOT NULL,
    calibrator VARCHAR NOT NULL,  -- none | platt | isotonic
    "index" INTEGER,
    lower DOUBLE,
    upper DOUBLE,
    mean_confidence DOUBLE,
    accuracy DOUBLE,             -- fraction of abnormal images in the bin
    count INTEGER
);
CREATE TABLE IF NOT EXISTS risk_coverage (
    run_id VARCHAR NOT NULL,
    condition VARCHAR NOT NULL,
    severity INTEGER NOT NULL,
    coverage DOUBLE,
    risk DOUBLE,
    abstain_by VARCHAR          -- what orders the deferrals: confidence, or the method's uncertainty
);
CREATE TABLE IF NOT EXISTS latency (
    run_id VARCHAR,             -- NULL for a stand-alone `xrbench latency` measurement
    board VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    params VARCHAR,
    measured_at TIMESTAMP,
    device VARCHAR,
    timer VARCHAR,              -- cuda_events | perf_counter
    threads INTEGER,
    resolution INTEGER,
    batch_size INTEGER,
    precision VARCHAR,          -- fp32 | fp16 | bf16 (autocast)
    channels_last BOOLEAN,
    compile BOOLEAN,
    warmup INTEGER,
    iterations INTEGER,
    p50_ms DOUBLE,
    p95_ms DOUBLE,
    p99_ms DOUBLE,
    mean_ms DOUBLE,
    host_p50_ms DOUBLE,
    throughput_ips DOUBLE,
    peak_memory_bytes BIGINT,
    memory_kind VARCHAR,        -- cuda_max_allocated | cpu_peak_rss_increase
    param_count BIGINT,
    bank_bytes BIGINT,
    flops_per_image DOUBLE,
    compile_seconds DOUBLE
);
CREATE TABLE IF NOT EXISTS robustness (
    run_id VARCHAR NOT NULL,
    clean_auroc DOUBLE,
    mean_corrupted_auroc DOUBLE,
    worst_condition VARCHAR,
    worst_severity INTEGER,
    worst_auroc DOUBLE,
    auroc_drop DOUBLE,
    mce DOUBLE,                  -- written by releases before the leaderboard table; see leaderboard.mce
    relative_mce DOUBLE,
    reference_run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS boards (
    board VARCHAR NOT NULL,
    version INTEGER,
    task VARCHAR,
    primary_metric VARCHAR,
    description VARCHAR,
    split_sha256 VARCHAR,        -- the board file's frozen manifest
    dataset_sha256 VARCHAR,      -- the board file's dataset content hash (NULL for real datasets)
    targets VARCHAR,
    reference_method VARCHAR,
    reported VARCHAR,            -- JSON: the board file's [[reported]] numbers (never ranked)
    map_sample INTEGER,          -- maps kept per split (0: every clean image; harness.boards.maps)
    variant VARCHAR,             -- JSON: a few-shot variant's parent, shots and draw (harness.data.variants)
    datasets VARCHAR,            -- JSON list: the datasets its images come from (for the contamination ledger)
    recorded_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS submissions (
    run_id VARCHAR NOT NULL,     -- the submitted run (its rows are in runs, predictions, metrics...)
    bundle VARCHAR,              -- the bundle's folder, relative to the checkout when inside it
    bundle_sha256 VARCHAR,       -- SHA-256 of its SHA256SUMS: identifies the bundle's content
    status VARCHAR,              -- verified | failed (imported with --unverified: never ranked)
    failed_check VARCHAR,
    message VARCHAR,
    notes VARCHAR,               -- JSON list: what verification noticed without failing
    verified_at TIMESTAMP,
    verify_seconds DOUBLE,
    reported_scoring_version INTEGER,
    code VARCHAR,                -- JSON: the bundle's code reference (commit, files or plugin)
    imported_rows BOOLEAN        -- the run's rows came from the bundle (false: a run of this database)
);
-- A submission's metrics as its submitter's run computed them: the columns of `metrics`.
CREATE TABLE IF NOT EXISTS reported_metrics AS SELECT * EXCLUDE (board, method) FROM metrics LIMIT 0;
CREATE TABLE IF NOT EXISTS leaderboard (
    board VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    method VARCHAR NOT NULL,
    primary_metric VARCHAR,
    value DOUBLE,                -- the primary metric on the clean test split
    ci_low DOUBLE,
    ci_high DOUBLE,
    best BOOLEAN,                -- the best run of its method: the ranked one
    rank INTEGER,
    tie_p DOUBLE,                -- paired test of a best run against the leader
    tied BOOLEAN,
    mce DOUBLE,                  -- mean corruption error relative to the board's reference method
    relative_mce DOUBLE,
    reference_run_id VARCHAR,
    flag VARCHAR,                -- why a run is not ranked (its predictions were altered after the run)
    contamination VARCHAR,       -- why it is ranked apart, as possibly contaminated (harness.boards.ledger)
    pretraining VARCHAR,         -- JSON list: the marks of its pretraining ("pretraining saw NIH ChestX-ray14")
    seeds INTEGER,               -- seeds of the run's seed group (same method, parameters, code, weights, device type)
    seed_mean DOUBLE,            -- the primary metric's mean across them (what ranks a method)
    seed_std DOUBLE,             -- and its standard deviation (ddof 1; NULL for one seed)
    seed_group VARCHAR,
    assembled_at TIMESTAMP
);
"""
# Columns added after the first release: databases created before them gain them on open.
MIGRATIONS = """
ALTER TABLE boards ADD COLUMN IF NOT EXISTS reported VARCHAR;
ALTER TABLE boards ADD COLUMN IF NOT EXISTS map_sample INTEGER;
ALTER TABLE boards ADD COLUMN IF NOT EXISTS variant VARCHAR;
ALTER TABLE boards ADD COLUMN IF NOT EXISTS datasets VARCHAR;
ALTER TABLE leaderboard ADD COLUMN IF NOT EXISTS contamination VARCHAR;
ALTER TABLE leaderboard ADD COLUMN IF NOT EXISTS pretraining VARCHAR;
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS severity INTEGER DEFAULT 0;
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS patient_id VARCHAR;
ALTER TABLE metrics ADD COLUMN IF NOT EXISTS flag VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS fit_peak_memory_bytes BIGINT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS decode_ips DOUBLE;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS cache_read_ips DOUBLE;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS temperature DOUBLE;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS weights_card VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS targets VARCHAR;
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS target_labels INTEGER[];
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS variances DOUBLE[];
ALTER TABLE risk_coverage ADD COLUMN IF NOT EXISTS abstain_by VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS task VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS precision VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS method_card VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS method_code VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS predictions_hash_scheme INTEGER;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS maps_sha256 VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS excluded_images VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS scoring_version INTEGER;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS host VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS pid INTEGER;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS process_started BIGINT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS map_level DOUBLE;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS explain VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS diagnostics VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS cell_key VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS cpu_features VARCHAR;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS stress_sha256 VARCHAR;
ALTER TABLE leaderboard ADD COLUMN IF NOT EXISTS seeds INTEGER;
ALTER TABLE leaderboard ADD COLUMN IF NOT EXISTS seed_mean DOUBLE;
ALTER TABLE leaderboard ADD COLUMN IF NOT EXISTS seed_std DOUBLE;
ALTER TABLE leaderboard ADD COLUMN IF NOT EXISTS seed_group VARCHAR;
UPDATE runs SET task = CASE WHEN targets IS NOT NULL THEN 'multilabel' ELSE 'anomaly' END WHERE task IS NULL;
"""


def process_identity(pid: int) -> dict[str, Any]:
    """host, pid and start time of a process (Linux's /proc; -1 where the start time cannot be
    read but the process exists), with a start time of None when the process does not exist."""
    started: int | None
    try:
        with open(f"/proc/{pid}/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        try:
            os.kill(pid, 0)
            started = -1
        except ProcessLookupError:
            started = None
        except OSError:  # it exists, under another user
            started = -1
    return {"host": socket.gethostname(), "pid": pid, "process_started": started}


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# The tables holding a run's rows (each with a run_id column), the runs row first.
RUN_TABLES = (
    "runs", "predictions", "maps", "gallery", "metrics", "calibration_bins", "risk_coverage", "robustness", "latency",
)  # fmt: skip

LOCK_WAIT_SECONDS = 60.0
DUCKDB_CONFIG = {"autoload_known_extensions": False, "autoinstall_known_extensions": False}
"""DuckDB never fetches an extension for a file it is given (a SQLite file, a parquet file)."""
SCHEMA_VERSION = 2
"""The layout of the results database this code writes: 1, tables only (before the version was
recorded); 2, the version recorded in `xrbench_schema`. Older databases are migrated on open
(`MIGRATIONS`); a newer one is refused, so that older code never writes into it."""


def _connect(path: Path, wait_seconds: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open the database, waiting while another process briefly holds its lock (a run being
    recorded) instead of failing at once."""
    deadline = time.monotonic() + (LOCK_WAIT_SECONDS if wait_seconds is None else wait_seconds)
    while True:
        try:
            return duckdb.connect(str(path), config=DUCKDB_CONFIG)
        except duckdb.Error as exc:
            if "lock" not in str(exc).lower():
                raise XRBenchError(f"cannot open {path}: {_not_a_database(path, exc)}") from exc
            if time.monotonic() > deadline:
                raise DatabaseLocked(f"the results database {path} is locked by another process ({exc})") from exc
            time.sleep(0.2)


def _not_a_database(path: Path, exc: Exception) -> str:
    """Why a file does not open as a results database, in a few words."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        head = b""
    if head.startswith(b"SQLite format 3"):
        return "it is a SQLite file, not a DuckDB results database"
    return first_line(exc)


def check_schema_version(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a database of a newer xrbench, or a DuckDB file of something else."""
    tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "xrbench_schema" in tables:
        found = con.execute("SELECT max(version) FROM xrbench_schema").fetchone()[0]
        if found is not None and found > SCHEMA_VERSION:
            raise XRBenchError(
                f"{path} is a results database of schema version {found}; this xrbench reads versions up to "
                f"{SCHEMA_VERSION}: upgrade xrbench, or give another --db"
            )
    elif tables and "runs" not in tables:
        raise XRBenchError(
            f"{path} is a DuckDB database but not xrbench's (its tables: {', '.join(sorted(tables)[:5])}); "
            "give another --db"
        )


def pending_folder(db: Path) -> Path:
    """Where finished runs wait when their database stayed locked: beside the database."""
    return db.with_name(db.name + ".pending")


@contextmanager
def _pending_file(db: Path, run_id: str) -> Iterator[Path]:
    """A temporary file to write, renamed to `<db>.pending/<run_id>.duckdb` once written whole."""
    folder = pending_folder(db)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.duckdb"
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    yield tmp
    os.replace(tmp, path)


def keep_pending(db: Path, run_id: str, tables: dict[str, pd.DataFrame], updates: dict[str, Any]) -> Path:
    """Write a finished run's tables and final `runs` values to a DuckDB file of its own, to be
    loaded into `db` later (`load_pending`); returns the file."""
    with _pending_file(db, run_id) as tmp, duckdb.connect(str(tmp), config=DUCKDB_CONFIG) as con:
        for table, frame in tables.items():
            if not frame.empty:
                con.register("frame", frame)
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM frame")
                con.unregister("frame")
        con.execute("CREATE TABLE pending_run (run_id VARCHAR, updates VARCHAR)")
        updates = {**updates, "finished_at": now()}
        con.execute("INSERT INTO pending_run VALUES (?, ?)", [run_id, json.dumps(updates, default=_plain)])
    return tmp.with_suffix(".duckdb")


def keep_exported(db: Path, tables: dict[str, pd.DataFrame]) -> Path:
    """Write runs exported from another database (`ResultStore.export_runs`) beside `db`, to
    be loaded by `load_pending` once it is free; returns the file."""
    run_id = tables["runs"]["run_id"].iloc[0]
    with _pending_file(db, run_id) as tmp, ResultStore(tmp) as store:
        store.import_runs(tables)
    return tmp.with_suffix(".duckdb")


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Append a frame's rows to a table by column name (nothing for an empty frame)."""
    if frame.empty:
        return
    con.register("new_rows", frame)
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM new_rows")
    con.unregister("new_rows")


def _plain(value: object) -> object:
    """numpy scalars and timestamps as JSON values."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class ResultStore:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = _connect(self.path)
        try:
            check_schema_version(self.con, self.path)
            self.con.execute(SCHEMA)
            self.con.execute(MIGRATIONS)
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS xrbench_schema (version INTEGER); "
                f"INSERT INTO xrbench_schema SELECT {SCHEMA_VERSION} WHERE NOT EXISTS "
                f"(SELECT 1 FROM xrbench_schema WHERE version = {SCHEMA_VERSION})"
            )
        except BaseException:
            self.con.close()
            raise

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def start_run(self, row: dict[str, Any]) -> None:
        row = {**row, **process_identity(os.getpid()), "status": "running", "started_at": now()}
        cols = ", ".join(row)
        self.con.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    def complete_run(self, run_id: str, tables: dict[str, pd.DataFrame], updates: dict[str, Any]) -> None:
        """Write every table a run produced, and mark it ok, in one transaction."""
        updates = {"finished_at": now(), **updates, "status": "ok"}
        with self.transaction() as con:
            for table, frame in tables.items():
                insert_rows(con, table, frame.assign(run_id=run_id))
            self._update(con, run_id, updates)

    def add_latency(self, rows: pd.DataFrame) -> None:
        """Stand-alone latency measurements (bench runs write theirs with the run)."""
        with self.transaction() as con:
            insert_rows(con, "latency", rows)

    def fail_run(self, run_id: str, error: str) -> None:
        self._update(self.con, run_id, {"status": "failed", "error": error, "finished_at": now()})

    def load_pending(self) -> list[str]:
        """Load the runs kept beside this database while it was locked, each in one
        transaction; returns their ids. A loaded file is removed."""
        loaded = []
        for path in sorted(pending_folder(self.path).glob("*.duckdb")):
            with duckdb.connect(str(path), read_only=True, config=DUCKDB_CONFIG) as con:
                exported = ("pending_run",) not in con.execute("SHOW TABLES").fetchall()
            if exported:  # whole runs kept by a grid's driver (`keep_exported`)
                with ResultStore(path) as kept:
                    loaded += self.import_runs(kept.export_runs())
                path.unlink()
                continue
            with duckdb.connect(str(path), read_only=True, config=DUCKDB_CONFIG) as con:
                run_id, updates = con.execute("SELECT run_id, updates FROM pending_run").fetchall()[0]
                names = [t for (t,) in con.execute("SHOW TABLES").fetchall() if t != "pending_run"]
                tables = {name: con.execute(f"SELECT * FROM {name}").df() for name in names}
            self.complete_run(run_id, {k: v.drop(columns="run_id", errors="ignore") for k, v in tables.items()},
                              json.loads(updates))  # fmt: skip
            path.unlink()
            loaded.append(run_id)
        return loaded

    def export_runs(self) -> dict[str, pd.DataFrame]:
        """Every run of this database with all its rows, and the board editions it recorded:
        what a grid worker with a private database hands to the driver (`import_runs`)."""
        return {table: self.query(f"SELECT * FROM {table}") for table in (*RUN_TABLES, "boards")}

    def import_runs(self, tables: dict[str, pd.DataFrame]) -> list[str]:
        """Add the runs exported from another database, all in one transaction; a run id
        already here is refused (nothing is added). Returns the run ids."""
        run_ids = tables["runs"]["run_id"].tolist()
        present = self.query("SELECT run_id FROM runs WHERE run_id IN (SELECT unnest(?))", [run_ids])
        if not present.empty:
            raise XRBenchError(f"run {present['run_id'].iloc[0]} is already in {self.path}; nothing was imported")
        with self.transaction() as con:
            for table in RUN_TABLES:
                insert_rows(con, table, tables.get(table, pd.DataFrame()))
            for row in tables.get("boards", pd.DataFrame()).to_dict("records"):
                self.record_board({k: None if pd.isna(v) else v for k, v in row.items() if k != "recorded_at"})
        return run_ids

    def stale_runs(self) -> list[str]:
        """Runs still `running` whose process, on this machine, is gone (killed, or its machine
        rebooted): their outcome will never be recorded."""
        rows = self.query("SELECT run_id, host, pid, process_started FROM runs WHERE status = 'running'")
        here = socket.gethostname()
        return [
            r.run_id
            for r in rows.itertuples()
            if r.host == here and pd.notna(r.pid) and process_identity(int(r.pid)) != {
                "host": here, "pid": int(r.pid), "process_started": r.process_started
            }
        ]  # fmt: skip

    @staticmethod
    def _update(con: duckdb.DuckDBPyConnection, run_id: str, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        con.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", [*values.values(), run_id])

    def run(self, run_id: str) -> dict[str, Any]:
        frame = self.con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
        if frame.empty:
            raise UnknownRunError(f"no run {run_id!r} in {self.path}")
        row = frame.iloc[0].to_dict()
        row["params"] = json.loads(row["params"]) if row["params"] else {}
        return row

    def predictions(self, run_id: str, verify: bool = True) -> pd.DataFrame:
        """A run's stored predictions in canonical order (split, condition, severity, image id),
        checked against the hash the run recorded, so that an altered row is never used."""
        frame = self.query(
            f"SELECT {', '.join(PREDICTION_SCHEMA)}, variances FROM predictions WHERE run_id = ? "
            f"ORDER BY {', '.join(PREDICTION_KEY)}",
            [run_id],
        )
        if verify:
            self.verify_predictions(run_id, frame)
        return frame

    def verify_predictions(self, run_id: str, frame: pd.DataFrame) -> None:
        run = self.run(run_id)
        if run.get("predictions_hash_scheme") != PREDICTIONS_HASH_SCHEME:
            logging.getLogger("xrbench").warning(
                "run %s was stored before verifiable prediction hashes (scheme %d); its predictions are used unchecked",
                run_id,
                PREDICTIONS_HASH_SCHEME,
            )
            return
        actual = predictions_sha256(frame)
        if actual != run["predictions_sha256"]:
            raise DataIntegrityError(
                f"run {run_id}: its stored predictions hash to {actual}, not to the {run['predictions_sha256']} "
                "recorded when the run finished; they were altered after the run, and nothing computed from "
                "them can be trusted"
            )

    def maps(self, run_id: str, split: str | None = None, verify: bool = True) -> pd.DataFrame:
        """A run's stored maps (see `harness.core.maps.decode`), in canonical order; all of them are
        checked against the hash the run recorded."""
        where = "run_id = ?" + (" AND split = ?" if split else "")
        frame = self.query(
            f"SELECT * EXCLUDE (run_id) FROM maps WHERE {where} ORDER BY {', '.join(PREDICTION_KEY)}",
            [run_id, split] if split else [run_id],
        )
        expected = self.run(run_id).get("maps_sha256")
        if verify and split is None and isinstance(expected, str) and maps_sha256(frame) != expected:
            raise DataIntegrityError(f"run {run_id}: its stored maps no longer hash to {expected}; they were altered")
        return frame

    def record_board(self, row: dict[str, Any]) -> None:
        """Remember a board edition (from its board file) so that the site never reads board files."""
        keys = ("board", "version", "split_sha256", "dataset_sha256")
        self.con.execute(
            "DELETE FROM boards WHERE board = ? AND version IS NOT DISTINCT FROM ? AND split_sha256 = ? "
            "AND dataset_sha256 IS NOT DISTINCT FROM ?",
            [row[k] for k in keys],
        )
        row = {**row, "recorded_at": now()}
        self.con.execute(
            f"INSERT INTO boards ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
        )

    def condition_aurocs(self, run_id: str) -> dict[tuple[str, int], float]:
        frame = self.query(
            "SELECT condition, severity, value FROM metrics WHERE run_id = ? AND slice = 'all' AND metric = 'auroc'",
            [run_id],
        )
        return {(r.condition, int(r.severity)): float(r.value) for r in frame.itertuples()}

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()
