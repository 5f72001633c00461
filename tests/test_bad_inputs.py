"""The catalogue of bad inputs xrbench handles: each gets a clear one-line error naming the
culprit (file and line, board and key, parameter and allowed values, run id), or a stale or
damaged cache is detected and rebuilt with a notice; no partial result is ever stored.

| case | what happens | tested in |
| --- | --- | --- |
| source image changed after it was cached | notice naming the file; decoded again | here |
| source image missing, its cache valid | refused before fitting, naming the file | here |
| cached images, corrupted set or their JSON damaged | notice naming the file; rebuilt | here |
| in-harness checkpoint altered, record lost | notice naming the file; trained again | here |
| a stored prediction altered | refused by compare, score, site, leaderboard | here, test_pipeline, test_leaderboard |
| parameter out of range, not a choice, wrong type, unknown | refused before the run; allowed values named | here |
| k larger than the normal training images | the run fails naming k and the count | here |
| backbone unknown to timm / open_clip | refused before the run; closest names | here |
| board file: TOML, unknown or missing key, type, range | refused naming the file and key | test_boards |
| board slice not in the manifest | refused before the run, naming it | here |
| board corruption that does not exist | refused before the run, listing the known | here |
| NIH metadata: bad age or follow-up, empty table | file, line and column named ('058Y' is read) | here |
| DICOM truncated in its header | the dental reader names the file | here |
| DICOM truncated in its pixel data | named as damaged; no pydicom warning printed | here |
| PNG truncated, multi-frame or colour DICOM | `data check` decodes and gives the reason | test_adapters |
| method raises | one line: method, stage, batch; traceback under -v and in runs.error | here, test_bench |
| non-tensor, misshapen or non-finite scores or maps | the run fails naming method and image | test_pipeline |
| SIGTERM or SIGHUP during a run | the run is marked failed, as on Ctrl-C | here |
| a run whose process died | `xrbench runs` shows it stale; `--mark-stale` | here |
| Ctrl-C before a run exists | says nothing was stored | here |
| Rich markup in paths or method names | printed as written | here |
| results database path under a file | one line naming the path | here |
| database locked past the wait at the end of a run | kept beside it; `runs --load-pending` | here |
| mCE reference run lacking conditions | the newest reference run that has them | test_leaderboard |
| ground-truth boxes or masks differ from the board's hash | refused while loading, naming the file | here |
| a box of an unknown image or finding, outside the image, or empty | file and line named, nothing stored | here |
| bundle: missing or stray file, unknown key, wrong type, too large | fails at layout, naming it | test_submissions |
| bundle: checksums wrong; board unknown or of another version | `verify` fails at that check | test_submissions |
| bundle: missing, extra or duplicated image id; NaN score | split, condition, first id named | test_submissions |
| bundle: one score altered, every hash redone | reported differs from verified; flagged | test_submissions |
| bundle: code reference hash differs, or a file outside the repository | `verify` fails at code | test_submissions |
| bundle: HTML in a card, a name outside [a-z0-9-] | escaped on the site; the name refused | test_submissions |
| bundle import failing halfway | nothing of the bundle is written | test_submissions |
| bundle: a link, pipe or folder as a file; millions of rows in a small parquet | refused at layout | test_submissions |
| bundle: NaN, 33-bit seed, bad date, extra or text latency key, NULL severity | refused at layout | test_submissions |
| bundle: negative or impossible latency and throughput | refused at layout | test_submissions |
| bundle reusing a run id stored from another bundle | refused unless byte-identical | test_submissions |
| a pull request changing the verifier with its bundle | base code verifies; flagged | test_pr_bundles |
| site --out a folder of other files, or holding the database | refused; nothing deleted | here |
| site interrupted while building | the previous site stays whole | here |
| 33-bit seed; latency batch 0, warm-up -1, no iterations; NaN or inf parameter | one line, nothing stored | here |
| SQLite file, newer schema or another program's DuckDB file as the database | refused in one line | here |
| full disk when a finished run is stored | kept in <db>.pending/ | here |
| any unexpected exception | one line: command, exception, stage; traceback in a log | here |
| terminal escapes and markup in bundle text | printed escaped | here |
| manifest empty, label not 0/1, empty id or patient, split without images | file, line, column named | test_splits |
| board named with ../, NaN corruption level, 33-bit seed or version | refused naming file and key | test_boards |
| corrupted set rendered differently (another CPU) | refused with both hashes | test_corruptions |
"""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from harness.api.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction
from harness.api.registry import create_method, register
from harness.cli.main import main
from harness.core.errors import DataIntegrityError, ParameterError, UnknownMethodError, XRBenchError
from harness.results.store import ResultStore
from harness.run.runner import bench

