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
    crossing_patients = "refuse"          # or "keep", or "drop"

A list is a key path into a JSON file of lists (or several, joined in order), or, for a text
file of one id per line, the empty key. A protocol that published code rather than lists names
its `recipe` instead of `lists` (`harness.boards.recipes`): the lists are rebuilt from the
dataset's own files when the board is frozen, so nothing derived from licensed labels is
committed; the manifest then holds ids and splits, and the copy's labels are checked by
`labels_sha256` like any licensed board's. Labels come from the lists (what the protocol called
normal and abnormal); the user's copy must hold every listed image and must not contradict a
list's label. A validation image drawn from the training list leaves the training split; with
no `n_val_*`, every image of the validation list not in another split is validation.

Published splits are not always patient-disjoint. `crossing_patients` says what to do with a
patient whose images land in two splits: `refuse` the lists (the default), `keep` them as
published (the board is then marked not patient-disjoint and its manifest is read as such),
or `drop` images until no patient crosses, keeping the test split exactly as listed: training
images of test patients go first, then validation images of test or training patients.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.boards.recipes import run_recipe
from harness.boards.spec import Board
from harness.boards.splits import check_patient_disjoint, in_manifest_order
from harness.core.errors import ManifestHashMismatch, XRBenchError
from harness.core.fingerprints import file_sha256

FIXED = {"train_normal": ("train", 0), "test_normal": ("test", 0), "test_abnormal": ("test", 1)}
DRAWN = {"val_normal": 0, "val_abnormal": 1}
CROSSING = ("refuse", "keep", "drop")


def is_listed(board: Board) -> bool:
    """Whether the board's splits are a published protocol's lists (or the recipe that wrote them)."""
    return "lists" in board.split or "recipe" in board.split


def labels_from_lists(board: Board) -> bool:
    """Whether a list file labels the board's images (a recipe's lists are not kept)."""
    return "lists" in board.split


def crossing_patients(board: Board) -> str:
    """What the board does with a patient in two splits (`refuse`, `keep` or `drop`)."""
    value = board.split.get("crossing_patients", "refuse")
    if value not in CROSSING:
        raise XRBenchError(f"board {board.name}: [split] crossing_patients = {value!r}; choose one of "
                           f"{', '.join(CROSSING)}")  # fmt: skip
    return value


def list_file(board: Board) -> Path:
    assert board.path is not None
    return (board.path.parent / board.split["lists"]).resolve()


def published_lists(board: Board, root: Path | None = None) -> dict[str, list[str]]:
    """Each list the `[split]` table names (train_normal, ..., val_abnormal) -> its image ids,
    from the list file once its SHA-256 is the one the board recorded, or from the board's
    recipe run on the dataset's files in `root`."""
    spec = board.split
    if "recipe" in spec:
        if root is None:
            raise XRBenchError(f"board {board.name}: its recipe needs the dataset's files (freeze it with them)")
        return _roles(board, run_recipe(spec["recipe"], root), f"recipe {spec['recipe']}")
    path = list_file(board)
    if not path.is_file():
        raise XRBenchError(f"board {board.name}: its list file {path} does not exist")
    actual = file_sha256(path)
    if actual != spec.get("lists_sha256"):
        raise ManifestHashMismatch(
            f"board {board.name}: list file {path} has SHA-256 {actual}, but the board expects "
            f"{spec.get('lists_sha256')}; it is not the published list the board reproduces"
        )
    text = path.read_text()
    return _roles(board, json.loads(text) if path.suffix == ".json" else text.split(), f"list file {path}")


def _roles(board: Board, document: object, where: str) -> dict[str, list[str]]:
    spec, suffix, lists = board.split, board.split.get("list_suffix", ""), {}
    for role in (*FIXED, *DRAWN):
        if role not in spec:
            raise XRBenchError(f"board {board.name}: [split] names no {role} list")
        keys = spec[role] if isinstance(spec[role], list) else [spec[role]]
        ids = [str(i) for key in keys for i in _at(document, key, where)]
        lists[role] = [i.removesuffix(suffix) for i in ids]
    return lists


