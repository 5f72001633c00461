"""Shared fixtures: a reduced synthetic board built in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.adapters import synthetic
from harness.boards import DatasetSpec
from harness.splits import anomaly_split, write_manifest

TINY_DATASET = {"seed": 3, "n_patients": 70, "image_size": 64}


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep tests away from the user's cache, data and results."""
    root = tmp_path_factory.mktemp("xrbench-cache")
    old = {k: os.environ.get(k) for k in ("XRBENCH_CACHE", "XRBENCH_DATA", "XRBENCH_DB")}
    os.environ["XRBENCH_CACHE"] = str(root / "cache")
    os.environ["XRBENCH_DATA"] = str(root / "data")
    os.environ["XRBENCH_DB"] = str(root / "results.duckdb")
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def write_board(folder: Path, manifest: Path, split_sha256: str, content_sha256: str, name: str = "tiny-ad") -> Path:
    params = "\n".join(f"{k} = {v}" for k, v in TINY_DATASET.items())
    board = folder / f"{name}.toml"
    board.write_text(f"""
name = "{name}"
version = 1
description = "reduced synthetic board for tests"
task = "anomaly"
resolution = 64
split_manifest = "{manifest.name}"
split_sha256 = "{split_sha256}"
bootstrap = 50
seed = 0
batch_size = 16
slices = ["view", "sex", "age_bin", "site"]
min_slice_class = 3
reference_method = "intensity"

[dataset]
name = "synth-cxr"
{params}
content_sha256 = "{content_sha256}"

[corruptions]
gaussian_noise = [10, 50]
gaussian_blur = [3, 9]
jpeg = [70, 30]
brightness_contrast = [0.15, 0.45]
quantum_noise = [0.5, 0.125]
resolution_loss = [0.75, 0.25]
gamma_window = [0.2, 0.6]
""")
    return board


@pytest.fixture(scope="session")
def tiny_board(tmp_path_factory: pytest.TempPathFactory, isolated_cache: Path) -> Path:
    folder = tmp_path_factory.mktemp("tiny-board")
    source = synthetic.prepare(DatasetSpec("synth-cxr", dict(TINY_DATASET)))
    frame = anomaly_split(source.entries, n_train=40, n_val=(10, 10), n_test=(16, 16), seed=0)
    manifest = folder / "tiny-ad.csv"
    sha = write_manifest(frame, manifest)
    return write_board(folder, manifest, sha, source.content_sha256 or "")


TINY_DENTAL = {"seed": 1, "n_patients": 60, "image_height": 48}


def frozen_board(folder: Path, name: str, frame, spec: DatasetSpec, content_sha256: str, settings: str) -> Path:
    """Write `frame` as the manifest of board `name` and the board file: name, manifest and its
    hash, `settings`, then the [dataset] table of `spec` with its content hash."""
    manifest = folder / f"{name}.csv"
    sha = write_manifest(frame, manifest)
    params = "\n".join(f"{k} = {v!r}" for k, v in spec.params.items())
    board = folder / f"{name}.toml"
    board.write_text(
        f'name = "{name}"\nversion = 1\nsplit_manifest = "{manifest.name}"\nsplit_sha256 = "{sha}"\n'
        f'{settings}\n[dataset]\nname = "{spec.name}"\n{params}\ncontent_sha256 = "{content_sha256}"\n'
    )
    return board


@pytest.fixture(scope="session")
def tiny_dental_board(tmp_path_factory: pytest.TempPathFactory, isolated_cache: Path) -> Path:
    """A reduced synth-dental board: DICOM phantoms read through the dental adapter."""
    from harness.adapters import synthetic_dental

    spec = DatasetSpec("synth-dental", dict(TINY_DENTAL))
    source = synthetic_dental.prepare(spec, workers=1)
    frame = anomaly_split(source.entries, n_train=24, n_val=(6, 6), n_test=(10, 10), seed=0)
    settings = """
description = "reduced synthetic dental board for tests"
task = "anomaly"
resolution = 32
bootstrap = 20
seed = 0
batch_size = 16
slices = ["sex"]
min_slice_class = 3
reference_method = "intensity"
"""
    folder = tmp_path_factory.mktemp("tiny-dental")
    return frozen_board(folder, "tiny-dental", frame, spec, source.content_sha256, settings)


TINY_TARGETS = ["Cardiomegaly", "Effusion", "Nodule"]


@pytest.fixture(scope="session")
def tiny_multilabel_board(tmp_path_factory: pytest.TempPathFactory, isolated_cache: Path) -> Path:
    """A reduced multi-label board on the tiny synthetic dataset (all images, patient split)."""
    from harness.splits import patient_split

    spec = DatasetSpec("synth-cxr", dict(TINY_DATASET))
    source = synthetic.prepare(spec)
    frame = patient_split(source.entries, {"train": 0.4, "val": 0.25, "test": 0.35}, seed=0)
    settings = f"""
description = "reduced synthetic multi-label board for tests"
task = "multilabel"
targets = {TINY_TARGETS}
resolution = 32
bootstrap = 30
seed = 0
batch_size = 16
slices = ["sex"]
min_slice_class = 2
reference_method = "random"

[corruptions]
gaussian_noise = [25]
jpeg = [50]
"""
    return frozen_board(tmp_path_factory.mktemp("tiny-cls"), "tiny-cls", frame, spec, source.content_sha256, settings)
