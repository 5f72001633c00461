"""Dataset adapters: turn a dataset's own layout into a `DatasetSource`."""

from __future__ import annotations

from harness.adapters.base import DatasetSource
from harness.boards import DatasetSpec
from harness.errors import XRBenchError


def prepare_dataset(spec: DatasetSpec) -> DatasetSource:
    if spec.name == "synth-cxr":
        from harness.adapters import synthetic

        return synthetic.prepare(spec)
    if spec.name == "synth-dental":
        from harness.adapters import synthetic_dental

        return synthetic_dental.prepare(spec)
    from harness.adapters.local import DATASETS, prepare_local

    if spec.name in DATASETS:
        return prepare_local(spec.name, dict(spec.params))
    raise XRBenchError(
        f"no adapter for dataset {spec.name!r}; available: synth-cxr, synth-dental, {', '.join(DATASETS)}"
    )


__all__ = ["DatasetSource", "prepare_dataset"]
