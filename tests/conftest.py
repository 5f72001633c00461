"""Shared fixtures: reduced synthetic boards built in temporary folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# One console width for every test, whatever the terminal pytest runs in (rich reads it when a
# console is made, so before anything of the harness is imported).
os.environ["COLUMNS"] = "200"

from harness.boards.spec import DatasetSpec
from harness.boards.splits import anomaly_split, write_manifest
from harness.conformance.tiny import TINY_DATASET, TINY_TARGETS, write_tiny_board
from harness.results.leaderboard import assemble_all
from harness.results.store import ResultStore
from harness.site.builder import build_site

TINY_CORRUPTIONS = {
    "gaussian_noise": [10, 50],
    "gaussian_blur": [3, 9],
    "jpeg": [70, 30],
    "brightness_contrast": [0.15, 0.45],
    "quantum_noise": [0.5, 0.125],
    "resolution_loss": [0.75, 0.25],
    "gamma_window": [0.2, 0.6],
}


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


@pytest.fixture(scope="session")
def tiny_board(tmp_path_factory: pytest.TempPathFactory, isolated_cache: Path) -> Path:
    """A reduced anomaly board (see harness.conformance.tiny.write_tiny_board) with a stress suite."""
    return write_tiny_board(tmp_path_factory.mktemp("tiny-board"), "anomaly", corruptions=TINY_CORRUPTIONS)


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
    from harness.data.adapters import synthetic_dental

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
    truth = json.loads((source.root / "ground_truth.json").read_text())
    height = TINY_DENTAL["image_height"]
    settings += "\n[ground_truth]\n" + "".join(f'{k} = "{v}"\n' for k, v in truth.items())
    settings += f"box_space = [{2 * height}, {height}]\n"
    folder = tmp_path_factory.mktemp("tiny-dental")
    return frozen_board(folder, "tiny-dental", frame, spec, source.content_sha256, settings)


@pytest.fixture(scope="session")
def tiny_multilabel_board(tmp_path_factory: pytest.TempPathFactory, isolated_cache: Path) -> Path:
    """A reduced multi-label board on the tiny synthetic dataset (all images, patient split)."""
    corruptions = {"gaussian_noise": [25], "jpeg": [50]}
    return write_tiny_board(tmp_path_factory.mktemp("tiny-cls"), "multilabel", corruptions=corruptions)


def check_clean_auroc(db: Path, run_id: str) -> float:
    """The run's stored clean-test AUROC, checked against scikit-learn on its stored predictions
    (on multi-label boards the mean over the findings it evaluated); returns it."""
    import json

    import numpy as np
    from sklearn.metrics import roc_auc_score

    with ResultStore(db) as store:
        rows = store.query(
            "SELECT label, score, scores, target_labels FROM predictions WHERE run_id = ? AND split = 'test' "
            "AND condition = 'clean'",
            [run_id],
        )
        metrics = store.query(
            "SELECT slice, value FROM metrics WHERE run_id = ? AND condition = 'clean' AND metric = 'auroc'", [run_id]
        ).set_index("slice")["value"]
        targets = json.loads(store.run(run_id)["targets"] or "[]")
    if not targets:
        expected = roc_auc_score(rows["label"], rows["score"])
    else:
        truth, logits = np.stack(rows["target_labels"].to_numpy()), np.stack(rows["scores"].to_numpy())
        evaluated = [k for k, name in enumerate(targets) if np.isfinite(metrics[f"finding={name}"])]
        assert evaluated, "no finding was evaluated"
        expected = np.mean([roc_auc_score(truth[:, k], logits[:, k]) for k in evaluated])
    assert metrics["all"] == pytest.approx(expected, abs=1e-12)
    return float(metrics["all"])


def publish(db: Path, out: Path) -> Path:
    """What `xrbench site` does: assemble the leaderboards, then build the site."""
    with ResultStore(db) as store:
        assemble_all(store)
    return build_site(db, out)


__all__ = ["TINY_DATASET", "TINY_TARGETS", "check_clean_auroc", "publish"]


TINY_CLIP = "xrbench-tiny-clip"
"""A tiny open_clip architecture registered by the `tiny_clip` fixture (no real CLIP weights are
reachable in tests)."""


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The TINY_CLIP architecture registered with open_clip, and a checkpoint file of its random weights."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("clip")
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 1},
    }
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / f"{TINY_CLIP}.json")
    torch.manual_seed(0)
    checkpoint = folder / "tiny_clip.pt"
    torch.save(open_clip.create_model(TINY_CLIP).state_dict(), checkpoint)
    return str(checkpoint)