# --- caches -------------------------------------------------------------------------------------


@pytest.fixture
def own_copy(tiny_board, tmp_path, monkeypatch):
    """The tiny board's dataset copied to a private data folder and cache."""
    import shutil

    from harness.boards.files import load_board
    from harness.data.adapters import synthetic

    source = synthetic.dataset_folder(load_board(tiny_board).dataset.params)
    shutil.copytree(source.parent.parent, tmp_path / "data")
    monkeypatch.setenv("XRBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XRBENCH_CACHE", str(tmp_path / "cache"))
    return synthetic.dataset_folder(load_board(tiny_board).dataset.params) / "images"


def _load(tiny_board):
    from harness.boards.files import load_board
    from harness.data.loading import load_board_data

    return load_board_data(load_board(tiny_board))


def test_a_source_image_changed_after_caching_is_decoded_again(tiny_board, own_copy, caplog):
    data = _load(tiny_board)
    image_id = data.splits["test"].meta["image_id"].iloc[0]
    path = own_copy / image_id
    with Image.open(path) as im:
        inverted = 255 - np.asarray(im)
    Image.fromarray(inverted).save(path)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(DataIntegrityError, match=f"{image_id}: pixels differ from the dataset's recorded digest"):
        _load(tiny_board)  # the synthetic dataset's digests catch the new pixels once they are decoded
    assert f"changed on disk since they were cached (first: {path})" in caplog.text


