"""`xrbench data prepare` on a fake NIH copy: exclusions, their own split hash, label checks."""

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.boards.splits import anomaly_split, write_manifest
from harness.cli.main import main
from harness.core.errors import XRBenchError
from harness.data.adapters.base import NIH_COLUMNS
from harness.data.adapters.nih import read_nih
from harness.results.store import ResultStore
from harness.run.runner import bench


def _nih_copy(root, n_patients=40):
    rng = np.random.default_rng(0)
    rows = []
    for patient in range(1, n_patients + 1):
        for follow_up in range(2):
            name = f"{patient:08d}_{follow_up:03d}.png"
            abnormal = rng.uniform() < 0.4
            rows.append(
                [name, "Nodule" if abnormal else "No Finding", follow_up, patient, 50, "F", "PA", 16, 16, 0.1, 0.1]
            )
            folder = root / f"images_{1 + patient % 2:03d}" / "images"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, size=(16, 16)).astype(np.uint8) + (40 if abnormal else 0)
            Image.fromarray(pixels).save(folder / name)
    pd.DataFrame(rows, columns=NIH_COLUMNS).to_csv(root / "Data_Entry_2017_v2020.csv", index=False)


@pytest.fixture
def nih_project(tmp_path, monkeypatch):
    """A project root with one board on a fake NIH copy, and isolated data and cache folders."""
    copy, project = tmp_path / "nih", tmp_path / "project"
    _nih_copy(copy)
    entries = read_nih(copy)
    frame = anomaly_split(entries, n_train=20, n_val=(5, 5), n_test=(10, 10), seed=0)
    sha = write_manifest(frame, project / "datasets" / "nih" / "splits" / "tiny-nih.csv")
    (project / "leaderboards").mkdir(parents=True)
    (project / "leaderboards" / "tiny-nih.toml").write_text(f"""
name = "tiny-nih"
version = 1
description = "fake NIH board"
task = "anomaly"
resolution = 16
split_manifest = "../datasets/nih/splits/tiny-nih.csv"
split_sha256 = "{sha}"
bootstrap = 20
seed = 0
batch_size = 8
slices = []

[dataset]
name = "nih"
""")
    for name, value in (
        ("XRBENCH_ROOT", project),
        ("XRBENCH_DATA", tmp_path / "data"),
        ("XRBENCH_CACHE", tmp_path / "cache"),
    ):
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("XRBENCH_NIH_ROOT", raising=False)
    return copy, frame, sha


def test_bench_before_prepare_says_what_to_run(nih_project, tmp_path):
    with pytest.raises(XRBenchError, match="xrbench data prepare nih --root"):
        bench("intensity", "tiny-nih", db=tmp_path / "r.duckdb", device="cpu", corruptions=False)


