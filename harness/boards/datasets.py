"""Every dataset a board can name: how its metadata is read, or how it is generated, and the
layout of its boxes file.

The catalogue holds references ("module:function"), not the adapters themselves: a board file
is checked against it (its dataset, its `box_format`) without importing any reader, and the
command line offers `xrbench data prepare NAME` for every dataset with a reader. Adding a
dataset is an adapter in `harness/data/adapters/` and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.registry import Ref, Registry


@dataclass(frozen=True)
class DatasetEntry:
    """`reader(root, **options)` reads a user's copy in its published layout into entries
    (`harness.data.adapters.base`); `generator(spec)` makes a generated dataset ready as a
    `DatasetSource`; `boxes(path)` reads a boxes file of this dataset's layout (a board's
    `box_format` names the dataset whose layout its boxes file has); `masks(path, image_ids)`
    decodes the masks of those images from a file in this dataset's own encoding (a board's
    `mask_format`), as {(image id, finding): bool array}."""

    title: str
    card: str  # the dataset card: datasets/<folder>/README.md
    reader: Ref | None = None
    generator: Ref | None = None
    boxes: Ref | None = None
    masks: Ref | None = None

    @property
    def preparable(self) -> bool:
        """A user's copy can be checked and prepared (`xrbench data check|prepare`)."""
        return self.reader is not None


def _adapter(module: str, function: str) -> Ref:
    return Ref(f"harness.data.adapters.{module}:{function}")


DATASETS: Registry[DatasetEntry] = Registry("dataset")
for _name, _entry in {
    "synth-cxr": DatasetEntry(
        "Synthetic chest X-ray phantoms", "synth-cxr", generator=_adapter("synthetic", "prepare")
    ),
    "synth-dental": DatasetEntry(
        "Synthetic dental panoramic phantoms (DICOM)", "synth-dental", generator=_adapter("synthetic_dental", "prepare")
    ),
    "nih": DatasetEntry(
        "NIH ChestX-ray14", "nih", reader=_adapter("nih", "read_nih"), boxes=_adapter("nih", "read_bbox_list")
    ),
    "chexpert": DatasetEntry("CheXpert", "chexpert", reader=_adapter("chexpert", "read_chexpert")),
    "mimic": DatasetEntry("MIMIC-CXR-JPG", "mimic-cxr-jpg", reader=_adapter("mimic", "read_mimic")),
    "rsna": DatasetEntry(
        "RSNA Pneumonia Detection", "rsna", reader=_adapter("rsna", "read_rsna"), boxes=_adapter("rsna", "read_boxes")
    ),
    "vindr": DatasetEntry("VinDr-CXR", "vindr", reader=_adapter("vindr", "read_vindr")),
    "padchest": DatasetEntry("PadChest", "padchest", reader=_adapter("padchest", "read_padchest")),
    "siim": DatasetEntry(
        "SIIM-ACR Pneumothorax Segmentation",
        "siim",
        reader=_adapter("siim", "read_siim"),
        masks=_adapter("siim", "read_masks"),
    ),
    "dental": DatasetEntry("Dental panoramic DICOM folders", "dental", reader=_adapter("dental", "read_dental_folder")),
    "dentex": DatasetEntry(
        "DENTEX dental panoramics (quadrant crops)",
        "dentex",
        reader=_adapter("dentex", "read_dentex"),
        boxes=_adapter("dentex", "read_boxes"),
    ),
}.items():
    DATASETS.add(_name, _entry)


def preparable_datasets() -> list[str]:
    """Datasets a user downloads and prepares (those with a metadata reader)."""
    return [name for name, entry in DATASETS.items() if entry.preparable]


def box_formats() -> list[str]:
    """The boxes file layouts a board's `[ground_truth] box_format` may name."""
    return [name for name, entry in DATASETS.items() if entry.boxes is not None]


def mask_formats() -> list[str]:
    """The mask encodings a board's `[ground_truth] mask_format` may name."""
    return [name for name, entry in DATASETS.items() if entry.masks is not None]
