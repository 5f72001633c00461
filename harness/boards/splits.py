"""Frozen split manifests: one CSV per board, verified by SHA-256 before every run.

A manifest lists every image a board uses with its patient, split and labels. It is written
once (`xrbench split freeze`), committed, and never rebuilt silently: the runner refuses a
manifest whose hash differs from the one recorded in the board file.
"""

from __future__ import annotations

import hashlib
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.errors import ManifestHashMismatch, XRBenchError
from harness.core.fingerprints import file_sha256

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ["image_id", "patient_id", "split", "label", "findings", "view", "sex", "age", "site"]
ID_COLUMNS = MANIFEST_COLUMNS[:3]  # what a licensed dataset's committed manifest holds
LABEL_COLUMNS = ["label", "findings"]


def verify_manifest(path: Path, expected_sha256: str) -> None:
    if not path.exists():
        raise XRBenchError(f"split manifest {path} does not exist")
    actual = file_sha256(path)
    if actual != expected_sha256:
        raise ManifestHashMismatch(
            f"split manifest {path} has SHA-256 {actual}, but the board expects {expected_sha256}. "
            "The split changed since the board was frozen; results would not be comparable. "
            "Restore the committed file (git checkout -- <file>), or freeze a new board version."
        )


def read_manifest(path: Path, ids_only: bool = False, patient_disjoint: bool = True) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            path,
            dtype={
                "image_id": str,
                "patient_id": str,
                "split": str,
                "findings": str,
                "view": str,
                "sex": str,
                "site": str,
            },
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise XRBenchError(f"split manifest {path} is not a readable CSV: {exc}") from exc
    missing = [c for c in (ID_COLUMNS if ids_only else MANIFEST_COLUMNS) if c not in frame.columns]
    if missing:
        raise XRBenchError(f"split manifest {path} lacks columns {missing}")
    check_manifest_values(frame, path)
    if frame["image_id"].duplicated().any():
        dup = frame.loc[frame["image_id"].duplicated(), "image_id"].iloc[0]
        raise XRBenchError(f"split manifest {path} lists image {dup} more than once")
    if patient_disjoint:
        check_patient_disjoint(frame, str(path))
    return frame


def check_manifest_values(frame: pd.DataFrame, path: Path) -> None:
    """Refuse, naming the file, line and column, what would otherwise stop a run halfway: an
    empty id, patient or split, a split that is not train, val or test, a label that is not 0
    or 1; and a manifest with a split of no images."""
    checks = [(c, frame[c].isna(), "is empty") for c in ID_COLUMNS]
    checks.append(("split", ~frame["split"].isin(SPLITS), f"is not one of {', '.join(SPLITS)}"))
    if "label" in frame.columns:
        numeric = pd.to_numeric(frame["label"], errors="coerce")
        checks.append(("label", ~numeric.isin([0, 1]), "is not 0 or 1"))
    for column, bad, problem in checks:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            value = frame[column].iloc[row]
            shown = "" if pd.isna(value) else f" {str(value)[:40]!r}"
            raise XRBenchError(f"split manifest {path}, line {row + 2}, column {column}:{shown} {problem}")
    empty = [s for s in SPLITS if not (frame["split"] == s).any()]
    if empty:
        raise XRBenchError(f"split manifest {path} has no {empty[0]} images (it lists {len(frame)} rows)")
    if "label" in frame.columns:
        frame["label"] = pd.to_numeric(frame["label"]).astype(int)


def check_patient_disjoint(frame: pd.DataFrame, where: str = "manifest") -> None:
    splits_per_patient = frame.groupby("patient_id")["split"].nunique()
    crossing = splits_per_patient[splits_per_patient > 1]
    if len(crossing):
        raise XRBenchError(
            f"{where}: {len(crossing)} patients appear in more than one split "
            f"(first: {crossing.index[0]}); splits must be patient-disjoint"
        )


