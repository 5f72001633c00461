"""`xrbench data check|prepare NAME` (a local copy of a dataset) and `xrbench split freeze BOARD`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from harness.boards.datasets import preparable_datasets
from harness.cli.common import console, err_console
from harness.core.errors import XRBenchError


def add_commands(sub: Any) -> None:
    p = sub.add_parser("data", help="local copies of the real datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("check", help="what is there, missing or unreadable (decodes every image; writes nothing)")
    q.add_argument("name", choices=preparable_datasets(), help="the dataset")
    q.add_argument("--root", required=True, help="the dataset's folder, in its published layout")
    q.add_argument("--quick", action="store_true", help="check presence and file signatures only, without decoding")
    q.set_defaults(func=cmd_data_check)
    q = data_sub.add_parser(
        "prepare", help="check a local copy against the frozen boards, record exclusions, fill the image cache"
    )
    q.add_argument("name", choices=preparable_datasets(), help="the dataset")
    q.add_argument("--root", required=True, help="the dataset's folder, in its published layout")
    q.set_defaults(func=cmd_data_prepare)

    p = sub.add_parser("split", help="maintain frozen split manifests")
    split_sub = p.add_subparsers(dest="split_command", required=True)
    q = split_sub.add_parser("freeze", help="build a board's manifest from its [split] table and record its hash")
    q.add_argument("board", help="board name or path to a board .toml")
    q.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    q.set_defaults(func=cmd_split_freeze)
    q = split_sub.add_parser(
        "stress", help="render a board's corrupted test set and record its SHA-256 (stress_sha256) in the board file"
    )
    q.add_argument("board", help="board name or path to a board .toml")
    q.add_argument("--force", action="store_true", help="replace a different recorded hash (a new board version)")
    q.set_defaults(func=cmd_split_stress)


def _check_local(name: str, root: Path, decode: bool):
    """Read a local copy's metadata and check its files: (entries, file report), with a summary."""
    from rich.progress import track

    from harness.data.datasets import read_entries
    from harness.data.local import check_files

    entries = read_entries(name, root)
    report = check_files(
        root,
        entries["path"].drop_duplicates().tolist(),
        lambda it, text: track(it, description=text, console=err_console),
        decode,
    )
    table = Table(title=escape(f"{name} at {root}"))
    columns = ("entries listed", "files", "present", "missing", "unreadable", "normal", "abnormal", "no usable label")
    for column in columns:
        table.add_column(column, justify="right")
    label = entries["label"]
    counts = (
        len(entries),
        entries["path"].nunique(),  # fewer than entries when entries are crops of one file (DENTEX)
        report.present,
        len(report.missing),
        len(report.unreadable),
        int((label == 0).sum()),
        int((label == 1).sum()),
        int(label.isna().sum()),
    )
    table.add_row(*(str(x) for x in counts))
    console.print(table)
    if "official_split" in entries:
        split_counts = entries["official_split"].replace("", "(none)").value_counts().to_dict()
        console.print(escape("official split: " + ", ".join(f"{k} {v}" for k, v in split_counts.items())))
    for line in report.lines():
        console.print(escape(line))
    return entries, report


def cmd_data_check(args: argparse.Namespace) -> None:
    _, report = _check_local(args.name, Path(args.root).expanduser(), decode=not args.quick)
    if report.missing or report.unreadable:
        raise XRBenchError(f"{len(report.missing) + len(report.unreadable)} listed images cannot be used")


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from harness.data.prepare import prepare_local_dataset

    root = Path(args.root).expanduser()
    entries, report = _check_local(args.name, root, decode=False)  # preparing decodes every image anyway
    result = prepare_local_dataset(args.name, root, entries, report)
    for line in result.lines():
        console.print(escape(line))


def cmd_split_freeze(args: argparse.Namespace) -> None:
    from harness.data.freeze import freeze_board

    frozen = freeze_board(args.board, force=args.force)
    what = f"{frozen.manifest} ({frozen.images} images), SHA-256 {frozen.sha256}"
    console.print(escape(f"wrote {what}, recorded in {frozen.board_file}"))


def cmd_split_stress(args: argparse.Namespace) -> None:
    from harness.data.freeze import freeze_stress

    sha, board_file = freeze_stress(args.board, force=args.force)
    console.print(escape(f"the corrupted test set hashes to {sha}, recorded in {board_file}"))
