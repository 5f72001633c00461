"""The run as a pipeline: scoring from stored predictions, kept maps, harness-owned inference,
precision, and the refusals that go with them."""

import ast
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.api.identity import method_origin
from harness.api.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction
from harness.api.registry import get_method, register
from harness.cli.main import main
from harness.core.errors import DataIntegrityError, MethodOutputError, UnknownRunError, XRBenchError
from harness.core.fingerprints import predictions_sha256
from harness.core.maps import decode, maps_sha256
from harness.results.rescore import rescore_run
from harness.results.store import ResultStore
from harness.run.runner import bench


class _Fixed(Method):
    """Scores = mean intensity; maps built by `make_maps` (a test hook)."""

    card = MethodCard("test-fixed", "test", "-", "-", "-")

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        self.calls = 0

    def predict(self, batch: torch.Tensor) -> Prediction:
        self.calls += 1
        return Prediction(scores=batch.mean(dim=(1, 2, 3)), maps=self.make_maps(batch))

    def make_maps(self, batch: torch.Tensor) -> torch.Tensor | None:
        return None


@register
class SquareMaps(_Fixed):
    card = MethodCard("test-square-maps", "test", "maps = squared pixels", "-", "-", produces_maps=True)

    def make_maps(self, batch):
        return batch[:, 0] ** 2


@register
class WrongMapShape(_Fixed):
    card = MethodCard("test-wrong-map-shape", "test", "-", "-", "-", produces_maps=True)

    def make_maps(self, batch):
        return batch  # (B, 1, H, W) instead of (B, H, W)


@register
class NaNMaps(_Fixed):
    card = MethodCard("test-nan-maps", "test", "-", "-", "-", produces_maps=True)

    def make_maps(self, batch):
        maps = batch[:, 0].clone()
        maps[1, 3, 3] = float("nan")
        return maps


@register
class MapsSometimes(_Fixed):
    card = MethodCard("test-maps-sometimes", "test", "-", "-", "-", produces_maps=True)

    def make_maps(self, batch):
        return batch[:, 0] if self.calls == 1 else None


@register
class UndeclaredMaps(_Fixed):
    card = MethodCard("test-undeclared-maps", "test", "-", "-", "-")

    def make_maps(self, batch):
        return batch[:, 0]


@register
class ChecksItsContext(_Fixed):
    """Fails unless the harness put its module in eval mode and predicts without autograd."""

    card = MethodCard("test-checks-context", "test", "-", "-", "-")

    def fit(self, train, val, ctx):
        super().fit(train, val, ctx)
        self.net = torch.nn.Dropout(0.5).train()

    def predict(self, batch):
        assert not self.net.training and torch.is_inference_mode_enabled(), "predict outside the harness context"
        return super().predict(batch)

    def torch_modules(self):
        return [self.net]


@register
class NeedsGrad(_Fixed):
    card = MethodCard("test-needs-grad", "test", "-", "-", "-", needs_grad=True)

    def predict(self, batch):
        x = batch.clone().requires_grad_(True)
        (x.mean(dim=(1, 2, 3)) ** 2).sum().backward()
        return Prediction(scores=x.grad.abs().mean(dim=(1, 2, 3)).detach())


def _tables(db, run_id):
    with ResultStore(db) as store:
        return {t: store.query(f"SELECT * FROM {t} WHERE run_id = ?", [run_id]) for t in ("predictions", "maps")}


def test_score_reproduces_every_stored_number_of_a_fresh_run(tiny_board, tmp_path, capsys):
    db = tmp_path / "r.duckdb"
    result = bench("patchcore", tiny_board, params={"coreset_ratio": "0.1"}, db=db, device="cpu")
    with ResultStore(db) as store:
        report = rescore_run(store, result.run_id, tiny_board)
    assert report.identical, report.differences[:5]
    assert report.compared["metrics"] == 6 * len(result.metrics) and report.compared["calibration_bins"] > 100
    assert report.compared["risk_coverage"] > 100 and report.compared["robustness"] == 5
    assert main(["score", result.run_id, "--db", str(db), "--board", str(tiny_board)]) == 0
    assert "identical" in capsys.readouterr().out


