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
    raise XRBenchError(f"no adapter for dataset {spec.name!r}; available: synth-cxr, synth-dental")


__all__ = ["DatasetSource", "prepare_dataset"]