def _at(document: object, key: str, where: str) -> list:
    value = document
    for part in [p for p in key.split("/") if p]:
        if not isinstance(value, dict) or part not in value:
            raise XRBenchError(f"{where} has no list {key!r} (no key {part!r})")
        value = value[part]
    if not isinstance(value, list):
        raise XRBenchError(f"{where}: {key!r} is not a list of image ids")
    return value


def list_labels(board: Board, root: Path | None = None) -> pd.Series:
    """image id -> 0 or 1, as the board's lists label it; an image in two lists is refused."""
    rows = [(i, FIXED.get(role, (None, DRAWN.get(role)))[1]) for role, ids in published_lists(board, root).items()
            for i in ids]  # fmt: skip
    labels = pd.DataFrame(rows, columns=["image_id", "label"]).drop_duplicates()
    twice = labels["image_id"].duplicated()
    if twice.any():
        raise XRBenchError(f"board {board.name}: image {labels['image_id'][twice].iloc[0]} is normal in one list "
                           "and abnormal in another")  # fmt: skip
    return labels.set_index("image_id")["label"]


def list_labelled(board: Board, entries: pd.DataFrame, root: Path | None = None) -> pd.DataFrame:
    """The dataset's entries with the lists' labels, refusing a listed image the copy lacks (a
    partial reproduction is not a reproduction) and a label the copy contradicts."""
    labels = list_labels(board, root)
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


def listed_split(board: Board, entries: pd.DataFrame, root: Path | None = None) -> pd.DataFrame:
    """The manifest: training and test images exactly as listed, validation images drawn
    (seeded) from their lists, from patients in neither of the others; then patients that
    cross splits refused, kept or dropped as `crossing_patients` says."""
    lists, spec, crossing = published_lists(board, root), board.split, crossing_patients(board)
    split = {i: "train" for i in lists["train_normal"]}
    split |= {i: "test" for role in ("test_normal", "test_abnormal") for i in lists[role]}
    entries = list_labelled(board, entries, root).drop_duplicates("image_id").set_index("image_id")
    rng = np.random.default_rng(spec.get("seed", board.seed))
    for role in DRAWN:
        if f"n_{role}" not in spec:  # the whole list
            split |= {i: "val" for i in lists[role] if i not in split}
            continue
        pool, n = _pool(entries["patient_id"], lists[role], split, crossing == "keep"), spec[f"n_{role}"]
        if n > len(pool):
            raise XRBenchError(f"board {board.name}: n_{role} = {n}, but its list offers {len(pool)} images to draw")
        split |= {pool[k]: "val" for k in sorted(rng.permutation(len(pool))[:n])}
    frame = entries.loc[list(split)].reset_index().assign(split=list(split.values()))
    if crossing == "drop":
        frame = without_crossing_patients(frame)
    elif crossing == "refuse":
        check_patient_disjoint(frame, f'board {board.name}\'s published lists (crossing_patients = "refuse")')
    return in_manifest_order(frame.assign(label=frame["label"].astype(int)))


def without_crossing_patients(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows left once no patient is in two splits, the test split untouched: training
    images of test patients leave, then validation images of test or training patients."""
    patients = lambda s: set(frame.loc[frame["split"] == s, "patient_id"])  # noqa: E731
    test = patients("test")
    frame = frame[~((frame["split"] == "train") & frame["patient_id"].isin(test))]
    taken = test | patients("train")
    return frame[~((frame["split"] == "val") & frame["patient_id"].isin(taken))]


def _pool(patient: pd.Series, ids: list[str], split: dict[str, str], any_patient: bool = False) -> list[str]:
    """The images of a list a validation image may be drawn from, sorted: not in the test split,
    and (unless `any_patient`) of a patient whose other images are in no split but validation,
    so that moving one from training to validation keeps patients apart."""
    placed: dict[str, list[str]] = {}
    for image in split:
        placed.setdefault(patient[image], []).append(image)
    return sorted(i for i in ids if split.get(i) != "test" and (any_patient or
                  all(j == i or split[j] == "val" for j in placed.get(patient[i], []))))  # fmt: skip
