"""Training seeds on the leaderboard: the mean and spread across seeds on the board page, and
two methods compared across seeds, paired by seed."""

import numpy as np
import pytest
from conftest import publish
from scipy.stats import ttest_rel
from sklearn.metrics import roc_auc_score

from harness.cli.main import main
from harness.core.errors import XRBenchError
from harness.results.seeds import compare_seeds
from harness.results.store import ResultStore
from harness.run.runner import bench


@pytest.fixture(scope="module")
def seeded(tiny_board, tmp_path_factory):
    db = tmp_path_factory.mktemp("seeds") / "r.duckdb"
    runs = {}
    for method, seeds in (("random", [0, 1, 2]), ("knn", [0, 1])):
        for seed in seeds:
            runs[method, seed] = bench(method, tiny_board, seed=seed, db=db, device="cpu", corruptions=False).run_id
    return db, runs


def _auroc(store, run_id):
    rows = store.predictions(run_id)
    rows = rows[(rows["split"] == "test") & (rows["condition"] == "clean")]
    return roc_auc_score(rows["label"], rows["score"])


def test_two_methods_are_paired_by_the_seeds_they_share(seeded):
    db, runs = seeded
    with ResultStore(db) as store:
        c = compare_seeds(store, "tiny-ad", "knn", "random")
        knn = [_auroc(store, runs["knn", s]) for s in (0, 1)]
        rnd = [_auroc(store, runs["random", s]) for s in (0, 1)]
    assert c.pairs["seed"].tolist() == [0, 1]  # random's seed 2 has no knn partner
    assert c.pairs["run_id_a"].tolist() == [runs["knn", 0], runs["knn", 1]]
    np.testing.assert_allclose(c.pairs["value_a"], knn, rtol=1e-12)
    np.testing.assert_allclose(c.pairs["value_b"], rnd, rtol=1e-12)
    differences = np.subtract(knn, rnd)
    assert c.mean_difference == pytest.approx(differences.mean())
    assert c.std_difference == pytest.approx(np.std(differences, ddof=1))
    assert c.t_p == pytest.approx(ttest_rel(knn, rnd).pvalue) and c.wins_a == int((differences > 0).sum())


def test_bad_seed_comparisons_are_refused_with_the_reason(seeded, tiny_board, capsys):
    db, _ = seeded
    with ResultStore(db) as store, pytest.raises(XRBenchError, match="'patchcore' has no ranked run on this board"):
        compare_seeds(store, "tiny-ad", "knn", "patchcore")
    assert main(["compare", "knn", "random", "--seeds", "--db", str(db)]) == 2
    assert "give --board NAME" in capsys.readouterr().err
    assert main(["compare", "knn", "random", "--seeds", "--board", "tiny-ad", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "knn higher on" in out and "of 2 seeds" in out and "paired t-test across seeds" in out


def test_the_board_page_shows_the_mean_and_spread_across_seeds(seeded, tmp_path):
    db, runs = seeded
    with ResultStore(db) as store:
        values = sorted(_auroc(store, runs["random", s]) for s in (0, 1, 2))
    out = tmp_path / "site"
    publish(db, out)
    html = next((out / "boards").glob("tiny-ad-*.html")).read_text()
    expected = f"mean {np.mean(values):.3f} &plusmn; {np.std(values, ddof=1):.3f} over 3 seeds"
    assert expected in html and "over 2 seeds" in html
