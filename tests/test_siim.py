"""SIIM-ACR pneumothorax: the run-length masks decoded against a decoder written here from the
competition's description, the adapter on the DICOM layout, the masks as a board's ground
truth, malformed rows named by file and line, and the real labels file shipped in
torchxrayvision's wheel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from harness.core.errors import DataIntegrityError, XRBenchError
from harness.data.adapters.siim import decode_rle, read_masks, read_siim
from harness.data.groundtruth import load_ground_truth


def loop_decode(text: str, height: int = 1024, width: int = 1024) -> np.ndarray:
    """The competition's description, one run at a time: walk the pixels column by column; each
    pair moves on by its offset, then marks its length of pixels."""
    flat = np.zeros(height * width, dtype=bool)
    numbers = [int(v) for v in text.split()]
    position = 0
    for offset, length in zip(numbers[0::2], numbers[1::2], strict=True):
        position += offset
        flat[position : position + length] = True
        position += length
    return flat.reshape(width, height).T


def encode(mask: np.ndarray) -> str:
    """Relative run lengths of a mask read column by column (the inverse of the description)."""
    flat = np.concatenate([[0], mask.T.reshape(-1).astype(np.int8), [0]])
    changes = np.flatnonzero(np.diff(flat))
    starts, ends = changes[0::2], changes[1::2]
    previous = np.concatenate([[0], ends[:-1]])
    return " ".join(f"{s - p} {e - s}" for s, e, p in zip(starts, ends, previous, strict=True))


def test_run_lengths_decode_as_the_description_says_column_by_column():
    rng = np.random.default_rng(0)
    mask = np.zeros((1024, 1024), dtype=bool)
    mask[100:180, 300:330] = True  # a tall region: runs down the columns
    mask[500, 0:1024] = True  # one row across: a run of 1 in every column
    mask[rng.integers(0, 1024, 50), rng.integers(0, 1024, 50)] = True
    text = encode(mask)
    assert np.array_equal(decode_rle(text), mask)
    assert np.array_equal(loop_decode(text), mask)
    assert np.array_equal(decode_rle("0 3 1021 1"), loop_decode("0 3 1021 1"))
    assert decode_rle("0 3 1021 1")[:3, 0].all() and decode_rle("0 3 1021 1")[0, 1]  # 1024 - 3 on: next column


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("12 x", r"'12 x' is not whole numbers"),
        ("12 3 4", r"pairs of \(offset >= 0, length > 0\)"),
        ("12 0", r"pairs of \(offset >= 0, length > 0\)"),
        ("-1 5", r"pairs of \(offset >= 0, length > 0\)"),
        ("1048570 10", r"the runs end at pixel 1048580, past the 1024 x 1024 image"),
    ],
)
def test_a_malformed_row_is_named_by_file_and_line(tmp_path, rle, message):
    path = tmp_path / "train-rle.csv"
    path.write_text(f"ImageId, EncodedPixels\na,-1\nb, 10 2\nc, {rle}\n")
    with pytest.raises(DataIntegrityError, match=rf"train-rle.csv, line 4: .*{message}"):
        read_masks(path)
    assert set(read_masks(path, {"a", "b"})) == {("b", "Pneumothorax")}  # other images' rows are not decoded


def _dicom(path: Path, uid: str, sex: str, age: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPInstanceUID, ds.PatientID, ds.PatientSex, ds.PatientAge, ds.ViewPosition = uid, "anon", sex, age, "PA"
    ds.Modality, ds.Rows, ds.Columns = "CR", 32, 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((32, 32), 100, np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_the_adapter_finds_images_by_name_in_the_dicom_layout_and_reads_their_headers(tmp_path):
    ids = [generate_uid() for _ in range(3)]
    region = np.zeros((1024, 1024), dtype=bool)
    region[200:260, 600:640] = True
    second = np.zeros((1024, 1024), dtype=bool)
    second[700:720, 100:110] = True
    rows = [f"{ids[0]},-1", f"{ids[1]}, {encode(region)}", f"{ids[1]}, {encode(second)}", f"{ids[2]},-1"]
    (tmp_path / "train-rle.csv").write_text("ImageId, EncodedPixels\n" + "\n".join(rows) + "\n")
    _dicom(tmp_path / "dicom-images-train" / "study1" / "series1" / f"{ids[1]}.dcm", ids[1], "F", "045Y")
    entries = read_siim(tmp_path).set_index("image_id")
    assert entries["label"].tolist() == [0, 1, 0] and entries.loc[ids[1], "findings"] == "Pneumothorax"
    assert entries.loc[ids[1], "path"] == f"dicom-images-train/study1/series1/{ids[1]}.dcm"
    assert (entries.loc[ids[1], "sex"], entries.loc[ids[1], "age"], entries.loc[ids[1], "view"]) == ("F", 45, "PA")
    assert entries.loc[ids[0], "path"] == f"dicom-images-train/{ids[0]}.dcm" and entries.loc[ids[0], "age"] == -1
    assert (entries.index == entries["patient_id"]).all()

    # As a board's ground truth at 256 px: the union of both regions, and a box around each.
    spec = {"masks": "train-rle.csv", "mask_format": "siim"}
    images = pd.DataFrame({"image_id": ids[:2], "findings": ["No Finding", "Pneumothorax"]})
    truth = load_ground_truth(spec, tmp_path, images, set(ids), 256, "board siim-test")
    mask = truth.masks[(ids[1], "Pneumothorax")]
    blocks = (region | second).reshape(256, 4, 256, 4).mean(axis=(1, 3)) >= 0.5  # pixels at least half covered
    assert np.array_equal(mask, blocks)
    assert truth.boxes[["x", "y", "w", "h"]].values.tolist() == [[150.0, 50.0, 10.0, 15.0], [25.0, 175.0, 2.5, 5.0]]
    with pytest.raises(DataIntegrityError, match=r"masks file .* has SHA-256 [0-9a-f]{64}, but the board was frozen"):
        load_ground_truth(spec | {"masks_sha256": "0" * 64}, tmp_path, images, set(ids), 256, "board siim-test")


def test_a_board_file_names_a_known_mask_format_with_its_masks(tmp_path):
    from harness.boards.files import check_board_table

    with pytest.raises(XRBenchError, match=r"mask_format 'png' needs a masks file and is one of siim"):
        check_board_table({"ground_truth": {"masks": "m.csv", "mask_format": "png"}}, tmp_path / "b.toml")
    with pytest.raises(XRBenchError, match=r"needs a boxes file \(or masks with their mask_format\)"):
        check_board_table({"ground_truth": {"masks": "m.npz"}}, tmp_path / "b.toml")


def test_the_shipped_labels_file_decodes_like_the_description(tmp_path):
    """Every pneumothorax row of the real file (2,669 images, 3,576 rows of regions) decodes
    within the image; a sample matches the loop decoder pixel for pixel."""
    pytest.importorskip("torchxrayvision")
    from harness.data.adapters.packaged import metadata_root

    root = metadata_root("siim", tmp_path)
    table = pd.read_csv(root / "train-rle.csv", dtype=str, skipinitialspace=True)
    table.columns = [c.strip() for c in table.columns]
    regions = table[table["EncodedPixels"].str.strip() != "-1"]
    assert (len(table), table["ImageId"].nunique(), regions["ImageId"].nunique()) == (12954, 12047, 2669)
    for text in regions["EncodedPixels"].iloc[::97]:
        assert np.array_equal(decode_rle(text), loop_decode(text))
