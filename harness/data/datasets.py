"""The datasets of `harness.boards.datasets`, made ready: a generated one generated (once) and
verified, a user's copy read from its published metadata where `xrbench data prepare` found it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pandas as pd

from harness.boards.datasets import DATASETS, preparable_datasets
from harness.boards.spec import DatasetSpec
from harness.core.errors import XRBenchError
from harness.data.adapters.base import DatasetSource
from harness.data.local import entry_crops, prepared_state


def read_entries(name: str, root: Path, **options: object) -> pd.DataFrame:
    """A user's copy of dataset `name` as entries (`harness.data.adapters.base`); `path` is
    relative to `root`. Options are the reader's keyword arguments (a board's `[dataset]` keys)."""
    entry = DATASETS.get(name)
    if entry.reader is None:
        raise XRBenchError(
            f"dataset {name} is generated, not read from a copy; "
            f"datasets read from a copy: {', '.join(preparable_datasets())}"
        )
    if not root.is_dir():
        raise XRBenchError(f"{root} is not a folder")
    reader = entry.reader.load()
    accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise XRBenchError(f"dataset {name} has no option {unknown[0]!r} (its options: {', '.join(accepted)})")
    return reader(root, **options)


def prepare_dataset(spec: DatasetSpec) -> DatasetSource:
    """The board's dataset as a `DatasetSource`: generated and verified, or the prepared copy."""
    entry = DATASETS.get(spec.name)
    if entry.generator is not None:
        return entry.generator.load()(spec)
    return prepare_local(spec.name, dict(spec.params))


def prepare_local(name: str, options: dict) -> DatasetSource:
    """A prepared local dataset as a `DatasetSource` (its pixels are not hashed: real datasets
    come in several encodings; the frozen manifest and the labels are what is checked)."""
    state = prepared_state(name)
    root = Path(state["root"])
    entries = read_entries(name, root, **options)
    return DatasetSource(
        name=name,
        root=root,
        entries=entries,
        image_dir=root,
        paths=dict(zip(entries["image_id"], entries["path"], strict=True)),
        excluded=tuple(state.get("excluded", ())),
        crops=entry_crops(entries),
    )
