"""Board files: what is refused, with a message naming the board and the key."""

import pytest

from harness.boards.files import load_board
from harness.core.errors import UnknownBoardError, XRBenchError

BASE = """name = "b"
version = 1
description = "a board"
task = "anomaly"
resolution = 64
split_manifest = "b.csv"
split_sha256 = "0"

[dataset]
name = "synth-cxr"
"""


def _board(tmp_path, text: str):
    path = tmp_path / "b.toml"
    path.write_text(text)
    return load_board(path)


def test_a_valid_board_loads_with_its_defaults(tmp_path):
    board = _board(tmp_path, BASE)
    assert (board.name, board.primary_metric, board.bootstrap, board.batch_size) == ("b", "auroc", 1000, 32)
    assert board.split_manifest == (tmp_path / "b.csv").resolve()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('task = "anomaly"', 'task = "segmentation"'), "task must be one of anomaly, multilabel"),
        (lambda t: t.replace('split_manifest = "b.csv"\n', ""), "lacks the key split_manifest"),
        (lambda t: t.replace("version = 1", 'version = 1\ncolour = "red"'), "unknown key 'colour'"),
        (lambda t: t.replace("version = 1", "version = 1\nbootstap = 10"), "unknown key 'bootstap' .*'bootstrap'"),
        (lambda t: t.replace("resolution = 64", 'resolution = "sixty-four"'), "resolution must be a whole number"),
        (lambda t: t.replace("resolution = 64", "resolution = 64\nbatch_size = 0"), r"batch_size = 0 is out of range"),
        (lambda t: t.replace("resolution = 64", "resolution = true"), "resolution must be a whole number"),
        (lambda t: t.replace("resolution = 64", 'resolution = 64\nslices = ["sex", 3]'), "slices must be a list of"),
        (lambda t: t + "\n[corruptions]\njpeg = []\n", r"\[corruptions\] jpeg must list one finite number"),
        (lambda t: t + "\n[corruptions]\njpeg = [nan]\n", r"\[corruptions\] jpeg must list one finite number"),
        (lambda t: t + "\n[corruptions]\njpeg = [inf]\n", r"\[corruptions\] jpeg must list one finite number"),
        (lambda t: t.replace('name = "b"', 'name = "../b"'), "board '../b' is not a name"),
        (lambda t: t.replace("resolution = 64", "resolution = 64\nseed = 4294967296"), "seed = 4294967296 is out"),
        (lambda t: t.replace("version = 1", "version = 4294967296"), "version = 4294967296 is out of range"),
        (lambda t: t + "[[broken", "is not valid TOML"),
        (
            lambda t: t.replace("resolution = 64", 'resolution = 64\nthreshold = "median"'),
            "threshold = 'median'; choose one of best-f1, normal-quantile",
        ),
        (
            lambda t: t.replace("resolution = 64", "resolution = 64\nthreshold_quantile = 1.5"),
            "threshold_quantile = 1.5 must lie strictly between 0 and 1",
        ),
        (
            lambda t: t.replace("resolution = 64", "resolution = 64\nthreshold_quantile = nan"),
            "threshold_quantile = nan must lie strictly between 0 and 1",
        ),
        (
            lambda t: t.replace("resolution = 64", "resolution = 64\nthreshold_quantile = 1"),
            "threshold_quantile must be a number",
        ),
        (
            lambda t: t.replace("resolution = 64", 'resolution = 64\nresample = "bicubic"'),
            "resample = 'bicubic'; choose one of bilinear, lanczos",
        ),
        (
            lambda t: t + '\n[ground_truth]\nboxes = "b.csv"\nbox_format = "coco"\n',
            r"\[ground_truth\] box_format 'coco' is not one of nih, rsna, dentex",
        ),
        (lambda t: t.replace('task = "anomaly"', 'task = "multilabel"'), "a multilabel board lists its `targets`"),
        (lambda t: t.replace("resolution = 64", 'resolution = 64\ntargets = ["Mass"]'), "an anomaly board lists no"),
        (lambda t: t.replace("resolution = 64", 'resolution = 64\nprimary_metric = "accuracy"'), "primary_metric"),
        (
            lambda t: t.replace('task = "anomaly"', 'task = "multilabel"\ntargets = ["Mass", "Mass"]'),
            "targets must be distinct findings",
        ),
    ],
)
def test_board_files_are_refused_with_the_board_and_key(tmp_path, change, message):
    with pytest.raises(XRBenchError, match=message) as info:
        _board(tmp_path, change(BASE))
    assert str(tmp_path / "b.toml") in str(info.value) or "board b:" in str(info.value)


def test_an_unknown_board_name_lists_the_available_boards():
    with pytest.raises(UnknownBoardError, match=r"available: .*synth-cxr-ad"):
        load_board("no-such-board")
