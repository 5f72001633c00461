"""End-to-end runs on a reduced synthetic board."""

import hashlib
import shutil
import time

import numpy as np
import pytest
import torch
from conftest import check_clean_auroc

from harness.api.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction
from harness.api.registry import register
from harness.core.errors import DataIntegrityError, ManifestHashMismatch, MethodFailure, MethodOutputError
from harness.core.fingerprints import predictions_sha256
from harness.results.store import ResultStore
from harness.run.runner import bench

FAST_PATCHCORE = {"coreset_ratio": "0.1"}


@register
class CrashesMidway(Method):
    card = MethodCard("test-crashes-midway", "test", "raises on its second predict call", "-", "-")

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        self.calls = 0

    def predict(self, batch: torch.Tensor) -> Prediction:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("simulated crash")
        return Prediction(scores=batch.mean(dim=(1, 2, 3)))


@register
class ReturnsNaN(Method):
    card = MethodCard("test-returns-nan", "test", "returns a NaN score", "-", "-")

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        pass

    def predict(self, batch: torch.Tensor) -> Prediction:
        scores = batch.mean(dim=(1, 2, 3))
        scores[0] = float("nan")
        return Prediction(scores=scores)


def _predictions(db, run_id):
    with ResultStore(db) as store:
        return store.query(
            "SELECT image_id, split, score FROM predictions WHERE run_id = ? ORDER BY split, image_id", [run_id]
        )