def test_a_missing_source_image_is_found_before_fitting(tiny_board, own_copy, tmp_path):
    _load(tiny_board)
    (own_copy / _load(tiny_board).splits["train"].meta["image_id"].iloc[0]).unlink()
    with pytest.raises(DataIntegrityError, match="missing"):
        bench("intensity", tiny_board, db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
    assert not (tmp_path / "r.duckdb").exists()  # refused before a run row was written


@pytest.mark.parametrize("damaged", ["images.npy", "images.json", "sources.npy"])
def test_a_damaged_image_cache_is_rebuilt_with_a_notice(tiny_board, own_copy, caplog, damaged):
    from harness.core.paths import cache_root

    first = _load(tiny_board).splits["test"].images.clone()
    target = next((cache_root() / "tensors").glob(f"*/{damaged}"))
    target.write_bytes(b"\x93NUMPY garbage" if damaged.endswith(".npy") else b"{not json")
    again = _load(tiny_board).splits["test"].images
    assert torch.equal(first, again)
    assert "the image cache" in caplog.text and damaged in caplog.text and "decoding the images again" in caplog.text


def test_a_damaged_corrupted_test_set_is_rendered_again(tiny_board, own_copy, caplog):
    from harness.boards.files import load_board
    from harness.data.stress import corrupted_conditions, corrupted_file, corrupted_folder

    board, data = load_board(tiny_board), _load(tiny_board)
    test = data.splits["test"]
    ids = test.meta["image_id"].tolist()
    first = corrupted_conditions(board, test.images, ids, data.dataset_sha256)
    path = corrupted_file(corrupted_folder(board, data.dataset_sha256), "jpeg", 2, 30)
    path.with_suffix(".json").write_text("{truncated")
    again = corrupted_conditions(board, test.images, ids, data.dataset_sha256)
    assert all(torch.equal(a.images, b.images) for a, b in zip(first, again, strict=True))
    assert f"corrupted test set {path}: {path.with_suffix('.json').name} is unreadable" in caplog.text


def test_an_altered_checkpoint_is_trained_again(tmp_path, monkeypatch, caplog):
    import logging

    from harness.components.checkpoints import cached_checkpoint

    monkeypatch.setenv("XRBENCH_CACHE", str(tmp_path))
    calls = []

    def train():
        calls.append(1)
        return {"w": torch.ones(3)}, {"loss": [0.5]}

    log = logging.getLogger("test")
    path = cached_checkpoint("pretrain", "simclr-resnet18", {"seed": 0}, train, log)
    assert cached_checkpoint("pretrain", "simclr-resnet18", {"seed": 0}, train, log) == path and len(calls) == 1
    torch.save({"w": torch.zeros(3)}, path)  # altered by hand
    assert cached_checkpoint("pretrain", "simclr-resnet18", {"seed": 0}, train, log) == path and len(calls) == 2
    assert f"checkpoint {path} is damaged or altered" in caplog.text
    assert torch.equal(torch.load(path)["w"], torch.ones(3))
    path.with_suffix(".json").unlink()
    cached_checkpoint("pretrain", "simclr-resnet18", {"seed": 0}, train, log)
    assert len(calls) == 3 and "without a readable record" in caplog.text


# --- stored predictions -------------------------------------------------------------------------


def test_compare_refuses_a_run_whose_predictions_were_altered(tiny_board, tmp_path):
    from harness.results.compare import compare_runs

    db = tmp_path / "r.duckdb"
    a = bench("intensity", tiny_board, db=db, device="cpu", corruptions=False).run_id
    b = bench("random", tiny_board, db=db, device="cpu", corruptions=False).run_id
    with ResultStore(db) as store:
        store.con.execute("UPDATE predictions SET score = 0.5 WHERE run_id = ? AND image_id = "
                          "(SELECT min(image_id) FROM predictions WHERE run_id = ?)", [b, b])  # fmt: skip
        with pytest.raises(DataIntegrityError, match=f"run {b}: its stored predictions hash to"):
            compare_runs(store, a, b)


# --- parameters and board files -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("knn", {"k": "0"}, r"method knn: k=0 is out of range; it must be int >= 1"),
        ("knn", {"k": "2.5"}, r"method knn: parameter k='2.5': expected int"),
        ("patchcore", {"smoothing_sigma": "inf"}, r"smoothing_sigma=inf is not a finite number"),
        ("supervised", {"clahe": "maybe"}, r"parameter clahe='maybe': expected bool"),
        ("knn", {"k": "-3"}, r"k=-3 is out of range"),
        ("patchcore", {"coreset_ratio": "1.5"}, r"coreset_ratio=1.5 is out of range; it must be float from 1e-06 to 1"),
        ("knn", {"pretrain": "byol"}, r"pretrain='byol' is not allowed; choose one of none, simclr, moco, mae"),
        (
            "knn",
            {"backbone": "resnet181"},
            r"backbone='resnet181': no timm model or X-ray backbone card .* has that name; did you mean",
        ),
        ("knn", {"backbone": "clip:ViT-B-33"}, r"open_clip has no model of that name; did you mean .*ViT-B-32"),
        ("knn", {"layers": "two"}, r"layers must be 'auto' or comma-separated integers"),
        ("knn", {"k": "five"}, r"parameter k='five': expected int"),
        ("knn", {"kk": "5"}, r"method knn has no parameter kk \(did you mean k\?\)"),
        ("ocsvm", {"gamma": "-1"}, r"gamma must be scale, auto or a positive number"),
        ("supervised", {"augment": "2"}, r"augment=2.0 is out of range"),
        ("knn", {"weights": "/no/such/file.pth"}, r"weights file /no/such/file.pth does not exist"),
        ("ae", {"size": "40"}, r"size must be a multiple of 16 and at least 32, not 40"),
        ("unet-ae", {"size": "24"}, r"size must be a multiple of 16 and at least 32, not 24"),
        ("reversed-ae", {"beta_neg": "-1"}, r"beta_neg=-1.0 is out of range"),
        ("ae", {"residual": "l3"}, r"residual='l3' is not allowed; choose one of l2, l1, ssim"),
        ("ddpm-recon", {"widths": "16,x"}, r"widths must be comma-separated channel counts"),
        ("ddpm-recon", {"steps": "300"}, r"steps must be at most t_star \(250\), not 300"),
        ("mae-recon", {"size": "60"}, r"size \(60\) must be a multiple of patch \(8\)"),
        ("flowdiff-normalizer", {"noise_level": "1.5"}, r"noise_level=1.5 is out of range"),
        ("flowdiff-normalizer", {"vae": "sd-vae-ft-mse"}, r"needs stabilityai/sd-vae-ft-mse in the local Hugging Face"),
    ],
)
def test_parameters_are_refused_before_anything_runs(method, params, message):
    with pytest.raises(XRBenchError, match=message):
        create_method(method, params)


