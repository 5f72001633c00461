"""The few-shot track: board variants with k normal training images, drawn per seed and frozen
as files with hashes; `xrbench grid --shots`; the parent board page's curve over k."""

import pandas as pd
import pytest
from conftest import publish

from harness.boards.files import load_board
from harness.cli.main import main
from harness.core.errors import XRBenchError
from harness.core.fingerprints import file_sha256
from harness.data.variants import shot_variant
from harness.results.store import ResultStore
from harness.site.render import slug


def test_a_variant_keeps_k_normal_training_images_drawn_by_its_seed_and_the_parents_other_splits(tiny_board):
    parent = load_board(tiny_board)
    manifest = pd.read_csv(parent.split_manifest)
    first, other = shot_variant(tiny_board, 3, 0), shot_variant(tiny_board, 3, 1)
    assert first.parent == tiny_board.parent / "variants" and first.stem == "tiny-ad-k3-draw0"
    board = load_board(first)
    assert board.variant == {"parent": "tiny-ad", "shots": 3, "draw": 0}
    assert board.split_sha256 == file_sha256(board.split_manifest)  # frozen like every split
    rows = [pd.read_csv(load_board(p).split_manifest) for p in (first, other)]
    for frame in rows:
        train = frame[frame["split"] == "train"]
        assert len(train) == 3 and (train["label"] == 0).all()
        assert set(train["image_id"]) <= set(manifest.loc[manifest["split"] == "train", "image_id"])
        rest = frame[frame["split"] != "train"].reset_index(drop=True)
        assert rest.equals(manifest[manifest["split"] != "train"].reset_index(drop=True))
    assert set(rows[0]["image_id"]) != set(rows[1]["image_id"])  # another draw, other images
    before = file_sha256(first)
    assert shot_variant(tiny_board, 3, 0) == first and file_sha256(first) == before  # frozen, not redrawn


def test_a_k_beyond_the_training_set_or_a_multilabel_board_is_refused(tiny_board, tiny_multilabel_board):
    normals = (pd.read_csv(load_board(tiny_board).split_manifest).query("split == 'train'")["label"] == 0).sum()
    with pytest.raises(XRBenchError, match=f"k={normals + 1} is outside 1..{normals}"):
        shot_variant(tiny_board, normals + 1, 0)
    assert not list((tiny_board.parent / "variants").glob(f"*k{normals + 1}*"))  # nothing left behind
    with pytest.raises(XRBenchError, match="few-shot variants are of anomaly boards"):
        shot_variant(tiny_multilabel_board, 2, 0)
    assert main(["grid", "--boards", str(tiny_board), "--shots", "0,2", "--dry-run"]) == 2


def test_a_noisy_variant_trains_on_unused_abnormal_images_of_patients_outside_validation_and_test(tiny_board):
    from harness.data.loading import load_manifest
    from harness.data.variants import noisy_variant

    parent = load_manifest(load_board(tiny_board)).manifest
    board = load_board(noisy_variant(tiny_board, 0.2, 0))
    assert board.variant == {"parent": "tiny-ad", "noise": 0.2, "draw": 0}
    frame = pd.read_csv(board.split_manifest, dtype=str).assign(label=lambda f: f["label"].astype(int))
    parent = parent.astype({"patient_id": str, "image_id": str})
    train = frame[frame["split"] == "train"]
    n_train = (parent["split"] == "train").sum()
    assert len(train) == n_train and train["label"].sum() == round(0.2 * n_train)
    added = train[~train["image_id"].isin(parent["image_id"])]
    assert len(added) == train["label"].sum() and (added["label"] == 1).all()
    assert not set(added["patient_id"]) & set(parent.loc[parent["split"] != "train", "patient_id"])
    held = [list(zip(f.loc[f["split"] != "train", "image_id"], f.loc[f["split"] != "train", "split"], strict=True))
            for f in (frame, parent)]  # fmt: skip
    assert held[0] == held[1]  # validation and test are the parent's
    for share, message in ((1.0, r"outside \[0, 1\)"), (0.99, "unused abnormal images outside validation and test")):
        with pytest.raises(XRBenchError, match=message):
            noisy_variant(tiny_board, share, 0)
    assert main(["grid", "--boards", str(tiny_board), "--noise", "0.05,1.5", "--dry-run"]) == 2


def test_grid_runs_both_tracks_and_the_parent_page_shows_their_curves(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    args = ["grid", "--boards", str(tiny_board), "--methods", "intensity", "--shots", "2,4", "--noise", "0.2",
            "--seeds", "0,1", "--no-corruptions", "--db", str(db)]  # fmt: skip
    assert main(args) == 0
    site = publish(db, tmp_path / "site").parent
    index = (site / "index.html").read_text()
    assert "tiny-ad-k2-draw0" not in index and "tiny-ad" in index  # variants are shown under their parent
    parent = (site / "boards" / f"{slug('tiny-ad')}.html").read_text()
    shots = parent.split("The few-shot track")[1].split("</table>")[0]
    assert "k = 2" in shots and "k = 4" in shots and shots.count("over 2 draws") == 2
    rows = pd.read_csv(next((site / "data").glob("tiny-ad-*-few-shot.csv")))
    assert set(zip(rows["method"], rows["shots"], rows["draws"], strict=True)) == {
        ("intensity", 2, 2),
        ("intensity", 4, 2),
    }
    with ResultStore(db) as store:  # the mean over draws is the runs' own
        values = store.query(
            "SELECT r.board, m.value FROM runs r JOIN metrics m USING (run_id) WHERE m.metric = 'auroc' "
            "AND m.slice = 'all' AND m.condition = 'clean' AND r.board LIKE 'tiny-ad-k2-%'"
        )["value"]
    assert rows.loc[rows["shots"] == 2, "mean"].item() == pytest.approx(values.mean())
    noisy = parent.split("The noisy-training track")[1].split("</table>")[0]
    assert "20% abnormal" in noisy and noisy.count("over 2 draws") == 1
    variant_page = (site / "boards" / f"{slug('tiny-ad-k2-draw1')}.html").read_text()
    assert "A few-shot variant of" in variant_page and f'href="{slug("tiny-ad")}.html"' in variant_page
