"""Boards that reproduce a published protocol from its list file (`harness.boards.lists`), on the
reduced synthetic dataset: the frozen manifest is the lists, and every way a list can be wrong
is refused in one line."""

import hashlib
import itertools
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.boards.files import load_board
from harness.boards.splits import read_manifest
from harness.core.errors import ManifestHashMismatch, XRBenchError
from harness.data.freeze import freeze_board
from harness.data.loading import load_manifest


def listed_board(tiny_board: Path, folder: Path, edit=lambda lists: None, **split: object) -> Path:
    """A board over the tiny board's images whose [split] is a list file made from its manifest
    (validation images as pools to draw from), after `edit` changed the lists."""
    manifest = pd.read_csv(load_board(tiny_board).split_manifest, dtype=str)
    by = lambda s, label: sorted(manifest[(manifest["split"] == s) & (manifest["label"] == label)]["image_id"])  # noqa: E731
    lists = {"train": by("train", "0"), "test": {"0": by("test", "0"), "1": by("test", "1")},
             "pool": {"0": by("val", "0"), "1": by("val", "1")}}  # fmt: skip
    edit(lists)
    (folder / "lists.json").write_text(json.dumps(lists))
    sha = hashlib.sha256((folder / "lists.json").read_bytes()).hexdigest()
    table = {"lists": "lists.json", "lists_sha256": sha, "train_normal": "train", "test_normal": "test/0",
             "test_abnormal": "test/1", "val_normal": "pool/0", "val_abnormal": "pool/1",
             "n_val_normal": len(lists["pool"]["0"]), "n_val_abnormal": len(lists["pool"]["1"]), "seed": 0}  # fmt: skip
    table |= split
    text = tiny_board.read_text().split("\n[ground_truth]")[0]
    text = re.sub(r'(?m)^split_manifest = ".*"$', 'split_manifest = "listed.csv"', text)
    text = re.sub(r'(?m)^split_sha256 = ".*"$', 'split_sha256 = ""', text)
    text += "\n[split]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
    (folder / "listed.toml").write_text(text)
    return folder / "listed.toml"


def test_a_listed_board_freezes_to_its_lists(tiny_board, tmp_path):
    board_file = listed_board(tiny_board, tmp_path)
    freeze_board(board_file)
    frame = read_manifest(tmp_path / "listed.csv")
    original = pd.read_csv(load_board(tiny_board).split_manifest, dtype=str)
    assert dict(zip(frame["image_id"], frame["split"], strict=True)) == dict(
        zip(original["image_id"], original["split"], strict=True)
    )
    assert load_manifest(load_board(board_file)).manifest["label"].sum() == original["label"].astype(int).sum()


def test_validation_is_a_seeded_draw_that_leaves_training(tiny_board, tmp_path):
    """Validation normals drawn from the training list leave it; the same seed draws the same."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    draws = []
    for folder in (tmp_path / "a", tmp_path / "b"):
        board_file = listed_board(tiny_board, folder, val_normal="train", n_val_normal=3)
        freeze_board(board_file)
        draws.append(read_manifest(folder / "listed.csv"))
    assert draws[0].equals(draws[1])
    lists = json.loads((tmp_path / "a" / "lists.json").read_text())
    val = draws[0][draws[0]["split"] == "val"]
    assert ((val["label"] == 0).sum(), (val["label"] == 1).sum()) == (3, len(lists["pool"]["1"]))
    train = set(draws[0].loc[draws[0]["split"] == "train", "image_id"])
    assert train | set(val.loc[val["label"] == 0, "image_id"]) == set(lists["train"])


@pytest.mark.parametrize(
    ("edit", "split", "error", "message"),
    [
        (lambda lists: lists["test"]["1"].append("99999999_000.png"), {}, XRBenchError,
         r"1 images of its published lists are not in your copy .*first: 99999999_000\.png"),
        (lambda lists: lists["test"]["0"].append(lists["test"]["1"][0]), {}, XRBenchError,
         r"is normal in one list and abnormal in another"),
        (lambda lists: lists["test"]["0"].append(lists["pool"]["1"][0]), {}, XRBenchError,
         r"is normal in one list and abnormal in another"),
        (lambda lists: None, {"lists_sha256": "0" * 64}, ManifestHashMismatch,
         r"has SHA-256 [0-9a-f]{64}, but the board expects 0{64}"),
        (lambda lists: None, {"test_abnormal": "test/2"}, XRBenchError, r"has no list 'test/2' \(no key '2'\)"),
        (lambda lists: None, {"n_val_abnormal": 10_000}, XRBenchError, r"n_val_abnormal = 10000, but its list offers"),
    ],
)  # fmt: skip
def test_a_wrong_list_is_refused_in_one_line(tiny_board, tmp_path, edit, split, error, message):
    board_file = listed_board(tiny_board, tmp_path, edit, **split)
    with pytest.raises(error, match=message):
        freeze_board(board_file)
    assert not (tmp_path / "listed.csv").exists()


def test_a_label_the_copy_contradicts_is_refused(tiny_board, tmp_path):
    def swap(lists: dict) -> None:
        lists["test"]["0"], lists["test"]["1"] = lists["test"]["1"], lists["test"]["0"]

    with pytest.raises(XRBenchError, match=r"is labelled 0 by the published lists but 1 in your copy"):
        freeze_board(listed_board(tiny_board, tmp_path, swap))


def test_a_listed_image_missing_on_this_machine_refuses_the_board(tiny_board, tmp_path, monkeypatch):
    """Other boards run without the images `data prepare` found missing; a reproduction does not."""
    import dataclasses

    from harness.data import loading

    board_file = listed_board(tiny_board, tmp_path)
    freeze_board(board_file)
    first = read_manifest(tmp_path / "listed.csv")["image_id"].iloc[0]
    prepare = loading.prepare_dataset
    monkeypatch.setattr(loading, "prepare_dataset", lambda spec: dataclasses.replace(prepare(spec), excluded=(first,)))
    with pytest.raises(XRBenchError, match=rf"1 of its images are missing .*first: {re.escape(first)}.* a partial"):
        load_manifest(load_board(board_file))


def _cross_one_patient(lists: dict) -> None:
    """Move one of a training patient's two images into the normal test list."""
    train = lists["train"]
    first, second = next((a, b) for a, b in itertools.pairwise(train) if a[:8] == b[:8])
    train.remove(second)
    lists["test"]["0"].append(second)
    lists["crossing"] = [first, second]


