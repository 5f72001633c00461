import duckdb
import pandas as pd
import pytest

from harness.results.store import ResultStore


def _start(store: ResultStore, run_id: str) -> None:
    store.start_run({"run_id": run_id, "board": "b", "method": "m", "params": "{}", "seed": 0})


def test_complete_run_writes_everything_in_one_transaction(tmp_path):
    with ResultStore(tmp_path / "r.duckdb") as store:
        _start(store, "r1")
        predictions = pd.DataFrame(
            {
                "run_id": ["r1"],
                "image_id": ["a"],
                "split": ["test"],
                "condition": ["clean"],
                "label": [1],
                "score": [0.3],
            }
        )
        bad_metrics = pd.DataFrame(
            {
                "run_id": ["r1"],
                "board": ["b"],
                "method": ["m"],
                "condition": ["clean"],
                "slice": ["all"],
                "metric": ["auroc"],
                "value": ["not a number"],
            }
        )
        seen_inside = []

        class Spy(dict):
            """Looks into the open transaction between the two inserts."""

            def items(self):
                yield "predictions", predictions
                seen_inside.append(store.con.execute("SELECT count(*) FROM predictions").fetchall()[0][0])
                yield "metrics", bad_metrics

        with pytest.raises(duckdb.ConversionException, match="not a number"):
            store.complete_run("r1", Spy(), {"threshold": 0.5})
        assert seen_inside == [1]  # the prediction row was written, then rolled back
        assert store.query("SELECT count(*) AS n FROM predictions")["n"][0] == 0
        assert store.query("SELECT count(*) AS n FROM metrics")["n"][0] == 0
        assert store.run("r1")["status"] == "running"
        store.fail_run("r1", "boom")
        assert store.run("r1")["status"] == "failed" and store.run("r1")["error"] == "boom"


def test_results_survive_reopening(tmp_path):
    path = tmp_path / "r.duckdb"
    with ResultStore(path) as store:
        _start(store, "r2")
        metrics = pd.DataFrame(
            {
                "run_id": ["r2"],
                "board": ["b"],
                "method": ["m"],
                "condition": ["clean"],
                "severity": [0],
                "slice": ["all"],
                "metric": ["auroc"],
                "value": [0.7],
                "ci_low": [0.6],
                "ci_high": [0.8],
                "n": [10],
                "n_pos": [5],
            }
        )
        store.complete_run("r2", {"metrics": metrics}, {"threshold": 0.1})
    with ResultStore(path) as store:
        assert store.run("r2")["status"] == "ok"
        assert store.query("SELECT value FROM metrics WHERE run_id = 'r2'")["value"][0] == pytest.approx(0.7)