def in_manifest_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted as a manifest is written: by split (train, val, test), then image id."""
    frame = frame.assign(split=pd.Categorical(frame["split"].astype(str), SPLITS))
    return frame.sort_values(["split", "image_id"]).reset_index(drop=True)


def anomaly_split(
    entries: pd.DataFrame, n_train: int, n_val: tuple[int, int], n_test: tuple[int, int], seed: int
) -> pd.DataFrame:
    """Assign whole patients to test, then val, then train (normal images only).

    `entries` has one row per image with at least image_id, patient_id and label (1 abnormal).
    Test and val take exactly (normal, abnormal) images: patients are taken in a seeded random
    order, those with a still-needed abnormal image first, and an image of a chosen patient
    that would overflow its class is left out rather than moved to another split.
    """
    rng = np.random.default_rng(seed)
    patients = sorted(entries["patient_id"].unique())
    rng.shuffle(patients)
    rows_of = entries.groupby("patient_id", sort=False).indices
    labels = entries["label"].to_numpy().astype(int)
    queue = PatientQueue(patients, {p: bool(labels[rows_of[p]].max()) for p in patients})
    rows: list[int] = []
    splits: list[str] = []
    for split, target in (("test", n_test), ("val", n_val), ("train", (n_train, 0))):
        counts = [0, 0]
        while counts[0] < target[0] or counts[1] < target[1]:
            pick = queue.take(abnormal=counts[1] < target[1])
            if pick is None:
                raise XRBenchError(f"not enough patients to fill the {split} split (normal, abnormal) = {target}")
            for row in rows_of[pick]:
                if counts[labels[row]] < target[labels[row]]:
                    counts[labels[row]] += 1
                    rows.append(row)
                    splits.append(split)
    return in_manifest_order(entries.iloc[rows].assign(split=splits))


class PatientQueue:
    """Patients in a fixed order, taken one at a time: the first with (or without) an abnormal
    image, or, when a normal-only patient is wanted and none is left, the first of any."""

    def __init__(self, order: list, has_abnormal: dict) -> None:
        self.lines = {flag: deque(p for p in order if has_abnormal[p] == flag) for flag in (False, True)}

    def take(self, abnormal: bool):
        line = self.lines[abnormal]
        if not line and not abnormal:
            line = self.lines[True]
        return line.popleft() if line else None


def patient_split(entries: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.DataFrame:
    """Assign every image to a split by patient: patients in a seeded random order fill test,
    then val, then train, each up to its fraction of the images (multi-label boards, which
    train on normal and abnormal images alike)."""
    if set(fractions) != set(SPLITS) or abs(sum(fractions.values()) - 1.0) > 1e-9:
        raise XRBenchError(f"split fractions must give train, val and test summing to 1, not {fractions}")
    sizes = entries.groupby("patient_id").size()
    patients = sorted(sizes.index)
    np.random.default_rng(seed).shuffle(patients)
    # Where each patient's first image falls in the shuffled order, as a fraction of all images.
    start = (sizes[patients].cumsum() - sizes[patients]) / len(entries)
    bounds = np.cumsum([fractions["test"], fractions["val"]])
    split_of = pd.Series(
        np.array(["test", "val", "train"])[np.searchsorted(bounds, start.to_numpy(), side="right")], index=patients
    )
    return in_manifest_order(entries.assign(split=entries["patient_id"].map(split_of)))


def cross_dataset_split(
    train_entries: pd.DataFrame,
    test_entries: pd.DataFrame,
    n_train: int,
    n_val: tuple[int, int],
    n_test: tuple[int, int],
    seed: int,
) -> pd.DataFrame:
    """An anomaly manifest whose train and val come from one dataset and test from another.
    Test patient ids get the prefix `test:`, since they come from another dataset's id space
    and may repeat the training dataset's ids."""
    shared = sorted(set(train_entries["image_id"]) & set(test_entries["image_id"]))
    if shared:
        raise XRBenchError(f"the two datasets share {len(shared)} image ids (first: {shared[0]}); ids must be unique")
    own = anomaly_split(train_entries, n_train, n_val, (0, 0), seed)
    other = anomaly_split(test_entries, 0, (0, 0), n_test, seed)
    other = other.assign(patient_id="test:" + other["patient_id"].astype(str))
    return in_manifest_order(pd.concat([own, other], ignore_index=True))


def given_evaluation_split(entries: pd.DataFrame, n_train: int, seed: int) -> pd.DataFrame:
    """Validation and test exactly as the dataset's `official_split` marks them ('val' and
    'test': a labelled evaluation set such as an expert-adjudicated one); `n_train` normal
    training images drawn, seeded and by whole patients, from the patients of neither."""
    listed = entries.get("official_split", pd.Series("", index=entries.index))
    if not (listed == "val").any() or not (listed == "test").any():
        raise XRBenchError(
            "this board takes validation and test from the dataset's own sets, but the entries mark no 'val' or "
            "'test' images (for NIH: labels = \"experts\" and Google's label file)"
        )
    given = entries[listed.isin(["val", "test"])].assign(split=listed[listed.isin(["val", "test"])])
    pool = entries[~entries["patient_id"].isin(set(given["patient_id"])) & (entries["label"] == 0)]
    frame = pd.concat([given, anomaly_split(pool, n_train, (0, 0), (0, 0), seed)], ignore_index=True)
    check_patient_disjoint(frame, "given evaluation split")
    return in_manifest_order(frame)


def official_test_split(
    entries: pd.DataFrame, val_fraction: float, seed: int, train_val: str = "train_val"
) -> pd.DataFrame:
    """The release's own test list as test; its train/val list split by patient into train and
    val (`entries` carries `official_split`: 'test', `train_val` (by default 'train_val'), or
    '' when unlisted)."""
    listed = entries.get("official_split", pd.Series("", index=entries.index))
    if not (listed == "test").any() or not (listed == train_val).any():
        raise XRBenchError(
            "this board uses the official test list, but the dataset copy has no official split lists "
            "(for NIH: train_val_list.txt and test_list.txt beside Data_Entry_2017.csv)"
        )
    rest = patient_split(
        entries[listed == train_val], {"train": 1 - val_fraction, "val": val_fraction, "test": 0}, seed
    )
    frame = pd.concat([rest, entries[listed == "test"].assign(split="test")], ignore_index=True)
    check_patient_disjoint(frame, "official split")
    return in_manifest_order(frame)