def test_k_larger_than_the_training_set_fails_the_run_naming_both(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    with pytest.raises(ParameterError, match="k=50 nearest neighbours, but only 40 normal training images"):
        bench("knn", tiny_board, params={"k": "50"}, db=db, device="cpu", corruptions=False)
    with ResultStore(db) as store:
        assert store.query("SELECT status FROM runs")["status"].tolist() == ["failed"]


def test_unknown_method_names_suggest_the_closest(capsys):
    with pytest.raises(UnknownMethodError, match="unknown method 'patchcorr'; did you mean 'patchcore'"):
        create_method("patchcorr")
    assert main(["bench", "--method", "[/nosuch]"]) == 2  # Rich markup in a name is printed as written
    err = capsys.readouterr().err
    assert "unknown method '[/nosuch]'" in err and "Traceback" not in err


def _edited_board(tiny_board, tmp_path, old: str, new: str) -> Path:
    text = tiny_board.read_text().replace('split_manifest = "', f'split_manifest = "{tiny_board.parent}/')
    assert old in text
    path = tmp_path / "tiny-ad.toml"
    path.write_text(text.replace(old, new))
    return path


def test_a_slice_that_is_not_a_manifest_column_is_refused_before_the_run(tiny_board, tmp_path):
    board = _edited_board(tiny_board, tmp_path, '"site"]', '"nosuchcol"]')
    with pytest.raises(XRBenchError, match="board tiny-ad: slice 'nosuchcol' is not a manifest column; slices can be"):
        bench("intensity", board, db=tmp_path / "r.duckdb", device="cpu")
    assert not (tmp_path / "r.duckdb").exists()


def test_an_unknown_corruption_is_refused_before_the_run(tiny_board, tmp_path):
    board = _edited_board(tiny_board, tmp_path, "jpeg = ", "fog = ")
    with pytest.raises(XRBenchError, match=r"board tiny-ad: \[corruptions\] unknown corruption 'fog'.*known: gaussian"):
        bench("intensity", board, db=tmp_path / "r.duckdb", device="cpu")


# --- ground truth ------------------------------------------------------------------------------


def _box_file(own_copy: Path) -> Path:
    return own_copy.parent / "BBox_List_2017.csv"


def _refrozen(tiny_board, tmp_path, boxes: Path) -> Path:
    """The tiny board with its boxes hash set to the edited file's (as a contributor re-freezing would)."""
    import re

    from harness.core.fingerprints import file_sha256

    text = re.sub(r'boxes_sha256 = "\w+"', f'boxes_sha256 = "{file_sha256(boxes)}"', tiny_board.read_text())
    return _edited_board_text(tiny_board, tmp_path, text)


def _edited_board_text(tiny_board, tmp_path, text: str) -> Path:
    path = tmp_path / "tiny-ad.toml"
    path.write_text(text.replace('split_manifest = "', f'split_manifest = "{tiny_board.parent}/'))
    return path


def _run_refused(board: Path, tmp_path, message: str) -> None:
    with pytest.raises(DataIntegrityError, match=message):
        bench("intensity", board, db=tmp_path / "r.duckdb", device="cpu", corruptions=False)
    assert not (tmp_path / "r.duckdb").exists()  # refused while loading: nothing stored


def test_a_boxes_file_that_differs_from_the_frozen_hash_is_refused(tiny_board, own_copy, tmp_path):
    boxes = _box_file(own_copy)
    boxes.write_text(boxes.read_text().replace(",", ", ", 1))
    _run_refused(tiny_board, tmp_path, rf"board tiny-ad: boxes file {boxes} has SHA-256 \w+, but the board was frozen")


def test_masks_that_differ_from_the_frozen_hash_are_refused(tiny_board, own_copy, tmp_path):
    path = own_copy.parent / "masks.npz"
    with np.load(path) as archive:
        masks = {key: archive[key] for key in archive.files}
    first = sorted(masks)[0]
    masks[first] = ~masks[first]
    np.savez_compressed(path, **masks)
    _run_refused(tiny_board, tmp_path, rf"masks file {path} has content SHA-256 \w+, not the board's")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda line: line.replace(line.split(",")[0], "00099999_000.png", 1), "which the dataset does not have"),
        (lambda line: line.replace(line.split(",")[1], "Fracture", 1), "finding 'Fracture' is not one of the"),
        (lambda line: ",".join([*line.split(",")[:2], "60", "60", "20", "20"]), r"is outside the 64 x 64 image"),
        (lambda line: ",".join([*line.split(",")[:4], "0", "5"]), "a box needs a positive width and height"),
    ],
    ids=["unknown image", "unknown finding", "outside the image", "no area"],
)
def test_a_bad_box_is_refused_naming_file_and_line(tiny_board, own_copy, tmp_path, edit, message):
    boxes = _box_file(own_copy)
    lines = boxes.read_text().splitlines()
    lines[3] = edit(lines[3])
    boxes.write_text("\n".join(lines) + "\n")
    _run_refused(_refrozen(tiny_board, tmp_path, boxes), tmp_path, rf"{boxes}, line 4: .*{message}")


