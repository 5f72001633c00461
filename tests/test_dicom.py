"""DICOM decoding on real radiographs shipped by pydicom-data, and the dental adapter."""

import os
import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from harness.core.errors import DataIntegrityError, XRBenchError
from harness.data.adapters.dental import read_dental
from harness.data.cache import read_pixels
from harness.data.dicom import is_dicom, read_dicom
from harness.data.synth.dental_cohort import DentalRecord, write_dicom


def _real(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI: pydicom-data is a dev dependency (make setup installs it)")
        pytest.skip(f"{name} is not available (pip install pydicom-data)")
    return path


def test_monochrome1_cr_is_windowed_and_inverted_as_the_standard_says():
    path = _real("RG1_UNCI.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    x = ds.pixel_array.astype(np.float64)
    c, w = float(ds.WindowCenter), float(ds.WindowWidth)
    # DICOM PS3.3 C.11.2.1.2.1 linear window, scaled to [0, 1], then inverted for MONOCHROME1.
    expected = 1.0 - np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(read_dicom(path), expected, atol=1e-4)


def test_jpeg2000_variants_decode_like_their_uncompressed_references():
    # pydicom-data pairs each JPEG 2000 file with its uncompressed pixels: _J2KR with _UNCR
    # (lossless), _J2KI with _UNCI (the lossy result).
    original = read_dicom(_real("RG1_UNCR.dcm"))
    np.testing.assert_array_equal(read_dicom(_real("RG1_J2KR.dcm")), original)
    lossy = read_dicom(_real("RG1_J2KI.dcm"))
    np.testing.assert_array_equal(lossy, read_dicom(_real("RG1_UNCI.dcm")))
    assert 0 < np.abs(lossy - original).mean() < 0.01


def test_jpeg_lossless_and_rle_decode():
    jpeg = read_dicom(_real("JPEG-LL.dcm"))
    assert jpeg.shape == (1024, 256) and jpeg.std() > 0.01


def test_multiframe_and_colour_files_are_refused_by_name():
    with pytest.raises(DataIntegrityError, match=r"OBXXXX1A_2frame\.dcm: 2 frames"):
        read_dicom(_real("OBXXXX1A_2frame.dcm"))
    with pytest.raises(DataIntegrityError, match=r"SC_rgb\.dcm: photometric interpretation RGB"):
        read_dicom(_real("SC_rgb.dcm"))


def test_truncated_file_is_an_error_naming_it(tmp_path):
    damaged = tmp_path / "damaged"
    damaged.write_bytes(open(_real("RG1_UNCI.dcm"), "rb").read()[:50_000])
    assert is_dicom(damaged)
    with pytest.raises(DataIntegrityError, match="damaged"):
        read_dicom(damaged)


def _record(**kw) -> DentalRecord:
    base = dict(
        path="x.dcm", patient_id=7, visit=0, age=45, sex="F", findings=(), monochrome1=False, windowed=False, rle=False
    )
    return DentalRecord(**{**base, **kw})


@pytest.mark.parametrize("monochrome1", [False, True])
@pytest.mark.parametrize("rle", [False, True])
def test_written_phantoms_decode_the_same_whatever_the_encoding(tmp_path, monochrome1, rle):
    values = np.random.default_rng(0).integers(0, 4096, size=(24, 48)).astype(np.uint16)
    values[0, 0], values[0, 1] = 0, 4095  # full range, so min-max and the 12-bit window agree
    path = tmp_path / "image"
    write_dicom(path, values, _record(monochrome1=monochrome1, rle=rle), seed=0)
    assert is_dicom(path)
    np.testing.assert_allclose(read_dicom(path), values / 4095, atol=1e-6)
    assert read_pixels(path).dtype == np.uint8


def _tree(tmp_path, layout: dict[str, int]):
    for i, (rel, patient) in enumerate(layout.items()):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_dicom(path, np.full((8, 16), 100 * i, np.uint16), _record(path=rel, patient_id=patient), seed=0)


def test_dental_labels_from_folders_and_patient_ids_from_headers(tmp_path):
    _tree(tmp_path, {"normal/a.dcm": 1, "normal/sub/b": 2, "abnormal/c.DCM": 3})
    (tmp_path / "notes.txt").write_text("not DICOM")
    entries = read_dental(tmp_path)
    assert entries.set_index("image_id")["label"].to_dict() == {
        "abnormal/c.DCM": 1,
        "normal/a.dcm": 0,
        "normal/sub/b": 0,
    }
    assert set(entries["patient_id"]) == {"D00001", "D00002", "D00003"} and set(entries["age"]) == {45}


def test_dental_labels_csv_by_uid_with_patient_override(tmp_path):
    _tree(tmp_path, {"x/1.dcm": 1, "x/2.dcm": 2})
    uids = {f: str(pydicom.dcmread(tmp_path / f).SOPInstanceUID) for f in ("x/1.dcm", "x/2.dcm")}
    pd.DataFrame(
        {
            "sop_instance_uid": list(uids.values()),
            "label": ["0", "abnormal"],
            "patient_id": ["p", "p"],
            "finding": ["", "Caries"],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    entries = read_dental(tmp_path, tmp_path / "labels.csv").set_index("image_id")
    assert entries.loc["x/2.dcm", "findings"] == "Caries" and entries.loc["x/1.dcm", "findings"] == "No Finding"
    assert set(entries["patient_id"]) == {"p"}


def test_dental_unlabelled_files_and_bad_labels_are_errors(tmp_path):
    _tree(tmp_path, {"a.dcm": 1, "b.dcm": 2})
    pd.DataFrame({"path": ["a.dcm"], "label": ["normal"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataIntegrityError, match=r"1 DICOM files .* no label \(first: b\.dcm\)"):
        read_dental(tmp_path, tmp_path / "labels.csv")
    pd.DataFrame({"path": ["a.dcm", "b.dcm"], "label": ["normal", "maybe"]}).to_csv(tmp_path / "l2.csv", index=False)
    with pytest.raises(XRBenchError, match="maybe"):
        read_dental(tmp_path, tmp_path / "l2.csv")
    shutil.rmtree(tmp_path)


def test_a_large_jpeg_is_decoded_at_a_reduced_dct_scale_close_to_the_full_decode(tmp_path):
    """Pillow's draft mode: a 2048 x 1664 JPEG for a 128 px board is decoded at 1/8 scale
    (256 x 208, both sides still >= 128) and, once resized, is close to the full decode."""
    from PIL import Image

    from harness.data.cache import _decode

    y, x = np.mgrid[0:1664, 0:2048]
    pixels = 127 + 60 * np.sin(x / 150) * np.cos(y / 110) + 40 * (((x - 900) ** 2 + (y - 800) ** 2) < 300**2)
    path = tmp_path / "large.jpg"
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    assert read_pixels(path).shape == (1664, 2048)
    assert read_pixels(path, at_least=128).shape == (208, 256)
    fast = _decode(path, 128, None, "large").astype(float)
    full = np.asarray(Image.fromarray(read_pixels(path)).resize((128, 128), Image.Resampling.BILINEAR)).astype(float)
    assert fast.shape == (128, 128) and np.abs(fast - full).mean() < 2.0
    png = tmp_path / "large.png"
    Image.open(path).save(png)
    assert read_pixels(png, at_least=128).shape == (1664, 2048)  # only JPEGs have a draft mode


def test_a_board_that_names_lanczos_resizes_the_full_image_with_it(tmp_path):
    """UPD resized with Lanczos from the full image: no draft-mode shortcut, Pillow's Lanczos."""
    from PIL import Image

    from harness.data.adapters.base import DatasetSource
    from harness.data.cache import _cache_folder, _decode

    y, x = np.mgrid[0:390, 0:320]
    pixels = (127 + 100 * np.sin(x / 7.0) * np.cos(y / 5.0)).clip(0, 255).astype(np.uint8)
    path = tmp_path / "small.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    lanczos = _decode(path, 128, None, "small", resample="lanczos")
    expected = np.asarray(Image.fromarray(read_pixels(path)).resize((128, 128), Image.Resampling.LANCZOS))
    assert np.array_equal(lanczos, expected)
    assert not np.array_equal(lanczos, _decode(path, 128, None, "small"))
    source = DatasetSource("chexpert", tmp_path, pd.DataFrame({"image_id": []}), tmp_path)
    assert _cache_folder(source, "a" * 64, 128, "lanczos") != _cache_folder(source, "a" * 64, 128)