def test_score_reports_a_changed_metric_and_refuses_altered_predictions(tiny_board, tmp_path, capsys):
    db = tmp_path / "r.duckdb"
    run = bench("intensity", tiny_board, db=db, device="cpu", corruptions=False).run_id
    with ResultStore(db) as store:
        store.con.execute(
            "UPDATE metrics SET value = value + 0.01 WHERE run_id = ? AND metric = 'auprc' AND slice = 'all'", [run]
        )
        report = rescore_run(store, run, tiny_board)
    assert [(d["table"], d["key"][2:], d["column"]) for d in report.differences] == [
        ("metrics", ("all", "auprc"), "value")
    ]
    assert main(["score", run, "--db", str(db), "--board", str(tiny_board)]) == 2
    assert "1 stored values differ" in capsys.readouterr().err
    with ResultStore(db) as store:
        store.con.execute(
            "UPDATE predictions SET score = score + 1e-9 WHERE run_id = ? AND image_id = "
            "(SELECT min(image_id) FROM predictions WHERE run_id = ? AND split = 'test')",
            [run, run],
        )
        with pytest.raises(DataIntegrityError, match=f"run {run}: its stored predictions hash to"):
            rescore_run(store, run, tiny_board)


def test_score_refuses_unknown_and_failed_runs(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    with pytest.raises(MethodOutputError):
        bench("test-nan-maps", tiny_board, db=db, device="cpu", corruptions=False)
    with ResultStore(db) as store:
        failed = store.query("SELECT run_id FROM runs")["run_id"].item()
        with pytest.raises(XRBenchError, match=f"run {failed} has status failed"):
            rescore_run(store, failed)
        with pytest.raises(UnknownRunError, match="no run 'nope'"):
            rescore_run(store, "nope")


def test_multilabel_runs_rescore_identically(tiny_multilabel_board, tmp_path):
    db = tmp_path / "r.duckdb"
    run = bench("random", tiny_multilabel_board, db=db, device="cpu").run_id
    with ResultStore(db) as store:
        report = rescore_run(store, run, tiny_multilabel_board)
        temperature = store.run(run)["temperature"]
    assert report.identical and report.compared["runs"] == 1 and temperature > 0


def test_maps_are_kept_for_clean_images_and_the_case_study_downsampled_as_float16(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    result = bench("test-square-maps", tiny_board, db=db, device="cpu")
    tables = _tables(db, result.run_id)
    all_maps = tables["maps"]
    maps = all_maps[all_maps["condition"] == "clean"]
    assert len(maps) == 20 + 32
    corrupted = all_maps[all_maps["condition"] != "clean"]
    # the case study: the first abnormal test image, once under every stress condition
    case = tables["predictions"].query("split == 'test' and condition == 'clean' and label == 1")["image_id"].iloc[0]
    assert set(corrupted["image_id"]) == {case} and set(corrupted["split"]) == {"test"}
    stressed = tables["predictions"].query("condition != 'clean'")[["condition", "severity"]].drop_duplicates()
    assert len(corrupted) == len(stressed) and set(map(tuple, corrupted[["condition", "severity"]].to_numpy())) == set(
        map(tuple, stressed.to_numpy())
    )
    assert (all_maps[["channels", "height", "width"]].to_numpy() == [1, 64, 64]).all()  # 64 px board: kept as is
    assert result.maps_bytes == len(all_maps) * 64 * 64 * 2
    from harness.boards.files import load_board
    from harness.data.loading import load_board_data

    test = load_board_data(load_board(tiny_board)).splits["test"]
    expected = (test.images[:, 0].double() / 255) ** 2
    stored = np.stack([decode(r) for _, r in maps[maps["split"] == "test"].iterrows()])[:, 0]
    order = maps[maps["split"] == "test"]["image_id"].tolist()
    index = [test.meta["image_id"].tolist().index(i) for i in order]
    np.testing.assert_allclose(stored, expected[index].numpy(), rtol=1e-3, atol=1e-4)  # float16 rounding
    with ResultStore(db) as store:
        run = store.run(result.run_id)
        assert run["maps_sha256"] == maps_sha256(store.maps(result.run_id))
        assert run["predictions_sha256"] == predictions_sha256(store.predictions(result.run_id))


@register
class LargeMaps(_Fixed):
    card = MethodCard("test-large-maps", "test", "128 x 128 maps of large values", "-", "-", produces_maps=True)

    def make_maps(self, batch):
        big = F.interpolate(batch, size=(128, 128), mode="nearest")[:, 0]
        return big * 1e6 + torch.arange(128.0).view(1, 1, 128)  # beyond float16's range


def test_large_maps_are_area_averaged_to_64_and_large_values_survive(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    run = bench("test-large-maps", tiny_board, db=db, device="cpu", corruptions=False).run_id
    with ResultStore(db) as store:
        row = store.maps(run, "val").iloc[0]
    from harness.boards.files import load_board
    from harness.data.loading import load_board_data

    val = load_board_data(load_board(tiny_board)).splits["val"]
    image = val.images[val.meta["image_id"].tolist().index(row["image_id"]), 0].double().numpy() / 255
    full = np.kron(image, np.ones((2, 2))) * 1e6 + np.arange(128.0)
    expected = full.reshape(64, 2, 64, 2).mean(axis=(1, 3))  # 2 x 2 block means, computed apart
    assert row["scale"] > 1 and (row["channels"], row["height"], row["width"]) == (1, 64, 64)
    np.testing.assert_allclose(decode(row)[0], expected, rtol=1e-3, atol=1e-3 * row["scale"])


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("test-wrong-map-shape", r"returned maps of shape \(16, 1, 64, 64\); expected \(16, h, w\) on val"),
        ("test-nan-maps", r"returned non-finite map values for 1 images on val \(first image: "),
        ("test-maps-sometimes", r"declares produces_maps but returned no maps for a batch on val \(first image: "),
        ("test-undeclared-maps", r"returned maps, but its card does not declare produces_maps=True"),
    ],
)
def test_bad_maps_fail_the_run_and_store_nothing(tiny_board, tmp_path, method, message):
    db = tmp_path / "r.duckdb"
    with pytest.raises(MethodOutputError, match=f"method {method} {message}"):
        bench(method, tiny_board, db=db, device="cpu", corruptions=False)
    with ResultStore(db) as store:
        assert store.query("SELECT status FROM runs")["status"].tolist() == ["failed"]
        for table in ("predictions", "maps", "metrics"):
            assert store.query(f"SELECT count(*) AS n FROM {table}")["n"].item() == 0


def test_the_harness_owns_eval_mode_inference_mode_and_precision(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    run = bench("test-checks-context", tiny_board, db=db, device="cpu", corruptions=False, precision="bf16")
    grad = bench("test-needs-grad", tiny_board, db=db, device="cpu", corruptions=False)
    with ResultStore(db) as store:
        assert store.run(run.run_id)["precision"] == "bf16"
        scores = store.predictions(grad.run_id)["score"]
    assert (scores > 0).all()  # gradients were computed at predict time
    with pytest.raises(XRBenchError, match="precision must be one of"):
        bench("intensity", tiny_board, db=db, device="cpu", precision="fp8")


def test_runs_record_the_task_card_and_code_of_their_method(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    run = bench("knn", tiny_board, db=db, device="cpu", corruptions=False).run_id
    with ResultStore(db) as store:
        row = store.run(run)
    from harness.core.fingerprints import file_sha256
    from harness.core.paths import REPO_ROOT

    assert row["task"] == "anomaly" and json.loads(row["method_card"])["name"] == "knn"
    code = json.loads(row["method_code"])
    assert code == method_origin(get_method("knn"))  # harness.api.identity: its files and what they import
    assert code["files"]["methods/knn.py"] == file_sha256(REPO_ROOT / "methods/knn.py")


def test_a_database_from_before_the_pipeline_opens_and_builds_a_site(tiny_board, tmp_path):
    """Tables as release 0.1.0 wrote them (no task, card, maps, boards or leaderboard)."""
    import duckdb
    from conftest import publish

    fresh = tmp_path / "fresh.duckdb"
    run = bench("intensity", tiny_board, db=fresh, device="cpu").run_id
    old = tmp_path / "old.duckdb"
    con = duckdb.connect(str(old))
    con.execute(f"ATTACH '{fresh}' AS fresh (READ_ONLY)")
    legacy_runs = [c for c in con.execute("DESCRIBE fresh.runs").df()["column_name"] if c not in NEW_RUN_COLUMNS]
    con.execute(f"CREATE TABLE runs AS SELECT {', '.join(legacy_runs)} FROM fresh.runs")
    for table in ("predictions", "metrics", "calibration_bins", "risk_coverage", "latency", "robustness"):
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM fresh.{table}")
    con.execute("UPDATE runs SET predictions_sha256 = 'a scheme-1 hash'")
    con.close()
    out = tmp_path / "site"
    publish(old, out)
    page = next((out / "boards").glob("tiny-ad-*.html")).read_text()
    assert (
        "intensity" in page
        and run in (out / "data" / next((out / "data").glob("tiny-ad-*-leaderboard.csv")).name).read_text()
    )
    with ResultStore(old) as store:
        assert store.run(run)["task"] == "anomaly"


NEW_RUN_COLUMNS = {
    "task",
    "precision",
    "method_card",
    "method_code",
    "predictions_hash_scheme",
    "maps_sha256",
    "excluded_images",
    "scoring_version",
}


def test_the_site_builds_where_torch_cannot_be_imported(tiny_board, tmp_path):
    import subprocess
    import sys

    db = tmp_path / "r.duckdb"
    bench("patchcore", tiny_board, params={"coreset_ratio": "0.1"}, db=db, device="cpu", corruptions=False)
    bench("intensity", tiny_board, db=db, device="cpu", corruptions=False)
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError('torch is not installed here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from harness.cli.main import main\n"
        f"assert main(['site', '--db', {str(db)!r}, '--out', {str(tmp_path / 'site')!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith(('harness', 'methods'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert "harness.api.registry" not in loaded and "harness.run.runner" not in loaded
    assert not [m for m in loaded if m == "methods" or m.startswith("methods.")]
    page = next((tmp_path / "site" / "boards").glob("tiny-ad-*.html")).read_text()
    assert "patchcore" in page and "intensity" in page


def test_leaderboard_ranks_ties_and_mce_are_assembled_and_stored(tiny_board, tmp_path):
    from harness.results.leaderboard import assemble

    db = tmp_path / "r.duckdb"
    runs = {m: bench(m, tiny_board, db=db, device="cpu").run_id for m in ("intensity", "random")}
    with ResultStore(db) as store:
        table = assemble(store, "tiny-ad").set_index("method")
        stored = store.query("SELECT * FROM leaderboard").set_index("method")
    assert set(table.index) == {"intensity", "random"} and table["rank"].notna().all()
    assert (stored["value"] == table["value"]).all()
    # intensity is the board's reference method: its mCE against itself is exactly 1
    assert table.loc["intensity", "mce"] == pytest.approx(1.0, abs=1e-12)
    assert table.loc["random", "reference_run_id"] == runs["intensity"]
    assert pd.notna(table.loc["random", "mce"])
