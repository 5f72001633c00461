"""The public label and metadata files that the `torchxrayvision` wheel ships (no images),
unpacked under the names each release gives them, so that the real boards can be frozen and
checked without a copy of the images:

    python -m harness.data.adapters.packaged chexpert /tmp/meta
    XRBENCH_CHEXPERT_ROOT=/tmp/meta/chexpert xrbench split freeze chexpert-ad --force

torchxrayvision is a development dependency (`pip install -e .[dev]`); the files stay in its
wheel and are never copied into this repository (several licences forbid redistribution).
"""

from __future__ import annotations

import gzip
import sys
import zipfile
from pathlib import Path

from harness.core.errors import XRBenchError

# dataset -> (file in the wheel's data folder, name in the release)
FILES = {
    "nih": [
        ("Data_Entry_2017_v2020.csv.gz", "Data_Entry_2017_v2020.csv"),
        ("BBox_List_2017.csv.gz", "BBox_List_2017.csv"),
        ("google2019_nih-chest-xray-labels.csv.gz", "google2019_nih-chest-xray-labels.csv"),
    ],
    "chexpert": [("chexpert_train.csv.gz", "train.csv")],
    "rsna": [
        ("kaggle_stage_2_train_labels.csv.zip", "stage_2_train_labels.csv"),
        ("kaggle_stage_2_train_images_dicom_headers.csv.gz", "stage_2_train_images_dicom_headers.csv"),
    ],
    "vindr": [("vinbigdata-train.csv.gz", "train.csv")],
    "siim": [("siim-pneumothorax-train-rle.csv.gz", "train-rle.csv")],
    "padchest": [
        (
            "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz",
            "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv",
        )
    ],
}


def wheel_data() -> Path:
    try:
        import torchxrayvision
    except ImportError:
        raise XRBenchError("the packaged metadata comes with torchxrayvision: pip install -e .[dev]") from None
    return Path(torchxrayvision.__file__).parent / "data"


def unpack(packed: Path) -> bytes:
    if packed.suffix == ".gz":
        return gzip.decompress(packed.read_bytes())
    with zipfile.ZipFile(packed) as archive:
        (member,) = archive.namelist()
        return archive.read(member)


def metadata_root(dataset: str, folder: Path) -> Path:
    """`folder/<dataset>` holding the dataset's packaged files under their release names."""
    if dataset not in FILES:
        raise XRBenchError(f"no packaged metadata for {dataset!r} (packaged: {', '.join(FILES)})")
    root = folder / dataset
    root.mkdir(parents=True, exist_ok=True)
    for packed, name in FILES[dataset]:
        source = wheel_data() / packed
        if not source.exists():
            raise XRBenchError(f"{source} is missing: torchxrayvision 1.5.x ships it")
        if not (root / name).exists():
            (root / name).write_bytes(unpack(source))
    return root


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m harness.data.adapters.packaged DATASET FOLDER")
    print(metadata_root(sys.argv[1], Path(sys.argv[2])))