def test_prepare_records_exclusions_and_runs_use_a_reduced_manifest_hash(nih_project, tmp_path, capsys):
    copy, frame, sha = nih_project
    test_ids = frame.loc[frame["split"] == "test", "image_id"].tolist()
    located = read_nih(copy).set_index("image_id")["path"]
    (copy / located[test_ids[0]]).unlink()
    (copy / located[test_ids[1]]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["data", "prepare", "nih", "--root", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "2 images excluded" in out and test_ids[0] in out and test_ids[1] in out
    report = pd.read_csv(tmp_path / "data" / "nih" / "exclusions.csv")
    assert sorted(report["image_id"]) == sorted(test_ids[:2])

    db = tmp_path / "r.duckdb"
    result = bench("intensity", "tiny-nih", db=db, device="cpu", corruptions=False)
    with ResultStore(db) as store:
        run = store.run(result.run_id)
        scored = set(store.query("SELECT image_id FROM predictions WHERE split = 'test'")["image_id"])
    assert run["split_sha256"] != sha and len(run["split_sha256"]) == 64
    assert scored == set(test_ids[2:])


def test_prepare_refuses_a_copy_with_other_labels(nih_project):
    copy, frame, _ = nih_project
    table = pd.read_csv(copy / "Data_Entry_2017_v2020.csv")
    first = frame["image_id"].iloc[0]
    table.loc[table["Image Index"] == first, "Finding Labels"] = "Hernia"
    table.to_csv(copy / "Data_Entry_2017_v2020.csv", index=False)
    assert main(["data", "prepare", "nih", "--root", str(copy)]) != 0


def test_a_clean_copy_runs_under_the_board_hash(nih_project, tmp_path):
    copy, _, sha = nih_project
    assert main(["data", "prepare", "nih", "--root", str(copy)]) == 0
    shutil.rmtree(tmp_path / "cache")  # later runs rebuild the cache from the prepared copy
    result = bench("intensity", "tiny-nih", db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
    with ResultStore(tmp_path / "r.duckdb") as store:
        assert store.run(result.run_id)["split_sha256"] == sha


def _chexpert_copy(root, n_patients=70):
    from harness.data.adapters.chexpert_labels import OBSERVATIONS

    rng = np.random.default_rng(1)
    rows = []
    for patient in range(1, n_patients + 1):
        relative = f"train/patient{patient:05d}/study1/view1_frontal.jpg"
        abnormal = rng.uniform() < 0.4
        values = {name: "" for name in OBSERVATIONS}
        values["Edema" if abnormal else "No Finding"] = 1.0
        if patient % 7 == 0:
            values["Edema"], values["No Finding"] = -1.0, ""  # uncertain only: no anomaly label
        rows.append(
            {
                "Path": f"CheXpert-v1.0-small/{relative}",
                "Sex": "Female",
                "Age": 60,
                "Frontal/Lateral": "Frontal",
                "AP/PA": "AP",
                **values,
            }
        )
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, size=(16, 16)).astype(np.uint8)).save(root / relative)
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    pd.DataFrame(rows[:0], columns=list(rows[0])).to_csv(root / "valid.csv", index=False)


def test_licensed_board_commits_ids_only_and_checks_the_labels_hash(tmp_path, monkeypatch):
    from harness.boards.splits import ID_COLUMNS
    from harness.core.errors import ManifestHashMismatch

    copy, project = tmp_path / "chexpert", tmp_path / "project"
    _chexpert_copy(copy)
    (project / "leaderboards").mkdir(parents=True)
    board = project / "leaderboards" / "tiny-chexpert.toml"
    board.write_text("""
name = "tiny-chexpert"
version = 1
description = "fake CheXpert board"
task = "anomaly"
resolution = 16
split_manifest = "../datasets/chexpert/splits/tiny-chexpert.csv"
split_sha256 = ""
labels_sha256 = ""
bootstrap = 20
seed = 0
batch_size = 8
slices = []

[dataset]
name = "chexpert"
uncertainty = "ignore"

[split]
n_train = 14
n_val_normal = 3
n_val_abnormal = 3
n_test_normal = 5
n_test_abnormal = 5
""")
    for name, value in (
        ("XRBENCH_ROOT", project),
        ("XRBENCH_DATA", tmp_path / "data"),
        ("XRBENCH_CACHE", tmp_path / "cache"),
        ("XRBENCH_CHEXPERT_ROOT", copy),
    ):
        monkeypatch.setenv(name, str(value))
    assert main(["split", "freeze", "tiny-chexpert"]) == 0
    manifest = pd.read_csv(project / "datasets" / "chexpert" / "splits" / "tiny-chexpert.csv")
    assert list(manifest.columns) == ID_COLUMNS  # no labels committed
    assert 'labels_sha256 = "' in board.read_text() and 'labels_sha256 = ""' not in board.read_text()
    monkeypatch.delenv("XRBENCH_CHEXPERT_ROOT")
    assert main(["data", "prepare", "chexpert", "--root", str(copy)]) == 0
    result = bench("intensity", "tiny-chexpert", db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
    assert "auroc" in set(result.metrics["metric"])

    table = pd.read_csv(copy / "train.csv", dtype=str, keep_default_na=False)
    first = manifest["image_id"].iloc[0]
    row = table["Path"].str.endswith(first)
    table.loc[row, "Pleural Effusion"] = "1.0"  # a changed label
    table.to_csv(copy / "train.csv", index=False)
    with pytest.raises(ManifestHashMismatch, match="labels in your copy"):
        bench("intensity", "tiny-chexpert", db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