def test_a_list_crossing_patients_is_refused_by_default(tiny_board, tmp_path):
    with pytest.raises(XRBenchError, match=r"published lists \(crossing_patients = \"refuse\"\): 1 patients appear"):
        freeze_board(listed_board(tiny_board, tmp_path, _cross_one_patient))
    assert not (tmp_path / "listed.csv").exists()


def test_crossing_patients_kept_as_published_or_dropped_from_training(tiny_board, tmp_path):
    frames = {}
    for mode in ("keep", "drop"):
        (tmp_path / mode).mkdir()
        board_file = listed_board(tiny_board, tmp_path / mode, _cross_one_patient, crossing_patients=mode)
        freeze_board(board_file)
        board = load_board(board_file)
        assert board.patient_disjoint == (mode == "drop")
        frames[mode] = load_manifest(board).manifest.set_index("image_id")["split"]
    first, second = json.loads((tmp_path / "keep" / "lists.json").read_text())["crossing"]
    assert (frames["keep"][first], frames["keep"][second]) == ("train", "test")
    assert first not in frames["drop"] and frames["drop"][second] == "test"
    assert len(frames["keep"]) == len(frames["drop"]) + 1
    with pytest.raises(XRBenchError, match=r"patients appear in more than one split"):
        read_manifest(tmp_path / "keep" / "listed.csv")  # a reader that was not told the board keeps them


def test_validation_lists_taken_whole_and_joined(tiny_board, tmp_path):
    """Without n_val_*, every image of the validation lists is validation; a role may join lists."""

    def split_pool(lists: dict) -> None:
        pool = lists["pool"]["0"]
        lists["pool"]["0"], lists["extra"] = pool[: len(pool) // 2], pool[len(pool) // 2 :]

    board_file = listed_board(tiny_board, tmp_path, split_pool, val_normal=["pool/0", "extra"])
    text = re.sub(r"(?m)^n_val_(normal|abnormal) = .*\n", "", board_file.read_text())
    board_file.write_text(text)
    freeze_board(board_file)
    frame = read_manifest(tmp_path / "listed.csv")
    lists = json.loads((tmp_path / "lists.json").read_text())
    assert set(frame.loc[frame["split"] == "val", "image_id"]) == set(
        lists["pool"]["0"] + lists["extra"] + lists["pool"]["1"]
    )


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"crossing_patients": "ignore"}, r"crossing_patients = 'ignore'; choose one of refuse, keep, drop"),
        ({"recipe": "nobody-2031"}, r"unknown split recipe 'nobody-2031' \(known: upd-chexpert\)"),
    ],
)
def test_a_wrong_split_option_is_refused_in_one_line(tiny_board, tmp_path, split, message):
    with pytest.raises(XRBenchError, match=message):
        freeze_board(listed_board(tiny_board, tmp_path, **split))
    assert not (tmp_path / "listed.csv").exists()


def test_the_upd_recipe_reads_string_values_as_upd_did(tmp_path):
    """Ages compare as strings ('9' > '18'); an uncertain support device stays in; the effusion
    list leaves out images with an excluded finding."""
    from harness.boards.recipes import read_train_csv, upd_list

    header = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Lung Opacity,"
              "Pleural Effusion,Pleural Other,Pneumothorax,Fracture,Support Devices")  # fmt: skip
    rows = [
        "R/train/patient1/study1/view1_frontal.jpg,Female,9,Frontal,AP,1.0,,,,,,,-1.0",  # '9' > '18'
        "R/train/patient2/study1/view1_frontal.jpg,Female,18,Frontal,AP,1.0,,,,,,,",  # not > '18'
        "R/train/patient3/study1/view1_frontal.jpg,Female,40,Frontal,AP,1.0,,,,,,,1.0",  # support device
        "R/train/patient4/study1/view1_frontal.jpg,Female,40,Frontal,AP,,,,1.0,,,,",
        "R/train/patient5/study1/view1_frontal.jpg,Female,40,Frontal,AP,,,1.0,1.0,,,,",  # opacity too
        "R/train/patient6/study1/view2_lateral.jpg,Female,40,Lateral,,1.0,,,,,,,",
    ]
    (tmp_path / "train.csv").write_text("\n".join([header, *rows]) + "\n")
    table = read_train_csv(tmp_path / "train.csv")
    assert upd_list(table, "Female", "normal") == [rows[0].split(",")[0]]
    assert upd_list(table, "Female", "effusion") == [rows[3].split(",")[0]]
    (tmp_path / "bad.csv").write_text("Path,Sex\nx,Female\n")
    with pytest.raises(XRBenchError, match=r"bad.csv lacks the CheXpert columns \['Age'"):
        read_train_csv(tmp_path / "bad.csv")
