"""The `xrbench` command: the parser of every command group, and errors as one line.

Each command group is a module of `harness.cli` with `add_commands(sub)`; its commands import
what they run only when they run, so that `xrbench list` or a parameter error answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from rich.logging import RichHandler
from rich.markup import escape

from harness.cli import data, grid, methods, results, runs, site, submissions
from harness.cli.common import err_console, safe
from harness.core.errors import XRBenchError, first_line
from harness.core.paths import REPO_ROOT

GROUPS = (methods, runs, grid, results, submissions, site, data)


class Parser(argparse.ArgumentParser):
    """argparse without prefix matching: `--no-corrupt` is an error, not `--no-corruptions`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="xrbench", description="Benchmark harness for X-ray anomaly detection and classification.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.add_commands(sub)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Each command's one-line help as its description too (shown by `xrbench CMD --help`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                command = action.choices[choice.dest]
                command.description = command.description or choice.help
                _describe(command)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a batch scheduler's kill, a closed terminal): handled like Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


def foreign_checkout() -> Path | None:
    """The checkout the current folder is in, when it is not the one whose code runs (an
    editable install of another clone, or an installed wheel)."""
    if os.environ.get("XRBENCH_ROOT"):
        return None
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "harness" / "__init__.py").is_file() and (folder / "leaderboards").is_dir():
            return None if folder == REPO_ROOT else folder
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (other := foreign_checkout()) is not None:
        err_console.print(
            f"[yellow]warning:[/] this xrbench runs the code in {escape(str(REPO_ROOT))}, not the checkout "
            f"{escape(str(other))} you are in: run `make setup` there (or give make VENV=...)"
        )
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, markup=False)],
    )
    logging.getLogger("faiss").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        args.func(args)
    except XRBenchError as exc:
        _report(exc, "error", args.verbose)
        return 2
    except OSError as exc:  # a parent path that is a file, a full disk, a permission
        where = f": {exc.filename}" if exc.filename else ""
        _report(exc, "error", args.verbose, f"{exc.strerror or exc}{where}")
        return 2
    except Exception as exc:  # a bug, or a library's error xrbench did not foresee: one line, and a log
        _report_unexpected(exc, args.command, args.verbose)
        return 1
    except KeyboardInterrupt as exc:
        what = f"terminated by {exc.args[0]}" if isinstance(exc, Terminated) else "interrupted"
        notes = getattr(exc, "__notes__", None) or ["no run had started; nothing was stored"]
        err_console.print(f"[bold red]{what}[/]: {escape(notes[0])}")
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def write_traceback(exc: BaseException, command: str) -> Path | None:
    """The full traceback in a log file under the cache folder (None if it cannot be written)."""
    from harness.core.paths import cache_root

    try:
        folder = cache_root() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-{os.getpid()}.log"
        log.write_text(f"xrbench {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(exc)))
        return log
    except OSError:
        return None


def _report_unexpected(exc: Exception, command: str, verbose: bool) -> None:
    """One line naming the command, the exception and where it happened (its notes)."""
    where = " ".join(getattr(exc, "__notes__", []))
    message = f"xrbench {command} failed: {type(exc).__name__}: {first_line(exc)} {where}".strip()
    err_console.print(f"[bold red]error:[/] {safe(message)}")
    log = write_traceback(exc, command)
    err_console.print(escape(f"  (the traceback is in {log}; -v prints it)" if log else "  (-v prints the traceback)"),
                      style="dim")  # fmt: skip
    if verbose:
        err_console.print(escape("".join(traceback.format_exception(exc))), style="dim")


def _report(exc: BaseException, label: str, verbose: bool, message: str | None = None) -> None:
    """One line naming the problem (and the notes added on the way); the traceback under -v."""
    err_console.print(f"[bold red]{label}:[/] {safe(message or str(exc))}")
    for note in getattr(exc, "__notes__", []):
        err_console.print(f"  {safe(note)}", style="dim")
    if verbose:
        err_console.print(escape("".join(traceback.format_exception(exc))), style="dim")
    elif exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        err_console.print("  (run with -v for the traceback)", style="dim")


if __name__ == "__main__":
    sys.exit(main())
