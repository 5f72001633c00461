"""Boards that keep maps for a sample of images (`map_sample`): every image with ground truth
and a seeded, label-stratified sample of the rest; localization is scored on that sample."""

import re

import numpy as np
import pandas as pd
import pytest
from conftest import publish

from harness.boards.files import load_board
from harness.boards.maps import map_sample
from harness.core.errors import XRBenchError
from harness.data.loading import load_manifest
from harness.public import verify
from harness.results.store import ResultStore
from harness.run.runner import bench
from harness.submissions.bundles import write_bundle


def test_the_sample_keeps_the_ground_truth_and_each_labels_share_and_is_seeded():
    meta = pd.DataFrame({"image_id": [f"i{k:03d}" for k in range(200)], "label": [0] * 150 + [1] * 50})
    truth = {"i160", "i170", "i199"}
    assert map_sample(meta, 0, 0, truth) == set(meta["image_id"]) == map_sample(meta, 200, 0, truth)
    sample = map_sample(meta, 43, 7, truth)
    assert truth <= sample and len(sample) <= 43
    rest = sample - truth
    labels = meta.set_index("image_id")["label"]
    assert sum(labels[i] == 0 for i in rest) == 40 * 150 // 197 and sum(labels[i] == 1 for i in rest) == 40 * 47 // 197
    assert map_sample(meta, 43, 7, truth) == sample and map_sample(meta, 43, 8, truth) != sample
    assert map_sample(meta, 2, 0, truth) == truth  # the ground truth is never dropped


def sampled_board(tiny_board, size):
    text = tiny_board.read_text().replace('name = "tiny-ad"', 'name = "tiny-ad-sampled"')
    path = tiny_board.parent / "tiny-ad-sampled.toml"
    path.write_text(re.sub(r"^version = 1$", f"version = 1\nmap_sample = {size}", text, flags=re.M))
    return path


def test_a_board_with_a_map_sample_stores_and_scores_only_its_maps(tiny_board, tmp_path):
    board = load_board(sampled_board(tiny_board, 12))
    db = tmp_path / "r.duckdb"
    sampled = bench("patchcore", board.path, params={"coreset_ratio": "0.1"}, db=db, device="cpu")
    full = bench("patchcore", tiny_board, params={"coreset_ratio": "0.1"}, db=db, device="cpu")
    with ResultStore(db) as store:
        maps = store.maps(sampled.run_id)
        clean = maps[maps["condition"] == "clean"]
        test_meta = store.predictions(sampled.run_id).query("split == 'test' and condition == 'clean'")
        val_meta = store.predictions(sampled.run_id).query("split == 'val' and condition == 'clean'")
        scores = [
            store.predictions(r).query("split == 'test'")["score"].to_numpy() for r in (sampled.run_id, full.run_id)
        ]
        gallery = store.query("SELECT image_id FROM gallery WHERE run_id = ?", [sampled.run_id])
        located = store.query(
            "SELECT run_id, n FROM metrics WHERE metric = 'pixel_auroc' AND slice = 'all' AND condition = 'clean'"
        ).set_index("run_id")["n"]
    assert np.array_equal(*scores)  # the sample changes which maps are kept, never a score
    case = set(maps.loc[maps["condition"] != "clean", "image_id"])
    truth = load_manifest(board).truth.image_ids
    assert set(clean.loc[clean["split"] == "val", "image_id"]) == map_sample(val_meta, 12, board.seed)
    kept = set(clean.loc[clean["split"] == "test", "image_id"])
    assert kept == map_sample(test_meta, 12, board.seed, truth) | case and truth <= kept
    assert len(kept) < len(test_meta)
    assert located[sampled.run_id] < located[full.run_id]  # scored on the sample only
    assert set(gallery["image_id"]) <= kept  # the gallery's errors are shown with their maps
    with ResultStore(db) as store:
        bundle = write_bundle(store, sampled.run_id, tmp_path / "bundle", maps=True)
    assert verify(bundle, boards={"tiny-ad-sampled": board.path}).ok  # re-scored on the same sample
    page = next((publish(db, tmp_path / "site").parent / "boards").glob("tiny-ad-sampled-*.html")).read_text()
    assert "Scored on a sample" in page and "up to 12 images" in page  # the board says so


def test_a_map_sample_out_of_range_is_refused(tiny_board):
    with pytest.raises(XRBenchError, match="map_sample"):
        load_board(sampled_board(tiny_board, -1))