def boxed_test_split(
    entries: pd.DataFrame, boxed: set[str], n_train: int, n_val: tuple[int, int], seed: int
) -> pd.DataFrame:
    """A localization board's manifest: every image with ground-truth boxes is a test image,
    with as many normal test images of each view from other patients (so that a method cannot
    tell the boxed images by their view); the boxed patients' other images are left out, and
    val and train come from the remaining patients as in `anomaly_split`."""
    missing = sorted(boxed - set(entries["image_id"]))
    if missing:
        raise XRBenchError(f"{len(missing)} boxed images are not among the usable images (first: {missing[0]})")
    is_boxed = entries["image_id"].isin(boxed)
    test_patients = set(entries.loc[is_boxed, "patient_id"])
    rest = entries[~entries["patient_id"].isin(test_patients)]
    wanted = entries.loc[is_boxed, "view"].value_counts().to_dict()
    patients = sorted(rest["patient_id"].unique())
    np.random.default_rng(seed).shuffle(patients)
    normal = rest[rest["label"] == 0].groupby("patient_id", sort=False)
    chosen, used = [], set()
    for patient in patients:
        if patient not in normal.groups:
            continue
        for _, row in normal.get_group(patient).iterrows():
            if wanted.get(row["view"], 0) > 0:
                wanted[row["view"]] -= 1
                chosen.append(row)
                used.add(patient)
                break
        if not any(wanted.values()):
            break
    if any(wanted.values()):
        raise XRBenchError(f"not enough normal images of other patients to match the boxed views: short by {wanted}")
    test = pd.concat([entries[is_boxed], pd.DataFrame(chosen)], ignore_index=True).assign(split="test")
    others = anomaly_split(rest[~rest["patient_id"].isin(used)], n_train, n_val, (0, 0), seed)
    frame = pd.concat([test, others], ignore_index=True)
    check_patient_disjoint(frame, "boxed test split")
    return in_manifest_order(frame)


def target_matrix(findings: pd.Series, targets: tuple[str, ...]) -> np.ndarray:
    """(N, K) int64: 1 where an image's `|`-separated findings include target k."""
    sets = findings.fillna("").str.split("|").map(set)
    return np.array([[t in s for t in targets] for s in sets], dtype=np.int64).reshape(len(findings), len(targets))


def write_manifest(frame: pd.DataFrame, path: Path, ids_only: bool = False) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[ID_COLUMNS if ids_only else MANIFEST_COLUMNS].to_csv(path, index=False, lineterminator="\n")
    return file_sha256(path)


def labels_sha256(frame: pd.DataFrame) -> str:
    """SHA-256 of (image id, label, findings) in image-id order: what a licensed board commits
    instead of the labels themselves."""
    table = frame[["image_id", *LABEL_COLUMNS]].sort_values("image_id")
    table = table.assign(label=table["label"].astype(int))
    return hashlib.sha256(table.to_csv(index=False, lineterminator="\n").encode()).hexdigest()


def attach_labels(manifest: pd.DataFrame, entries: pd.DataFrame, expected_sha256: str, where: str) -> pd.DataFrame:
    """Complete an ids-only manifest with labels and metadata from the user's copy, refusing
    when an image is unknown or the labels do not hash to what the board was frozen with."""
    known = entries.drop_duplicates("image_id").set_index("image_id")
    unknown = [i for i in manifest["image_id"] if i not in known.index]
    if unknown:
        raise XRBenchError(f"{where}: {len(unknown)} manifest images are not in your copy (first: {unknown[0]})")
    # The manifest's columns, then any other metadata of the copy a board may slice by (never paths).
    more = [c for c in known.columns if c not in (*MANIFEST_COLUMNS, "path", "official_split")]
    extra = known.loc[manifest["image_id"], [*MANIFEST_COLUMNS[3:], *more]].reset_index(drop=True)
    if extra["label"].isna().any():
        first = manifest["image_id"].iloc[int(extra["label"].isna().to_numpy().nonzero()[0][0])]
        raise XRBenchError(f"{where}: image {first} has no usable label in your copy (uncertainty policy?)")
    full = pd.concat([manifest[ID_COLUMNS].reset_index(drop=True), extra], axis=1)
    full["label"] = full["label"].astype(int)
    actual = labels_sha256(full)
    if actual != expected_sha256:
        raise ManifestHashMismatch(
            f"{where}: the labels in your copy hash to {actual}, but the board was frozen with labels hashing to "
            f"{expected_sha256}. Your copy is another release or label file, or the board's label options (for "
            "example the uncertainty policy) were changed; results would not be comparable."
        )
    return full


def excluded_split_sha256(split_sha256: str, excluded: list[str]) -> str:
    """The identity of a frozen manifest minus some images: never equal to the full one's, so
    results on a reduced manifest are never ranked with results on the full one."""
    return hashlib.sha256("\n".join([split_sha256, "excluding", *sorted(excluded)]).encode()).hexdigest()
