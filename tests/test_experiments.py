"""Sweeps (`--param METHOD:KEY=a,b,c`) and experiment files (`xrbench grid --config`)."""

import re
from pathlib import Path

import pytest
from conftest import publish

from harness.cli.main import main
from harness.core.errors import ParameterError, XRBenchError
from harness.results.store import ResultStore
from harness.run.experiments import load_experiment
from harness.run.grid import parse_overrides, plan_grid
from harness.run.spec import RunOptions
from harness.site.render import slug

ABLATION = Path(__file__).resolve().parents[1] / "experiments" / "ablation.toml"


def test_a_param_with_several_values_sweeps_and_text_keeps_its_commas():
    methods = ["patchcore", "knn"]
    assert parse_overrides(["patchcore:coreset_ratio=0.01, 0.05,0.1"], methods) == {
        "patchcore": {"coreset_ratio": ["0.01", "0.05", "0.1"]}
    }
    assert parse_overrides(["patchcore:layers=1,2,3"], methods) == {"patchcore": {"layers": ["1,2,3"]}}
    assert parse_overrides(["patchcore:layers=2,3|1,2,3"], methods)["patchcore"]["layers"] == ["2,3", "1,2,3"]
    with pytest.raises(ParameterError, match="distinct, non-empty values"):
        parse_overrides(["knn:k=3,3"], methods)
    with pytest.raises(ParameterError, match="distinct, non-empty values"):
        parse_overrides(["knn:k=3,"], methods)


def test_a_sweep_gives_one_cell_per_combination_and_seed_each_with_its_own_key(tiny_board):
    overrides = {"knn": {"k": ["3", "5", "7"]}, "patchcore": {"coreset_ratio": [0.1, 0.2], "layers": "2,3"}}
    plan = plan_grid(["knn", "patchcore"], [str(tiny_board)], [0, 1], overrides, RunOptions(device="cpu"))
    assert len(plan.cells) == 3 * 2 + 2 * 2 and len({c.key for c in plan.cells}) == len(plan.cells)
    assert sorted({c.spec.params["k"] for c in plan.cells if c.spec.method == "knn"}) == [3, 5, 7]
    assert {c.spec.params["layers"] for c in plan.cells if c.spec.method == "patchcore"} == {"2,3"}
    assert "knn k=5 · tiny-ad · seed 1" in [c.name for c in plan.cells]
    with pytest.raises(ParameterError, match=r"coreset_ratio=2\.0 is out of range"):
        plan_grid(["patchcore"], [str(tiny_board)], [0], {"patchcore": {"coreset_ratio": [0.1, 2.0]}},
                  RunOptions(device="cpu"))  # fmt: skip


def test_the_committed_ablation_plans_its_cells():
    e = load_experiment(ABLATION)
    plan = plan_grid(e.methods, e.boards, e.seeds, e.overrides, RunOptions(device="cpu", corruptions=e.corruptions))
    per_method = {m: sum(c.spec.method == m for c in plan.cells) for m in e.methods}
    assert per_method == {"patchcore": 3 * 2 * 3, "ae": 8 * 3}
    assert {c.spec.params["latent"] for c in plan.cells if c.spec.method == "ae"} == {128, 64, 32, 16, 8, 4, 2, 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("boardz = ['synth-cxr-ad']\n[methods.knn]\n", "unknown key 'boardz' (did you mean 'boards'?)"),
        ("seeds = [0, -1]\n[methods.knn]\n", "seeds must be a list of whole numbers >= 0"),
        ("boards = 'synth-cxr-ad'\n[methods.knn]\n", "boards must be a list"),
        ("seeds = [0]\n", "give each method as a table"),
        ("[methods.knn]\nk = []\n", "knn.k sweeps distinct values"),
        ("[methods.knn\n", "is not valid TOML"),
    ],
)
def test_a_bad_experiment_file_is_refused_naming_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(XRBenchError) as refused:
        load_experiment(path)
    assert message in str(refused.value) and str(path) in str(refused.value)


def test_grid_config_runs_the_experiment_and_refuses_other_grid_options(tiny_board, tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text(f'boards = ["{tiny_board}"]\ncorruptions = false\n[methods.knn]\nk = [3, 5]\n')
    db = tmp_path / "r.duckdb"
    assert main(["grid", "--config", str(config), "--db", str(db)]) == 0
    with ResultStore(db) as store:
        runs = store.query(
            "SELECT json_extract(params, '$.k')::INT AS k, m.value FROM runs r JOIN metrics m USING (run_id) "
            "WHERE r.status = 'ok' AND m.metric = 'auroc' AND m.slice = 'all' AND m.condition = 'clean' ORDER BY k"
        )
    assert runs["k"].tolist() == [3, 5]
    page = (publish(db, tmp_path / "site").parent / "methods" / f"{slug('knn')}.html").read_text()
    sweep = page.split("Parameters swept on tiny-ad")[1].split("</table>")[0]
    cells = re.findall(r'<td data-value="([^"]*)"', sweep)
    assert cells == ["3", f"{runs['value'][0]}", "1", "5", f"{runs['value'][1]}", "1"]  # k, AUROC, seeds per row
    assert main(["grid", "--config", str(config), "--methods", "knn", "--dry-run"]) == 2
    assert "--config names the grid; drop --methods" in capsys.readouterr().err