# --- metadata and files -------------------------------------------------------------------------


def _nih_table(path: Path, ages: list, follow_ups: list) -> Path:
    from harness.data.adapters.base import NIH_COLUMNS

    rows = [[f"{i:08d}_000.png", "No Finding", f, str(i), a, "F", "PA", 1, 1, 0.1, 0.1]
            for i, (a, f) in enumerate(zip(ages, follow_ups, strict=True))]  # fmt: skip
    pd.DataFrame(rows, columns=NIH_COLUMNS).to_csv(path, index=False)
    return path


def test_nih_metadata_values_are_checked_naming_file_line_and_column(tmp_path):
    from harness.data.adapters.nih import read_data_entry

    table = read_data_entry(_nih_table(tmp_path / "a.csv", ["058Y", "31"], [0, 1]))
    assert table["age"].tolist() == [58, 31]  # the year suffix of early releases is read
    bad = _nih_table(tmp_path / "b.csv", ["40", "thirty"], [0, 1])
    with pytest.raises(XRBenchError, match=f"{bad}, line 3: column 'Patient Age' holds 'thirty', not a whole number"):
        read_data_entry(bad)
    empty_follow_up = _nih_table(tmp_path / "c.csv", ["40", "41"], [0, ""])
    with pytest.raises(XRBenchError, match="line 3: column 'Follow-up #' holds nothing"):
        read_data_entry(empty_follow_up)
    (tmp_path / "d.csv").write_text("")
    with pytest.raises(XRBenchError, match=r"d\.csv is empty"):
        read_data_entry(tmp_path / "d.csv")


@pytest.fixture(scope="module")
def dicom_files(tmp_path_factory):
    from harness.data.synth.dental_cohort import DentalRecord, write_dicom

    folder = tmp_path_factory.mktemp("dicom")
    values = (np.random.default_rng(0).random((48, 96)) * 4000).astype(np.uint16)
    for rle in (False, True):
        record = DentalRecord(f"p{int(rle)}.dcm", 7, 0, 40, "F", (), False, True, rle)
        write_dicom(folder / f"whole-{int(rle)}.dcm", values, record, 0)
    return folder


def test_a_dicom_cut_inside_its_pixel_data_is_named_as_damaged_without_warnings(dicom_files, tmp_path):
    from harness.data.dicom import read_dicom

    for rle in (0, 1):
        data = (dicom_files / f"whole-{rle}.dcm").read_bytes()
        cut = tmp_path / f"cut-{rle}.dcm"
        cut.write_bytes(data[: len(data) - 200])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(DataIntegrityError, match=f"{cut}: (no pixel data; the file is truncated|pixel data)"):
                read_dicom(cut)
        assert not caught


def test_a_dicom_cut_inside_its_header_is_named_by_the_dental_reader(dicom_files, tmp_path):
    from harness.data.adapters.dental import read_dental

    root = tmp_path / "tree"
    (root / "normal").mkdir(parents=True)
    (root / "normal" / "good.dcm").write_bytes((dicom_files / "whole-0.dcm").read_bytes())
    (root / "normal" / "cut.dcm").write_bytes((dicom_files / "whole-0.dcm").read_bytes()[:300])
    with pytest.raises(DataIntegrityError, match=r"1 images under .* have no patient id .*first: normal/cut\.dcm"):
        read_dental(root)


# --- failures, signals, processes ---------------------------------------------------------------


