"""The synthetic dental DICOM dataset and its board, end to end."""

import numpy as np
import pydicom
from conftest import check_clean_auroc

from harness.boards.spec import DatasetSpec
from harness.data.adapters import synthetic_dental
from harness.data.synth.dental_cohort import draw_cohort, write_dataset
from harness.run.runner import bench


def test_generation_is_deterministic_and_mixes_encodings(tmp_path):
    a = write_dataset(tmp_path / "a", seed=5, n_patients=12, height=32, workers=1)
    b = write_dataset(tmp_path / "b", seed=5, n_patients=12, height=32, workers=2)
    assert a == b
    assert a != write_dataset(tmp_path / "c", seed=6, n_patients=12, height=32, workers=1)
    records = draw_cohort(5, 12)
    headers = [pydicom.dcmread(tmp_path / "a" / r.path) for r in records]
    assert {h.PhotometricInterpretation for h in headers} == {"MONOCHROME1", "MONOCHROME2"}
    assert {h.file_meta.TransferSyntaxUID.name for h in headers} == {"Explicit VR Little Endian", "RLE Lossless"}
    assert {h.Modality for h in headers} == {"PX"} and {h.BitsStored for h in headers} == {12}
    assert any(not r.path.endswith(".dcm") for r in records)


def test_findings_change_the_image_locally():
    from harness.data.synth.dental import draw_acquisition, draw_finding, draw_patient, render_panoramic

    patient = draw_patient(np.random.default_rng(0))
    acquisition = draw_acquisition(np.random.default_rng(1))
    normal = render_panoramic(patient, acquisition, [], 96).astype(float)
    for name in ("Periapical lesion", "Caries", "Cyst"):
        finding = draw_finding(np.random.default_rng(2), name, len(patient["teeth"]))
        diff = np.abs(render_panoramic(patient, acquisition, [finding], 96) - normal)
        changed = diff > 200
        assert changed.any() and changed.mean() < 0.05, name


def test_dental_board_runs_end_to_end(tiny_dental_board, tmp_path):
    for method in ("intensity", "patchcore"):
        result = bench(method, tiny_dental_board, db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
        check_clean_auroc(tmp_path / "r.duckdb", result.run_id)


def test_the_board_refuses_a_dataset_with_other_pixels(tiny_dental_board):
    import pytest

    from harness.core.errors import DataIntegrityError

    with pytest.raises(DataIntegrityError, match="content SHA-256"):
        synthetic_dental.prepare(
            DatasetSpec("synth-dental", {"seed": 1, "n_patients": 60, "image_height": 48}, content_sha256="0" * 64)
        )


def test_parallel_decoding_equals_serial_and_reports_every_failure(tiny_dental_board, tmp_path):
    import shutil

    import pytest

    from harness.boards.files import load_board
    from harness.core.errors import DataIntegrityError
    from harness.data.cache import decode_images

    board = load_board(tiny_dental_board)
    source = synthetic_dental.prepare(board.dataset)
    ids = source.entries["image_id"].tolist()
    serial = decode_images(source, ids, 32, workers=1)
    assert np.array_equal(decode_images(source, ids, 32, workers=2), serial)
    copy = tmp_path / "copy"
    shutil.copytree(source.root, copy)
    (copy / ids[0]).unlink()
    (copy / ids[-1]).write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    damaged = type(source)(**{**source.__dict__, "root": copy, "image_dir": copy})
    with pytest.raises(DataIntegrityError) as info:
        decode_images(damaged, ids, 32, workers=2)
    assert f"{ids[0]}: missing" in str(info.value) and ids[-1] in str(info.value) and "2 of" in str(info.value)
