import shutil

import pandas as pd
import pytest

from harness.boards.files import load_board
from harness.boards.splits import anomaly_split, check_patient_disjoint, read_manifest, verify_manifest
from harness.core.errors import ManifestHashMismatch, XRBenchError


@pytest.fixture(scope="module")
def shipped():
    board = load_board("synth-cxr-ad")
    return board, read_manifest(board.split_manifest)


def test_shipped_manifest_matches_its_board_hash(shipped):
    board, _ = shipped
    verify_manifest(board.split_manifest, board.split_sha256)


def test_shipped_manifest_is_patient_disjoint_with_documented_sizes(shipped):
    _, frame = shipped
    patients = [set(frame.loc[frame["split"] == s, "patient_id"]) for s in ("train", "val", "test")]
    assert not (patients[0] & patients[1]) and not (patients[0] & patients[2]) and not (patients[1] & patients[2])
    counts = frame.groupby(["split", "label"]).size().to_dict()
    assert counts == {("train", 0): 600, ("val", 0): 100, ("val", 1): 100, ("test", 0): 200, ("test", 1): 200}


def test_changed_manifest_is_refused_with_both_hashes(shipped, tmp_path):
    board, _ = shipped
    copy = tmp_path / "manifest.csv"
    shutil.copy(board.split_manifest, copy)
    with open(copy, "a") as f:
        f.write("\n")
    with pytest.raises(ManifestHashMismatch) as info:
        verify_manifest(copy, board.split_sha256)
    assert str(copy) in str(info.value) and board.split_sha256 in str(info.value)


def test_patients_crossing_splits_are_rejected():
    frame = pd.DataFrame({"patient_id": ["1", "1", "2"], "split": ["train", "test", "test"]})
    with pytest.raises(XRBenchError, match="more than one split"):
        check_patient_disjoint(frame)


def test_anomaly_split_gives_exact_counts_and_keeps_patients_together():
    entries = pd.DataFrame(
        {
            "image_id": [f"{p}_{i}" for p in range(100) for i in range(2)],
            "patient_id": [str(p) for p in range(100) for _ in range(2)],
            "label": [int(p % 3 == 0 and i == 1) for p in range(100) for i in range(2)],
        }
    )
    frame = anomaly_split(entries, n_train=60, n_val=(10, 5), n_test=(20, 10), seed=1)
    check_patient_disjoint(frame)
    counts = frame.groupby(["split", "label"], observed=True).size().to_dict()
    assert counts == {("train", 0): 60, ("val", 0): 10, ("val", 1): 5, ("test", 0): 20, ("test", 1): 10}
    assert frame.equals(anomaly_split(entries, n_train=60, n_val=(10, 5), n_test=(20, 10), seed=1))


def test_anomaly_split_says_when_patients_run_out():
    entries = pd.DataFrame({"image_id": ["a", "b"], "patient_id": ["1", "2"], "label": [0, 1]})
    with pytest.raises(XRBenchError, match="not enough patients"):
        anomaly_split(entries, n_train=5, n_val=(1, 0), n_test=(0, 1), seed=0)


def test_malformed_manifest_names_the_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,split\na.png,train\n")
    with pytest.raises(XRBenchError, match="lacks columns"):
        read_manifest(bad)
    bad.write_text(
        "image_id,patient_id,split,label,findings,view,sex,age,site\na.png,1,holdout,0,No Finding,PA,M,40,A\n"
    )
    with pytest.raises(XRBenchError, match="line 2, column split: 'holdout' is not one of train, val, test"):
        read_manifest(bad)


