"""Cross-dataset boards: train and validation images from one dataset, test images from another.

The reduced board trains on chest phantoms and tests on dental phantoms: not a meaningful
benchmark, but two generated datasets with distinct image ids, readers and pixel hashes,
which is what the mechanism has to keep apart."""

import re

import pandas as pd
import pytest
from conftest import TINY_DATASET, TINY_DENTAL

from harness.boards.files import load_board
from harness.boards.spec import DatasetSpec
from harness.boards.splits import cross_dataset_split, read_manifest
from harness.cli.main import main
from harness.core.errors import XRBenchError
from harness.data.adapters import synthetic, synthetic_dental
from harness.data.cache import decode_images
from harness.data.loading import load_board_data
from harness.data.prepare import rows_from
from harness.results.store import ResultStore
from harness.run.runner import bench

OTHER_DATASET = TINY_DENTAL
SPLIT = {"n_train": 30, "n_val_normal": 8, "n_val_abnormal": 8, "n_test_normal": 12, "n_test_abnormal": 12}


def _board_text(manifest: str = "cross.csv") -> str:
    def table(params: dict) -> str:
        return "\n".join(f"{k} = {v}" for k, v in params.items()) + '\ncontent_sha256 = ""'

    split = "\n".join(f"{k} = {v}" for k, v in SPLIT.items())
    return f"""
name = "tiny-cross"
version = 1
description = "train on one synthetic cohort, test on another"
task = "anomaly"
resolution = 32
split_manifest = "{manifest}"
split_sha256 = ""
bootstrap = 20
seed = 0
batch_size = 16
min_slice_class = 3

[dataset]
name = "synth-cxr"
{table(TINY_DATASET)}

[test_dataset]
name = "synth-dental"
{table(OTHER_DATASET)}

[split]
{split}
seed = 0
"""


@pytest.fixture(scope="module")
def cross_board(tmp_path_factory, isolated_cache):
    folder = tmp_path_factory.mktemp("cross")
    board = folder / "tiny-cross.toml"
    board.write_text(_board_text())
    assert main(["split", "freeze", str(board)]) == 0
    return board


def test_freezing_records_both_datasets_and_prefixes_test_patients(cross_board):
    train_source = synthetic.prepare(DatasetSpec("synth-cxr", dict(TINY_DATASET)))
    test_source = synthetic_dental.prepare(DatasetSpec("synth-dental", dict(OTHER_DATASET)))
    board = load_board(cross_board)
    assert board.dataset.content_sha256 == train_source.content_sha256
    assert board.test_dataset.content_sha256 == test_source.content_sha256 != train_source.content_sha256
    manifest = read_manifest(board.split_manifest)
    test = manifest[manifest["split"] == "test"]
    assert test["patient_id"].str.startswith("test:").all()
    assert not manifest.loc[manifest["split"] != "test", "patient_id"].str.startswith("test:").any()
    assert (test["label"] == 1).sum() == 12 and (test["label"] == 0).sum() == 12
    assert len(re.findall(r'(?m)^content_sha256 = "[0-9a-f]{64}"$', cross_board.read_text())) == 2


def test_splits_read_images_from_their_own_dataset(cross_board):
    data = load_board_data(load_board(cross_board))
    test_source = synthetic_dental.prepare(DatasetSpec("synth-dental", dict(OTHER_DATASET)))
    first = data.splits["test"].meta["image_id"].iloc[0]
    decoded = decode_images(test_source, [first], 32)[0]
    assert (data.splits["test"].images[0, 0].numpy() == decoded).all()
    assert len(data.splits["train"]) == 30 and len(data.splits["test"]) == 24
    combined = data.dataset_sha256
    assert combined not in (data.source.content_sha256, test_source.content_sha256) and len(combined) == 64


def test_a_cross_dataset_board_runs_end_to_end(cross_board, tmp_path):
    db = tmp_path / "r.duckdb"
    result = bench("intensity", cross_board, db=db, device="cpu", corruptions=False)
    with ResultStore(db) as store:
        test_ids = store.query(
            "SELECT image_id, patient_id FROM predictions WHERE run_id = ? AND split = 'test'", [result.run_id]
        )
    assert len(test_ids) == 24 and test_ids["patient_id"].str.startswith("test:").all()


def test_data_prepare_checks_only_a_datasets_own_rows():
    board = _nih_to_chexpert_board()
    manifest = pd.DataFrame({"image_id": ["a", "b", "c"], "split": ["train", "val", "test"]})
    nih_rows, _ = rows_from(board, manifest, "nih")
    chexpert_rows, params = rows_from(board, manifest, "chexpert")
    assert nih_rows["image_id"].tolist() == ["a", "b"]
    assert chexpert_rows["image_id"].tolist() == ["c"] and params == {"uncertainty": "zeros"}


def _nih_to_chexpert_board():
    from harness.boards.spec import Board

    return Board(
        name="x",
        version=1,
        description="",
        task="anomaly",
        resolution=32,
        split_manifest=None,
        split_sha256="",
        dataset=DatasetSpec("nih"),
        test_dataset=DatasetSpec("chexpert", {"uncertainty": "zeros"}),
    )


def test_cross_dataset_split_keeps_colliding_patient_ids_apart():
    a = pd.DataFrame({"image_id": [f"a{i}" for i in range(8)], "patient_id": [str(i) for i in range(8)]})
    a["label"] = [0, 0, 0, 0, 0, 1, 1, 0]
    with pytest.raises(XRBenchError, match="share 8 image ids"):
        cross_dataset_split(a, a, n_train=3, n_val=(1, 1), n_test=(2, 1), seed=0)
    b = a.assign(image_id=[f"b{i}" for i in range(8)])
    frame = cross_dataset_split(a, b, n_train=3, n_val=(1, 1), n_test=(2, 1), seed=0)
    assert frame.groupby("patient_id")["split"].nunique().max() == 1
    assert set(frame.loc[frame["split"] == "test", "image_id"].str[0]) == {"b"}
    assert set(frame.loc[frame["split"] != "test", "image_id"].str[0]) == {"a"}


def test_freezing_writes_each_hash_into_its_own_table_in_any_order():
    from harness.boards.freeze import set_board_value

    text = 'split_sha256 = ""\n\n[test_dataset]\nname = "b"\ncontent_sha256 = ""\n\n[dataset]\ncontent_sha256 = ""\n'
    text = set_board_value(text, "dataset", "content_sha256", "aaa")
    text = set_board_value(text, "test_dataset", "content_sha256", "bbb")
    text = set_board_value(text, None, "split_sha256", "ccc")
    assert text == (
        'split_sha256 = "ccc"\n\n[test_dataset]\nname = "b"\ncontent_sha256 = "bbb"\n\n'
        '[dataset]\ncontent_sha256 = "aaa"\n'
    )
