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


def test_grid_shots_runs_every_draw_and_the_parent_page_shows_the_curve(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    args = ["grid", "--boards", str(tiny_board), "--methods", "patchcore,intensity", "--shots", "2,4", "--seeds",
            "0,1", "--param", "patchcore:coreset_ratio=0.5", "--no-corruptions", "--db", str(db)]  # fmt: skip
    assert main(args) == 0
    site = publish(db, tmp_path / "site").parent
    index = (site / "index.html").read_text()
    assert "tiny-ad-k2-draw0" not in index  # variants are shown under their parent
    parent = (site / "boards" / f"{slug('tiny-ad')}.html").read_text()
    track = parent.split("Few-shot track")[1].split("</table>")[0]
    assert "k = 2" in track and "k = 4" in track and track.count("over 2 draws") == 4
    rows = pd.read_csv(next((site / "data").glob("tiny-ad-*-few-shot.csv")))
    assert set(zip(rows["method"], rows["shots"], rows["draws"], strict=True)) == {
        (m, k, 2) for m in ("patchcore", "intensity") for k in (2, 4)
    }
    variant_page = (site / "boards" / f"{slug('tiny-ad-k2-draw1')}.html").read_text()
    assert "A few-shot variant of" in variant_page and f'href="{slug("tiny-ad")}.html"' in variant_page
