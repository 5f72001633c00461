"""Numbers published on a board's protocol (`[[reported]]`): checked when the board file is read,
shown on the board page marked as reported, never ranked with verified runs."""

import re
from pathlib import Path

import pandas as pd
import pytest

from harness.boards.files import load_board
from harness.boards.spec import board_edition
from harness.cli.main import main
from harness.core.errors import XRBenchError
from harness.results.store import ResultStore

ENTRY = {"method": "AE (latent 16)", "metric": "auroc", "value": 0.675, "spread": 0.009,
         "source": "Cai et al., MICCAI 2024, Table 2", "protocol": "64x64"}  # fmt: skip


def with_reported(tiny_board: Path, folder: Path, *entries: dict) -> Path:
    """The tiny board, named tiny-lit, with `[[reported]]` entries."""
    text = tiny_board.read_text().replace('name = "tiny-ad"', 'name = "tiny-lit"')
    text = re.sub(
        r'(?m)^split_manifest = "(.*)"$', lambda m: f'split_manifest = "{tiny_board.parent / m.group(1)}"', text
    )
    for entry in entries:
        text += "\n[[reported]]\n" + "".join(f"{k} = {v!r}\n" if isinstance(v, str) else f"{k} = {v}\n"
                                             for k, v in entry.items())  # fmt: skip
    (folder / "tiny-lit.toml").write_text(text)
    return folder / "tiny-lit.toml"


def test_reported_entries_are_read(tiny_board, tmp_path):
    board = load_board(with_reported(tiny_board, tmp_path, ENTRY, ENTRY | {"metric": "auprc", "value": 1}))
    assert board.reported == (ENTRY, ENTRY | {"metric": "auprc", "value": 1.0})
    assert "Table 2" in board_edition(board)["reported"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source": None}, r"no source \(every reported number names"),
        ({"source": "  "}, r"source is empty"),
        ({"metric": "accuracy"}, r"metric 'accuracy' is not one of xrbench's anomaly metrics"),
        ({"metric": "ece_temperature"}, r"metric 'ece_temperature' is not one of xrbench's anomaly metrics"),
        ({"value": float("nan")}, r"value and spread must be finite"),
        ({"value": "0.7"}, r"value = '0.7' is not a float"),
        ({"spread": -0.1}, r"value and spread must be finite numbers, the spread not negative"),
        ({"n_runs": 0}, r"n_runs = 0 must be at least 1"),
        ({"seeds": 3}, r"unknown key 'seeds'"),
    ],
)
def test_a_bad_reported_entry_is_refused_naming_file_and_entry(tiny_board, tmp_path, change, message):
    entry = {k: v for k, v in (ENTRY | change).items() if v is not None}
    path = with_reported(tiny_board, tmp_path, entry)
    with pytest.raises(XRBenchError, match=rf"board file {re.escape(str(path))}, \[\[reported\]\] entry 1: {message}"):
        load_board(path)


def test_the_board_page_shows_reported_numbers_marked_and_unranked(tiny_board, tmp_path):
    board_file = with_reported(tiny_board, tmp_path, ENTRY)
    db = tmp_path / "r.duckdb"
    assert (
        main(["bench", "--method", "intensity", "--board", str(board_file), "--no-corruptions", "--db", str(db)]) == 0
    )
    with ResultStore(db) as store:
        store.record_board(board_edition(load_board(board_file)))
    assert main(["site", "--db", str(db), "--out", str(tmp_path / "site")]) == 0
    page = next((tmp_path / "site" / "boards").glob("tiny-lit-*.html")).read_text()
    ranked = page.split('id="leaderboard"')[1].split("</table>")[0]
    assert "intensity" in ranked and "AE (latent 16)" not in ranked
    literature = page.split('id="reported"')[1].split("</table>")[0]
    assert "reported in Cai et al., MICCAI 2024, Table 2, not run here" in literature
    assert "0.675" in literature and "0.009" in literature
    rows = pd.read_csv(next((tmp_path / "site" / "data").glob("tiny-lit-*-reported.csv")))
    assert rows[["method", "metric", "value"]].values.tolist() == [["AE (latent 16)", "auroc", 0.675]]


def test_a_board_with_reported_numbers_and_no_run_gets_a_page(tmp_path):
    """`xrbench site` records every board file: MedIAnomaly's numbers show before any run."""
    db = tmp_path / "r.duckdb"
    ResultStore(db).close()
    assert main(["site", "--db", str(db), "--out", str(tmp_path / "site")]) == 0
    page = next((tmp_path / "site" / "boards").glob("rsna-medianomaly-*.html")).read_text()
    assert "No ranked runs" in page or "no ranked runs" in page.lower()
    assert page.count('class="reported-mark"') == len(load_board("rsna-medianomaly").reported) == 16


def test_reported_numbers_sit_beside_the_same_recipe_verified_here(tiny_board, tmp_path):
    """An entry naming the xrbench recipe it runs shows that recipe's runs here: the mean and
    standard deviation of the metric over seeds, computed here from the stored metrics; an
    entry whose recipe has not run says how to run it."""
    board_file = with_reported(tiny_board, tmp_path, ENTRY)
    board_file.write_text(
        board_file.read_text()
        + 'runs_here = { method = "intensity" }\n\n[[reported]]\nmethod = "kNN (k 3)"\nmetric = "auprc"\n'
        'value = 0.6\nsource = "a survey"\nruns_here = { method = "knn", params = { k = 3 } }\n'
    )
    db = tmp_path / "r.duckdb"
    for seed in ("0", "1"):
        argv = ["bench", "--method", "intensity", "--board", str(board_file), "--no-corruptions", "--db", str(db)]
        assert main([*argv, "--seed", seed]) == 0
    with ResultStore(db) as store:
        store.record_board(board_edition(load_board(board_file)))
        aurocs = store.query("SELECT value FROM metrics WHERE metric = 'auroc' AND condition = 'clean' "
                             "AND slice = 'all'")["value"]  # fmt: skip
    assert main(["site", "--db", str(db), "--out", str(tmp_path / "site")]) == 0
    rows = pd.read_csv(next((tmp_path / "site" / "data").glob("tiny-lit-*-reported.csv")))
    first, second = rows.iloc[0], rows.iloc[1]
    assert (first["here"], first["here_seeds"]) == ("intensity", 2)
    assert first["here_mean"] == pytest.approx(aurocs.mean(), abs=1e-12)
    assert first["here_sd"] == pytest.approx(aurocs.std(ddof=1), abs=1e-12)
    assert (second["here"], second["here_seeds"]) == ("knn k=3", 0) and pd.isna(second["here_mean"])
    page = next((tmp_path / "site" / "boards").glob("tiny-lit-*.html")).read_text()
    assert "not run here yet: <code>make bench METHOD=knn BOARD=tiny-lit ARGS=&#39;--param k=3&#39;</code>" in page
    with pytest.raises(XRBenchError, match=r"runs_here = 'ae' is not a dict"):
        load_board(with_reported(tiny_board, tmp_path, ENTRY | {"runs_here": "ae"}))
    from harness.boards.reported import check_reported

    for recipe in ({"params": {"latent": 4}}, {"method": " "}, {"method": "ae", "seed": 1}):
        with pytest.raises(XRBenchError, match=r"entry 1: runs_here must be \{ method = "):
            check_reported([ENTRY | {"runs_here": recipe}], "anomaly", tmp_path / "b.toml")
