"""The public Python API (`import xrbench`): the same runs as the command line, values that agree
with independent computations, and typed one-line errors."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

import xrbench as xb
from harness.cli.main import main
from harness.core.errors import UnknownMethodError
from harness.public import METRIC_COLUMNS
from harness.results.store import ResultStore
from harness.scoring.significance import delong_test

SUBMISSIONS = Path(__file__).parents[1] / "leaderboards" / "submissions"


@pytest.fixture(scope="module")
def runs(tiny_board: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[xb.Run, xb.Run]:
    """padim (it keeps maps) and knn on the reduced board, with its stress suite, from Python."""
    db = tmp_path_factory.mktemp("api") / "r.duckdb"
    padim = xb.bench("padim", board=tiny_board, db=db, progress=False)
    knn = xb.bench("knn", board=tiny_board, params={"k": "3"}, db=db, progress=False)
    return padim, knn


def test_bench_from_python_and_from_the_shell_store_identical_runs(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    run = xb.bench("knn", board=tiny_board, params={"k": 3}, seed=1, db=db, progress=False)
    argv = ["bench", "--method", "knn", "--board", str(tiny_board), "--param", "k=3", "--seed", "1", "--db", str(db)]
    assert main(argv) == 0
    with ResultStore(db) as store:
        stored = store.query("SELECT run_id, predictions_sha256, cell_key, params FROM runs ORDER BY started_at")
    assert len(stored) == 2 and stored["run_id"].iloc[0] == run.run_id
    assert stored["predictions_sha256"].nunique() == 1 and stored["cell_key"].nunique() == 1
    assert stored["params"].nunique() == 1


def test_metrics_agree_with_an_independent_computation(runs):
    padim, _ = runs
    m = padim.metrics
    assert list(m.columns) == list(METRIC_COLUMNS)
    first = m.iloc[0]
    assert (first["condition"], first["slice"]) == ("clean", "all")  # clean, all images first
    p = padim.predictions
    for condition, severity in (("clean", 0), ("jpeg", 2)):
        rows = p[(p["split"] == "test") & (p["condition"] == condition) & (p["severity"] == severity)]
        stored = m[(m["metric"] == "auroc") & (m["condition"] == condition) & (m["severity"] == severity)]
        stored = stored[stored["slice"] == "all"]["value"].item()
        assert stored == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-12)


def test_maps_explain_and_latency(runs):
    padim, knn = runs
    maps = padim.maps
    assert not maps.empty and {"split", "condition", "image_id", "map"} <= set(maps.columns)
    assert all(m.dtype == np.float32 and m.ndim == 3 for m in maps["map"])
    assert knn.maps.empty  # knn makes no maps
    image = maps[(maps["split"] == "test") & (maps["condition"] == "clean")]["image_id"].iloc[0]
    fig = padim.explain(image)
    assert isinstance(fig, Figure) and image in fig._suptitle.get_text()
    assert len(fig.axes[0].get_images()) == 2  # the image and the map over it
    assert "makes none" in knn.explain(image)._suptitle.get_text()
    assert set(padim.latency["batch_size"]) >= {1}


def test_compare_is_the_paired_test_of_the_two_runs(runs):
    padim, knn = runs
    c = padim.compare(knn)
    assert c.difference == pytest.approx(c.value_a - c.value_b)
    assert c.ci_low <= c.difference <= c.ci_high
    test = lambda r: r.predictions.query("split == 'test' and condition == 'clean'")  # noqa: E731
    a, b = test(padim), test(knn)
    assert c.value_a == pytest.approx(roc_auc_score(a["label"], a["score"]))
    assert c.delong_p == pytest.approx(delong_test(a["label"].to_numpy(), a["score"].to_numpy(), b["score"].to_numpy()))
    assert knn.compare(padim.run_id).difference == pytest.approx(-c.difference)


def test_results_and_leaderboard(runs):
    padim, knn = runs
    everything = xb.results(padim.db)
    assert list(everything.runs.columns[:5]) == ["run_id", "board", "method", "seed", "status"]
    assert set(everything.runs["run_id"]) == {padim.run_id, knn.run_id}
    assert set(everything.metrics["run_id"]) == {padim.run_id, knn.run_id}
    board = xb.leaderboard(padim.board, db=padim.db)
    assert board["rank"].tolist() == [1, 2]
    assert board["value"].is_monotonic_decreasing
    assert xb.Run(padim.run_id, padim.db).metrics.equals(padim.metrics)


def test_errors_are_typed_with_the_command_line_message(tiny_board, tmp_path, capsys):
    with pytest.raises(UnknownMethodError) as raised:
        xb.bench("nope", db=tmp_path / "r.duckdb")
    assert main(["bench", "--method", "nope", "--db", str(tmp_path / "r.duckdb")]) == 2
    assert str(raised.value) in capsys.readouterr().err.replace("\n", "")
    with pytest.raises(xb.ParameterError, match="k=0 is out of range"):
        xb.bench("knn", board=tiny_board, params={"k": 0}, db=tmp_path / "r.duckdb")
    with pytest.raises(xb.XRBenchError, match="no results database at"):
        xb.results(tmp_path / "none.duckdb")
    assert not (tmp_path / "none.duckdb").exists()
    shown = raised.value._render_traceback_()  # what Jupyter prints instead of a traceback
    assert shown[0] == f"UnknownMethodError: {raised.value}" and not any("Traceback" in line for line in shown)


def test_unknown_run_and_board(runs):
    padim, _ = runs
    with pytest.raises(xb.UnknownRunError):
        xb.Run("20990101-000000-none-000000", padim.db)
    with pytest.raises(xb.XRBenchError, match="no completed run on board 'synth-dental-ad'"):
        xb.leaderboard("synth-dental-ad", db=padim.db)


def test_grid_skips_cells_already_done(tiny_board, tmp_path):
    db = tmp_path / "g.duckdb"
    first = xb.grid(["intensity", "random"], [str(tiny_board)], corruptions=False, db=db, progress=False)
    assert first["state"].tolist() == ["ok", "ok"] and first["value"].notna().all()
    again = xb.grid(["intensity", "random"], [str(tiny_board)], corruptions=False, db=db, progress=False)
    assert again["state"].tolist() == ["done", "done"] and again["run_id"].equals(first["run_id"])
    with pytest.raises(xb.XRBenchError, match="params for knn, which is not in the grid"):
        xb.grid(["intensity"], [str(tiny_board)], params={"knn": {"k": 3}}, db=db)


def test_bundles_load_verify_and_import(tmp_path):
    folder = next((SUBMISSIONS / "synth-cxr-ad" / "knn").iterdir())
    bundle = xb.load_bundle(folder)
    assert bundle.method == "knn" and len(bundle.predictions) > 0
    (run,) = xb.import_bundles([folder], db=tmp_path / "b.duckdb")  # verified on the way in
    assert run.run_id == bundle.run_id and run.status == "ok"
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "reported.json").write_text("{}")
    assert not xb.verify(broken).ok
    with pytest.raises(xb.XRBenchError, match="1 bundles were not imported"):
        xb.import_bundles([broken], db=tmp_path / "b.duckdb")


def test_importing_changes_no_matplotlib_setting():
    """A notebook's backend and style survive `import xrbench` and the site's plot modules."""
    code = (
        "import matplotlib; matplotlib.use('pdf'); before = dict(matplotlib.rcParams); "
        "import xrbench, harness.site.render; from harness.results import plots; import pandas as pd; "
        "plots.svg(plots.accuracy_vs_latency(pd.DataFrame({'method': ['a'], 'auroc': [0.5], 'latency_ms': [1.0]}))); "
        "print(matplotlib.get_backend(), dict(matplotlib.rcParams) == before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["pdf", "True"]


def test_jupyter_shows_an_xrbench_error_as_its_message_without_a_traceback(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    cells = ["import xrbench as xb", "xb.bench('nope')", "1 / 0"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=120).execute(cwd=str(tmp_path))
    (error,) = nb.cells[1].outputs
    assert error.ename == "UnknownMethodError" and error.traceback[0].startswith("UnknownMethodError: unknown method")
    assert len(error.traceback) == 2 and "Traceback" not in "".join(error.traceback)
    assert "Traceback" in "".join(nb.cells[2].outputs[0].traceback)  # any other error keeps its traceback