def test_patchcore_end_to_end_stores_a_complete_run(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    started = time.perf_counter()
    result = bench("patchcore", tiny_board, params=FAST_PATCHCORE, db=db, device="cpu")
    wall = time.perf_counter() - started
    stages = result.stages
    assert list(stages) == ["load", "fit", "predict", "score", "gallery", "latency", "store"]
    assert stages["fit"] >= result.fit_seconds and stages["predict"] >= result.predict_seconds
    assert 0 < sum(stages.values()) <= wall
    with ResultStore(db) as store:
        run = store.run(result.run_id)
        metrics = store.query("SELECT * FROM metrics WHERE run_id = ?", [result.run_id])
        bins = store.query("SELECT * FROM calibration_bins WHERE run_id = ?", [result.run_id])
        risk = store.query("SELECT * FROM risk_coverage WHERE run_id = ?", [result.run_id])
        robustness = store.query("SELECT * FROM robustness WHERE run_id = ?", [result.run_id])
        latency = store.query("SELECT * FROM latency WHERE run_id = ? ORDER BY batch_size", [result.run_id])
    board_text = tiny_board.read_text()
    manifest = tiny_board.parent / board_text.split('split_manifest = "')[1].split('"')[0]
    assert run["status"] == "ok" and run["weights_id"] == "none"
    assert run["split_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert run["dataset_sha256"] == board_text.split('content_sha256 = "')[1].split('"')[0]
    assert run["torch_version"] == torch.__version__ and run["device"].startswith("cpu")
    assert run["params"]["coreset_ratio"] == 0.1
    clean = metrics[(metrics["condition"] == "clean") & (metrics["slice"] == "all")].set_index("metric")
    assert {"auroc", "auprc", "sens@95spec", "f1", "ece_none", "ece_platt", "brier_isotonic", "aurc"} <= set(
        clean.index
    )
    binary = clean.loc[["auroc", "auprc", "sens@95spec", "f1"]]
    assert ((binary["ci_low"] <= binary["value"]) & (binary["value"] <= binary["ci_high"])).all()
    assert (binary["n"] == 32).all()
    # 7 corruptions x 2 severities, each with AUROC and its interval.
    corrupted = metrics[
        (metrics["condition"] != "clean") & (metrics["metric"] == "auroc") & (metrics["slice"] == "all")
    ]
    assert len(corrupted) == 14 and set(corrupted["severity"]) == {1, 2}
    assert corrupted["ci_low"].notna().all()
    slices = set(metrics.loc[metrics["condition"] == "clean", "slice"])
    assert {"view=PA", "sex=F", "site=A", "age_bin=60+"} <= slices
    assert set(bins["calibrator"]) == {"none", "platt", "isotonic"} and (bins["count"] > 0).all()
    assert len(risk) > 0 and robustness["mean_corrupted_auroc"].notna().all()
    assert len(_predictions(db, result.run_id)) == 20 + 32 * 15
    assert latency["batch_size"].tolist() == [1, 32] and (latency["p50_ms"] > 0).all()
    assert run["decode_ips"] > 0 and run["cache_read_ips"] > 0


def test_same_seed_gives_byte_identical_predictions_and_another_seed_does_not(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    runs = [
        bench("patchcore", tiny_board, seed=seed, params=FAST_PATCHCORE, db=db, device="cpu", corruptions=False)
        for seed in (0, 0, 1)
    ]
    with ResultStore(db) as store:
        stored = [store.run(r.run_id)["predictions_sha256"] for r in runs]
        recomputed = [predictions_sha256(store.predictions(r.run_id)) for r in runs]
        maps = [store.run(r.run_id)["maps_sha256"] for r in runs]
    assert stored == recomputed  # the canonical hash over every stored column, recomputed from the table
    assert stored[0] == stored[1] and maps[0] == maps[1]
    assert stored[2] != stored[0] and maps[2] != maps[0]  # the seed reaches the coreset


@register
class AllocatesWhileFitting(Method):
    card = MethodCard("test-allocates-in-fit", "test", "touches 256 MiB in fit", "-", "-")

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        self.total = float(torch.ones(64 * 2**20).sum())  # 256 MiB of float32, touched

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=batch.mean(dim=(1, 2, 3)))


def test_fit_peak_memory_sees_what_fit_allocates(tiny_board, tmp_path):
    result = bench("test-allocates-in-fit", tiny_board, db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
    assert result.fit_peak_memory_bytes > 200 * 2**20


@pytest.mark.parametrize("method", ["knn", "intensity", "random"])
def test_other_shipped_methods_run(tiny_board, tmp_path, method):
    result = bench(method, tiny_board, db=tmp_path / "r.duckdb", device="cpu")
    check_clean_auroc(tmp_path / "r.duckdb", result.run_id)


def test_a_crash_midway_leaves_no_results_and_a_failed_run(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    with pytest.raises(MethodFailure, match="method test-crashes-midway failed while predicting val, batch from image"):
        bench("test-crashes-midway", tiny_board, db=db, device="cpu")
    with ResultStore(db) as store:
        runs = store.query("SELECT status, error FROM runs")
        assert store.query("SELECT count(*) AS n FROM metrics")["n"][0] == 0
        assert store.query("SELECT count(*) AS n FROM predictions")["n"][0] == 0
    assert runs["status"].tolist() == ["failed"] and "RuntimeError: simulated crash" in runs["error"][0]
    assert "Traceback (most recent call last)" in runs["error"][0]  # the full traceback is kept


def test_non_finite_scores_name_the_method_and_image(tiny_board, tmp_path):
    with pytest.raises(MethodOutputError, match=r"test-returns-nan returned non-finite scores for \d+ images"):
        bench("test-returns-nan", tiny_board, db=tmp_path / "r.duckdb", device="cpu")


def test_a_changed_manifest_is_refused(tiny_board, tmp_path):
    board_dir = tmp_path / "board"
    shutil.copytree(tiny_board.parent, board_dir)
    manifest = board_dir / "tiny-ad.csv"
    manifest.write_text(manifest.read_text().replace("train", "test", 1))
    with pytest.raises(ManifestHashMismatch):
        bench("intensity", board_dir / tiny_board.name, db=tmp_path / "r.duckdb", device="cpu")


def test_missing_and_corrupt_images_are_all_reported(tiny_board, tmp_path, monkeypatch):
    from harness.boards.files import load_board
    from harness.data.adapters import synthetic

    board = load_board(tiny_board)
    source_dir = synthetic.dataset_folder(board.dataset.params)
    copy = tmp_path / "data"
    shutil.copytree(source_dir.parent.parent, copy)
    monkeypatch.setenv("XRBENCH_DATA", str(copy))
    monkeypatch.setenv("XRBENCH_CACHE", str(tmp_path / "cache"))
    images = sorted((synthetic.dataset_folder(board.dataset.params) / "images").glob("*.png"))
    images[0].unlink()
    images[1].write_bytes(b"not a png")
    with pytest.raises(DataIntegrityError) as info:
        bench("intensity", tiny_board, db=tmp_path / "r.duckdb", device="cpu")
    message = str(info.value)
    assert images[0].name in message and "missing" in message
    assert images[1].name in message and "unreadable" in message


def test_calibrators_and_threshold_see_validation_scores_only(tiny_board, tmp_path, monkeypatch):
    import harness.scoring.anomaly as anomaly

    seen = []

    def spy(fn):
        def wrapped(*args, **kwargs):
            seen.append(next(a for a in args if isinstance(a, np.ndarray) and a.dtype == np.float64))
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(anomaly, "fit_calibrator", spy(anomaly.fit_calibrator))
    monkeypatch.setattr(anomaly, "best_f1_threshold", spy(anomaly.best_f1_threshold))
    result = bench("intensity", tiny_board, db=tmp_path / "r.duckdb", device="cpu")
    val = _predictions(tmp_path / "r.duckdb", result.run_id).query("split == 'val'")
    assert len(seen) == 4  # three calibrators and the threshold
    for scores in seen:
        assert len(scores) == len(val) == 20
        assert sorted(scores) == sorted(val["score"])


@register
class ReadsTheDatabaseWhileFitting(Method):
    """Opens the results database from another process in the middle of a run."""

    card = MethodCard("test-reads-db-midway", "test", "checks the database is not locked during a run", "-", "-")
    db_path = ""

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        import subprocess
        import sys

        code = f"import duckdb; print(duckdb.connect({self.db_path!r}).execute('SELECT count(*) FROM runs').fetchone())"
        self.reader = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=batch.mean(dim=(1, 2, 3)))


def test_the_database_stays_usable_by_other_processes_during_a_run(tiny_board, tmp_path, monkeypatch):
    db = tmp_path / "r.duckdb"
    monkeypatch.setattr(ReadsTheDatabaseWhileFitting, "db_path", str(db))
    seen = {}
    original = ReadsTheDatabaseWhileFitting.fit

    def fit(self, *args):
        original(self, *args)
        seen["reader"] = self.reader

    monkeypatch.setattr(ReadsTheDatabaseWhileFitting, "fit", fit)
    bench("test-reads-db-midway", tiny_board, db=db, device="cpu", corruptions=False)
    assert seen["reader"].returncode == 0, seen["reader"].stderr
    assert seen["reader"].stdout.strip() == "(1,)"  # the running run is visible, status 'running'
