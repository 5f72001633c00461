"""Results in DuckDB: runs, per-image predictions and metrics, with full provenance.

A run is inserted as `running` when it starts; its predictions, metrics and final status are
written in one transaction when it ends, so a crash or Ctrl-C leaves no partial results. A
run that fails is marked `failed` with its error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    board VARCHAR NOT NULL,
    board_version INTEGER,
    method VARCHAR NOT NULL,
    params VARCHAR,             -- JSON object, merged with the method's defaults
    seed INTEGER,
    git_commit VARCHAR,
    git_dirty BOOLEAN,
    split_sha256 VARCHAR,
    dataset_sha256 VARCHAR,
    weights_id VARCHAR,
    weights_sha256 VARCHAR,
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
    predictions_sha256 VARCHAR  -- over every stored prediction, to spot silent changes
);
CREATE TABLE IF NOT EXISTS predictions (
    run_id VARCHAR NOT NULL,
    image_id VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    condition VARCHAR NOT NULL,
    label INTEGER,
    score DOUBLE,
    scores DOUBLE[]
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
    n_pos INTEGER
);
"""


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ResultStore:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))
        self.con.execute(SCHEMA)

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
        row = {**row, "status": "running", "started_at": now()}
        cols = ", ".join(row)
        self.con.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    def complete_run(
        self, run_id: str, predictions: pd.DataFrame, metrics: pd.DataFrame, updates: dict[str, Any]
    ) -> None:
        """Write everything a run produced, and mark it ok, in one transaction."""
        updates = {**updates, "status": "ok", "finished_at": now()}
        with self.transaction() as con:
            con.register("new_predictions", predictions)
            con.execute("INSERT INTO predictions BY NAME SELECT * FROM new_predictions")
            con.unregister("new_predictions")
            con.register("new_metrics", metrics)
            con.execute("INSERT INTO metrics BY NAME SELECT * FROM new_metrics")
            con.unregister("new_metrics")
            self._update(con, run_id, updates)

    def fail_run(self, run_id: str, error: str) -> None:
        self._update(self.con, run_id, {"status": "failed", "error": error, "finished_at": now()})

    @staticmethod
    def _update(con: duckdb.DuckDBPyConnection, run_id: str, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        con.execute(f"UPDATE runs SET {sets} WHERE run_id = ?", [*values.values(), run_id])

    def run(self, run_id: str) -> dict[str, Any]:
        frame = self.con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
        if frame.empty:
            raise KeyError(run_id)
        row = frame.iloc[0].to_dict()
        row["params"] = json.loads(row["params"]) if row["params"] else {}
        return row

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params or []).df()
