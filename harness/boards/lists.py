"""Splits that reproduce a published protocol from the image lists it published.

A board's `[split]` table names the list file, by path (relative to the board file) and
SHA-256, and which of its lists make each split:

    [split]
    lists = "../datasets/medianomaly/rsna.json"
    lists_sha256 = "4324e09c..."
    list_suffix = ".jpg"                  # what the lists append to an image id
    train_normal = "train/0"              # a key path into a JSON file of lists
    test_normal = "test/0"
    test_abnormal = "test/1"
    val_normal = "train/unlabeled/0"      # validation images are drawn from these lists:
    val_abnormal = "train/unlabeled/1"    # n_val_normal and n_val_abnormal of them, seeded
    n_val_normal = 500
    n_val_abnormal = 500
    seed = 0

A list is a key path into a JSON file of lists, or, for a text file of one id per line, the
empty key. Labels come from the lists (what the protocol called normal and abnormal); the
user's copy must hold every listed image and must not contradict a list's label. A validation
image drawn from the training list leaves the training split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.boards.spec import Board
from harness.boards.splits import in_manifest_order
from harness.core.errors import ManifestHashMismatch, XRBenchError
from harness.core.fingerprints import file_sha256

FIXED = {"train_normal": ("train", 0), "test_normal": ("test", 0), "test_abnormal": ("test", 1)}
DRAWN = {"val_normal": 0, "val_abnormal": 1}


def is_listed(board: Board) -> bool:
    """Whether the board's splits are a published protocol's lists."""
    return "lists" in board.split


def list_file(board: Board) -> Path:
    assert board.path is not None
    return (board.path.parent / board.split["lists"]).resolve()


def published_lists(board: Board) -> dict[str, list[str]]:
    """Each list the `[split]` table names (train_normal, ..., val_abnormal) -> its image ids,
    from the list file once its SHA-256 is the one the board recorded."""
    path, spec = list_file(board), board.split
    if not path.is_file():
        raise XRBenchError(f"board {board.name}: its list file {path} does not exist")
    actual = file_sha256(path)
    if actual != spec.get("lists_sha256"):
        raise ManifestHashMismatch(
            f"board {board.name}: list file {path} has SHA-256 {actual}, but the board expects "
            f"{spec.get('lists_sha256')}; it is not the published list the board reproduces"
        )
    text = path.read_text()
    document = json.loads(text) if path.suffix == ".json" else text.split()
    suffix = spec.get("list_suffix", "")
    lists = {}
    for role in (*FIXED, *DRAWN):
        if role not in spec:
            raise XRBenchError(f"board {board.name}: [split] names no {role} list")
        ids = [str(i) for i in _at(document, spec[role], path)]
        lists[role] = [i.removesuffix(suffix) for i in ids]
    return lists


def _at(document: object, key: str, path: Path) -> list:
    value = document
    for part in [p for p in key.split("/") if p]:
        if not isinstance(value, dict) or part not in value:
            raise XRBenchError(f"list file {path} has no list {key!r} (no key {part!r})")
        value = value[part]
    if not isinstance(value, list):
        raise XRBenchError(f"list file {path}: {key!r} is not a list of image ids")
    return value


def list_labels(board: Board) -> pd.Series:
    """image id -> 0 or 1, as the board's lists label it; an image in two lists is refused."""
    rows = [(i, FIXED.get(role, (None, DRAWN.get(role)))[1]) for role, ids in published_lists(board).items()
            for i in ids]  # fmt: skip
    labels = pd.DataFrame(rows, columns=["image_id", "label"]).drop_duplicates()
    twice = labels["image_id"].duplicated()
    if twice.any():
        raise XRBenchError(f"board {board.name}: image {labels['image_id'][twice].iloc[0]} is normal in one list "
                           "and abnormal in another")  # fmt: skip
    return labels.set_index("image_id")["label"]


def list_labelled(board: Board, entries: pd.DataFrame) -> pd.DataFrame:
    """The dataset's entries with the lists' labels, refusing a listed image the copy lacks (a
    partial reproduction is not a reproduction) and a label the copy contradicts."""
    labels = list_labels(board)
    known = set(entries["image_id"])
    missing = [i for i in labels.index if i not in known]
    if missing:
        raise XRBenchError(
            f"board {board.name}: {len(missing)} images of its published lists are not in your copy of "
            f"{board.dataset.name} (first: {missing[0]}); it reproduces a published protocol, so it needs every one"
        )
    listed = entries["image_id"].map(labels)
    clash = listed.notna() & entries["label"].notna() & (listed != entries["label"])
    if clash.any():
        row = entries[clash].iloc[0]
        raise XRBenchError(f"board {board.name}: image {row['image_id']} is labelled {int(listed[clash].iloc[0])} "
                           f"by the published lists but {int(row['label'])} in your copy")  # fmt: skip
    return entries.assign(label=listed.where(listed.notna(), entries["label"]))


def listed_split(board: Board, entries: pd.DataFrame) -> pd.DataFrame:
    """The manifest: training and test images exactly as listed, validation images drawn
    (seeded) from their lists, from patients in neither of the others."""
    lists, spec = published_lists(board), board.split
    split = {i: "train" for i in lists["train_normal"]}
    split |= {i: "test" for role in ("test_normal", "test_abnormal") for i in lists[role]}
    entries = list_labelled(board, entries).drop_duplicates("image_id").set_index("image_id")
    rng = np.random.default_rng(spec.get("seed", board.seed))
    for role in DRAWN:
        pool, n = _pool(entries["patient_id"], lists[role], split), spec[f"n_{role}"]
        if n > len(pool):
            raise XRBenchError(f"board {board.name}: n_{role} = {n}, but its list offers {len(pool)} images to draw")
        split |= {pool[k]: "val" for k in sorted(rng.permutation(len(pool))[:n])}
    frame = entries.loc[list(split)].reset_index().assign(split=list(split.values()))
    return in_manifest_order(frame.assign(label=frame["label"].astype(int)))


def _pool(patient: pd.Series, ids: list[str], split: dict[str, str]) -> list[str]:
    """The images of a list a validation image may be drawn from, sorted: not in the test split,
    and of a patient whose other images are in no split but validation (so that moving one
    from training to validation keeps patients apart)."""
    placed: dict[str, list[str]] = {}
    for image in split:
        placed.setdefault(patient[image], []).append(image)
    return sorted(i for i in ids if split.get(i) != "test" and
                  all(j == i or split[j] == "val" for j in placed.get(patient[i], [])))  # fmt: skip