@register
class FailsInFit(Method):
    card = MethodCard("test-fails-in-fit", "test", "raises while fitting", "-", "-")

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        raise ZeroDivisionError("the method divided by zero")

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=batch.mean(dim=(1, 2, 3)))


def test_a_failing_method_is_one_line_with_the_traceback_under_verbose(tiny_board, tmp_path, capsys):
    args = ["bench", "--method", "test-fails-in-fit", "--board", str(tiny_board), "--db", str(tmp_path / "r.duckdb")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error: method test-fails-in-fit failed while fitting: ZeroDivisionError: the method divided by zero" in err
    assert "is marked failed" in err and "Traceback" not in err and "run with -v" in err
    assert main(["-v", *args]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    with ResultStore(tmp_path / "r.duckdb") as store:
        errors = store.query("SELECT error FROM runs")["error"]
    assert errors.str.startswith("MethodFailure: method test-fails-in-fit failed while fitting").all()
    assert errors.str.contains("ZeroDivisionError: the method divided by zero").all()


def test_ctrl_c_before_a_run_exists_says_nothing_was_stored(monkeypatch, capsys, tmp_path):
    import harness.results.store

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.results.store.ResultStore, "__init__", interrupted)
    assert main(["runs", "--db", str(tmp_path / "r.duckdb")]) == 130
    assert "interrupted: no run had started; nothing was stored" in capsys.readouterr().err


def test_markup_in_paths_is_printed_as_written(tmp_path, capsys):
    copy = tmp_path / "NIH [copy]"
    copy.mkdir()
    assert main(["data", "check", "nih", "--root", str(copy)]) == 2
    assert f"{copy} has no Data_Entry_2017.csv" in capsys.readouterr().err


def test_a_database_path_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("not a folder")
    assert main(["runs", "--db", str(tmp_path / "file.txt" / "r.duckdb")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "file.txt") in err and "Traceback" not in err and err.count("\n") <= 2


def _env(tmp_path) -> dict:
    return {**os.environ, "XRBENCH_DB": str(tmp_path / "r.duckdb")}


def test_sigterm_during_a_run_marks_it_failed(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    command = [sys.executable, "-m", "harness.cli.main", "bench", "--method", "patchcore", "--board", str(tiny_board),
               "--db", str(db), "--device", "cpu"]  # fmt: skip
    process = subprocess.Popen(command, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if db.exists():
            try:
                with ResultStore(db) as store:
                    if not store.query("SELECT run_id FROM runs WHERE status = 'running'").empty:
                        break
            except XRBenchError:
                continue
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "terminated by SIGTERM: run" in err and "is marked failed" in err
    with ResultStore(db) as store:
        run = store.query("SELECT status, error FROM runs").iloc[0]
    assert run["status"] == "failed" and run["error"].startswith("Terminated: SIGTERM")


def test_runs_whose_process_is_gone_are_shown_stale_and_can_be_marked_failed(tmp_path, capsys):
    db = tmp_path / "r.duckdb"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with ResultStore(db) as store:
        store.start_run({"run_id": "r-dead", "board": "b", "method": "m"})
        store.start_run({"run_id": "r-alive", "board": "b", "method": "m"})
        store.con.execute("UPDATE runs SET pid = ? WHERE run_id = 'r-dead'", [dead.pid])
        assert store.stale_runs() == ["r-dead"]
    assert main(["runs", "--db", str(db)]) == 0
    assert "1 stale runs: mark them failed with `xrbench runs --mark-stale`" in capsys.readouterr().out
    assert main(["runs", "--db", str(db), "--mark-stale"]) == 0
    with ResultStore(db) as store:
        status = dict(store.query("SELECT run_id, status FROM runs").itertuples(index=False))
    assert status == {"r-dead": "failed", "r-alive": "running"}


@register
class HoldsTheDatabase(Method):
    """Keeps the results database locked from another process while the run finishes."""

    card = MethodCard("test-holds-the-db", "test", "-", "-", "-")
    db_path = ""

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        code = f"import duckdb, time; c = duckdb.connect({self.db_path!r}); print('locked', flush=True); time.sleep(4)"
        self.holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout.readline().strip() == "locked"

    def predict(self, batch: torch.Tensor) -> Prediction:
        return Prediction(scores=batch.mean(dim=(1, 2, 3)))


def test_a_finished_run_is_kept_when_the_database_stays_locked(tiny_board, tmp_path, monkeypatch):
    import harness.results.store

    db = tmp_path / "r.duckdb"
    monkeypatch.setattr(HoldsTheDatabase, "db_path", str(db))
    monkeypatch.setattr(harness.results.store, "LOCK_WAIT_SECONDS", 0.5)
    with pytest.raises(XRBenchError, match=r"is locked by another process.*kept in .*r\.duckdb\.pending"):
        bench("test-holds-the-db", tiny_board, db=db, device="cpu", corruptions=False)
    time.sleep(4.5)  # the other process lets go
    monkeypatch.setattr(harness.results.store, "LOCK_WAIT_SECONDS", 60.0)
    with ResultStore(db) as store:
        assert store.load_pending() and not list((tmp_path / "r.duckdb.pending").glob("*.duckdb"))
        run = store.query("SELECT run_id, status FROM runs").iloc[0]
        n_metrics = store.query("SELECT count(*) AS n FROM metrics")["n"].item()
        store.predictions(run["run_id"])  # verified against its hash
    assert run["status"] == "ok" and n_metrics > 10


# --- the site never deletes what it did not write ---------------------------------------------


@pytest.fixture(scope="module")
def results_db(tiny_board, tmp_path_factory):
    db = tmp_path_factory.mktemp("site-db") / "results.duckdb"
    bench("intensity", tiny_board, db=db, device="cpu")
    return db


def test_site_refuses_a_folder_that_is_not_a_site_and_deletes_nothing(results_db, tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("months of work")
    assert main(["site", "--db", str(results_db), "--out", str(thesis)]) == 2
    err = capsys.readouterr().err
    assert f"--out {thesis} is not empty and is not a site xrbench built" in err and err.count("\n") == 1
    assert (thesis / "chapter1.tex").read_text() == "months of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]  # no half-built sibling left


def test_site_refuses_an_out_folder_holding_the_results_database(results_db, tmp_path, capsys):
    import shutil

    folder = tmp_path / "x"
    folder.mkdir()
    db = Path(shutil.copy(results_db, folder / "results.duckdb"))
    assert main(["site", "--db", str(db), "--out", str(folder)]) == 2
    assert "holds the results database" in capsys.readouterr().err
    assert db.is_file() and db.stat().st_size > 0


def test_a_rebuilt_site_replaces_the_old_one_whole_and_an_interrupted_one_leaves_it(results_db, tmp_path, monkeypatch):
    from harness.site import builder

    out = tmp_path / "site"
    assert main(["site", "--db", str(results_db), "--out", str(out)]) == 0
    (out / "stale.html").write_text("from an older build")
    assert main(["site", "--db", str(results_db), "--out", str(out)]) == 0
    assert (out / builder.MARKER).is_file() and not (out / "stale.html").exists()

    (out / "stale.html").write_text("from an older build")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(builder, "run_page", interrupted)
    assert main(["site", "--db", str(results_db), "--out", str(out)]) == 130
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


# --- numbers the store cannot hold, options that time nothing ---------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["bench", "--method", "knn", "--seed", "99999999999"],
            "the seed = 99999999999 is out of range (0 to 2147483647)",
        ),
        (["grid", "--methods", "knn", "--seeds", "0,4294967296"], "--seeds: 4294967296 is out of range"),
        (["latency", "--method", "knn", "--batch-sizes", "0"], "the batch size = 0 is out of range (1 to"),
        (["latency", "--method", "knn", "--warmup", "-1"], "the warm-up calls = -1 is out of range (0 to"),
        (["latency", "--method", "knn", "--iterations", "0"], "the timed calls (iterations) = 0 is out of range"),
        (
            ["bench", "--method", "padim", "--param", "smoothing_sigma=nan"],
            "smoothing_sigma=nan is not a finite number",
        ),
        (["bench", "--method", "padim", "--param", "smoothing_sigma=-inf"], "smoothing_sigma=-inf is not a finite"),
    ],
    ids=["seed", "grid seeds", "batch 0", "warmup -1", "iterations 0", "nan parameter", "inf parameter"],
)
def test_out_of_range_numbers_are_one_line_before_anything_runs(args, message, tmp_path, capsys):
    db = tmp_path / "r.duckdb"
    assert main([*args, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") <= 2
    assert not db.exists()  # nothing was stored, not even a failed run


# --- the results database ---------------------------------------------------------------------


def test_a_sqlite_file_is_refused_without_fetching_an_extension(tmp_path, capsys):
    import sqlite3

    path = tmp_path / "results.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE runs (x)")
    before = path.read_bytes()
    assert main(["runs", "--db", str(path)]) == 2
    err = capsys.readouterr().err
    assert "it is a SQLite file, not a DuckDB results database" in err and err.count("\n") <= 2
    assert path.read_bytes() == before


def test_a_database_of_a_newer_schema_or_another_program_is_refused(tmp_path, capsys):
    import duckdb

    from harness.results import store as store_module

    newer = tmp_path / "newer.duckdb"
    with ResultStore(newer):
        pass
    with duckdb.connect(str(newer)) as con:
        con.execute(f"INSERT INTO xrbench_schema VALUES ({store_module.SCHEMA_VERSION + 1})")
    assert main(["runs", "--db", str(newer)]) == 2
    err = capsys.readouterr().err
    version = store_module.SCHEMA_VERSION
    assert f"schema version {version + 1}; this xrbench reads versions up to {version}" in err
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE invoices (n INTEGER)")
    assert main(["runs", "--db", str(other)]) == 2
    assert "is a DuckDB database but not xrbench's (its tables: invoices)" in capsys.readouterr().err
    with duckdb.connect(str(other)) as con:
        assert con.execute("SHOW TABLES").fetchall() == [("invoices",)]  # nothing was added to it


def test_a_full_disk_at_store_time_keeps_the_finished_run_pending(tiny_board, tmp_path, monkeypatch):
    import duckdb

    def full(self, run_id, tables, updates):
        raise duckdb.IOException("Could not write file: No space left on device")

    db = tmp_path / "r.duckdb"
    monkeypatch.setattr(ResultStore, "complete_run", full)
    with pytest.raises(XRBenchError, match=r"No space left on device; the finished run .* is kept in .*pending"):
        bench("intensity", tiny_board, db=db, device="cpu", corruptions=False)
    monkeypatch.undo()
    with ResultStore(db) as store:
        assert store.query("SELECT status FROM runs")["status"].tolist() == ["running"]
        (run_id,) = store.load_pending()
        assert store.run(run_id)["status"] == "ok"
        store.predictions(run_id)  # whole, and verified against its hash


# --- one line, always -------------------------------------------------------------------------


def test_an_unexpected_exception_is_one_line_naming_command_and_stage_with_a_log(tmp_path, monkeypatch, capsys):
    from harness.site import builder

    db = tmp_path / "r.duckdb"
    with ResultStore(db):
        pass

    def bug(*args, **kwargs):
        raise KeyError("missing_column")

    monkeypatch.setattr(builder, "build", bug)
    assert main(["site", "--db", str(db), "--out", str(tmp_path / "site")]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0] == "error: xrbench site failed: KeyError: 'missing_column'" and len(lines) == 2
    log = Path(lines[1].split("the traceback is in ")[1].split(";")[0])
    assert "Traceback (most recent call last)" in log.read_text() and "missing_column" in log.read_text()
    assert not (tmp_path / "site").exists()


def test_an_unexpected_exception_inside_a_run_names_its_stage(tiny_board, tmp_path, monkeypatch, capsys):
    from harness.run import runner

    def bug(*args, **kwargs):
        raise ValueError("a library said no")

    monkeypatch.setattr(runner, "load_board_data", bug)
    assert main(["bench", "--method", "intensity", "--board", str(tiny_board), "--db", str(tmp_path / "r.db")]) == 1
    err = capsys.readouterr().err
    assert "xrbench bench failed: ValueError: a library said no while in the load stage" in err


def test_bundle_text_cannot_drive_the_terminal(tiny_board, tmp_path, capsys):
    folder = tmp_path / "b"
    folder.mkdir()
    for name in ("submission.toml", "predictions.parquet", "reported.json", "SHA256SUMS", "\x1b[2J:skull:[red]x"):
        (folder / name).write_text("x")
    assert main(["verify", str(folder)]) == 2
    out = capsys.readouterr()
    assert "\x1b[2J" not in out.out + out.err and "\\x1b[2J:skull:[red]x" in out.out