HEADER = "image_id,patient_id,split,label,findings,view,sex,age,site\n"
GOOD = "a.png,1,train,0,No Finding,PA,M,40,A\nb.png,2,val,1,Mass,PA,F,50,A\nc.png,3,test,0,No Finding,PA,M,60,A\n"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("", "lists no images|has no train images"),
        (GOOD + "d.png,4,test,2,Mass,PA,F,70,A\n", "line 5, column label: '2' is not 0 or 1"),
        (GOOD + "d.png,4,test,yes,Mass,PA,F,70,A\n", "line 5, column label: 'yes' is not 0 or 1"),
        (GOOD + "d.png,,test,1,Mass,PA,F,70,A\n", "line 5, column patient_id: is empty"),
        (GOOD.replace("b.png,2,val", "b.png,2,test"), "has no val images"),
    ],
    ids=["empty", "label 2", "label text", "no patient", "no val split"],
)
def test_manifest_values_are_checked_on_load_naming_line_and_column(tmp_path, rows, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + rows)
    with pytest.raises(XRBenchError, match=message) as caught:
        read_manifest(bad)
    assert str(bad) in str(caught.value)


def _entries(n_patients: int, seed: int = 0) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for k in range(int(rng.integers(1, 4))):
            label = int(rng.random() < 0.4)
            rows.append((f"{p:05d}_{k:03d}.png", str(p), label, "Mass" if label else "No Finding",
                         "PA" if rng.random() < 0.6 else "AP"))  # fmt: skip
    return pd.DataFrame(rows, columns=["image_id", "patient_id", "label", "findings", "view"])


def test_a_boxed_test_split_holds_every_boxed_image_and_view_matched_normals():
    from harness.boards.splits import boxed_test_split

    entries = _entries(400)
    abnormal = entries[entries["label"] == 1]
    boxed = set(abnormal["image_id"].iloc[::7])
    frame = boxed_test_split(entries, boxed, n_train=100, n_val=(20, 20), seed=0)
    test = frame[frame["split"] == "test"]
    assert boxed <= set(test["image_id"]) and set(test.loc[test["label"] == 1, "image_id"]) == boxed
    views = entries[entries["image_id"].isin(boxed)]["view"].value_counts()
    assert test[test["label"] == 0]["view"].value_counts().to_dict() == views.to_dict()
    check_patient_disjoint(frame)
    boxed_patients = set(entries.loc[entries["image_id"].isin(boxed), "patient_id"])
    assert not set(frame.loc[frame["split"] != "test", "patient_id"]) & boxed_patients
    left_out = entries[entries["patient_id"].isin(boxed_patients) & ~entries["image_id"].isin(boxed)]
    assert not set(left_out["image_id"]) & set(frame["image_id"])
    counts = frame[frame["split"] != "test"].groupby(["split", "label"]).size().to_dict()
    assert counts == {("train", 0): 100, ("val", 0): 20, ("val", 1): 20}
    with pytest.raises(XRBenchError, match="1 boxed images are not among the usable images"):
        boxed_test_split(entries, {"nosuch.png"}, 10, (1, 1), 0)


def test_the_shipped_nih_localization_board_tests_every_boxed_image(tmp_path):
    """nih-loc's frozen manifest against NIH's box list (torchxrayvision's copy)."""
    import gzip
    from pathlib import Path

    import torchxrayvision

    from harness.data.adapters.nih import read_bbox_list

    board = load_board("nih-loc")
    verify_manifest(board.split_manifest, board.split_sha256)
    frame = read_manifest(board.split_manifest)
    packed = Path(torchxrayvision.__file__).parent / "data" / "BBox_List_2017.csv.gz"
    (tmp_path / "boxes.csv").write_bytes(gzip.decompress(packed.read_bytes()))
    boxed = set(read_bbox_list(tmp_path / "boxes.csv")["image_id"])
    test = frame[frame["split"] == "test"]
    assert set(test.loc[test["label"] == 1, "image_id"]) == boxed and len(boxed) == 880
    abnormal_views = test[test["label"] == 1]["view"].value_counts().to_dict()
    assert test[test["label"] == 0]["view"].value_counts().to_dict() == abnormal_views == {"PA": 478, "AP": 402}
    check_patient_disjoint(frame)
