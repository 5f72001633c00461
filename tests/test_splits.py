import shutil

import pandas as pd
import pytest

from harness.boards import load_board
from harness.errors import ManifestHashMismatch, XRBenchError
from harness.splits import anomaly_split, check_patient_disjoint, read_manifest, verify_manifest


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
    with pytest.raises(XRBenchError, match="unknown split"):
        read_manifest(bad)
