"""`xrbench list`, `xrbench show METHOD` and `xrbench check METHOD`: what is registered, a
method's card and parameters, and the conformance checks of a method.

Listing and showing read the method index (`harness.api.index`), not the method modules: they
import neither torch nor any method's dependencies once the index is as new as the code.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from harness.cli.common import console, err_console
from harness.core.errors import UnknownMethodError, XRBenchError


def add_commands(sub: Any) -> None:
    p = sub.add_parser("list", help="list registered methods and boards, one line each", allow_abbrev=False)
    p.add_argument(
        "what", nargs="?", choices=("methods", "boards", "all"), default="all", help="what to list (default: all)"
    )
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="a method's card and every parameter with its default, range and meaning")
    p.add_argument("method", help="a registered method (see xrbench list)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("check", help="run the conformance checks of a method on tiny generated boards (CPU)")
    p.add_argument("method", help="a registered method (see xrbench list)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="over the smoke-test values")
    p.set_defaults(func=cmd_check)


def method_index() -> dict[str, Any]:
    """The index, rebuilt (by importing every method) only when the code changed."""
    from harness.api.index import read_index

    index = read_index()
    if index is None:
        from harness.api.registry import method_index as rebuilt

        with err_console.status("indexing the methods (once, after the code changes)"):
            index = rebuilt()
    return index


def cmd_list(args: argparse.Namespace) -> None:
    if args.what in ("methods", "all"):
        index = method_index()
        console.print(methods_table(index["methods"]))
        for name, error in index.get("broken", {}).items():
            err_console.print(f"[yellow]plugin {escape(name)} could not be loaded:[/] {escape(error)}")
    if args.what in ("boards", "all"):
        console.print(boards_table())


def one_line_table(
    title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], groups: list[str] | None = None
) -> Text:
    """One line per row whatever the terminal's width: every column as wide as its widest cell,
    but the last, which is cut (with an ellipsis) to fit. `groups`, one per row, prints a
    heading line where the group changes."""
    widths = [max(len(c), *(len(r[k]) for r in rows)) if rows else len(c) for k, c in enumerate(columns)]
    room = max(console.width - sum(w + 2 for w in widths[:-1]), 8)

    def line(cells: tuple[str, ...]) -> str:
        last = cells[-1] if len(cells[-1]) <= room else cells[-1][: room - 1] + "…"
        return "  ".join([*(c.ljust(w) for c, w in zip(cells[:-1], widths, strict=False)), last]).rstrip()

    out = Text(f"{title}\n", style="bold")
    out.append(line(columns) + "\n", style="bold")
    previous = None
    for k, row in enumerate(rows):
        if groups is not None and groups[k] != previous:
            previous = groups[k]
            out.append(f"{previous}\n", style="bold cyan")
        out.append(line(row) + "\n")
    return out


def methods_table(methods: dict[str, Any]) -> Text:
    """Methods grouped by family (a heading line each); `runs` says why a method cannot run
    on this machine."""
    ordered = sorted(methods.items(), key=lambda item: (item[1]["card"]["family"], item[0]))
    rows = [
        ("  " + name, ",".join(e["card"]["tasks"]), e["card"]["learning"], "yes" if e["card"]["produces_maps"] else "",
         runs_here(e["card"]))
        for name, e in ordered
    ]  # fmt: skip
    families = [e["card"]["family"] for _, e in ordered]
    columns = ("  name", "tasks", "learns from", "maps", "runs")
    return one_line_table(f"methods ({len(rows)}), by family", columns, rows, families)


def runs_here(card: dict[str, Any]) -> str:
    refused = card.get("exceptions", {}).get("fits", "")
    return "no: " + refused.removeprefix("cannot run here: ") if refused.startswith("cannot run here") else "yes"


def boards_table() -> Text:
    from harness.boards.files import available_boards, load_board

    boards = [load_board(name) for name in available_boards()]
    rows = [(b.name, b.task, b.dataset.name, str(b.resolution), b.description) for b in boards]
    return one_line_table(f"boards ({len(rows)})", ("name", "task", "dataset", "px", "description"), rows)


def cmd_show(args: argparse.Namespace) -> None:
    methods = method_index()["methods"]
    if args.method not in methods:
        close = difflib.get_close_matches(args.method, methods, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownMethodError(f"unknown method {args.method!r}{hint} (see `xrbench list methods`)")
    entry = methods[args.method]
    card = entry["card"]
    console.print(f"[bold]{escape(card['name'])}[/] · {escape(card['family'])}")
    console.print(escape(card["description"]))
    facts = Table(box=None, show_header=False, pad_edge=False)
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()
    where = entry["plugin"] and f"plugin {entry['plugin']['distribution']} {entry['plugin']['version']}"
    for label, value in (
        ("reference", card["reference"]),
        ("licence", card["license"]),
        ("tasks", ", ".join(card["tasks"])),
        ("learns from", card["learning"]),
        ("maps", "yes" if card["produces_maps"] else "no (explainable with --explain when it has a saliency target)"),
        ("code", where or f"{entry['module']}.{entry['class']}"),
        *((f"not checked: {k}", v) for k, v in card.get("exceptions", {}).items()),
    ):
        facts.add_row(label, escape(str(value)))
    console.print(facts)
    console.print(params_table(entry["params"]))


def params_table(params: list[dict[str, Any]]) -> Table:
    table = Table(
        title="parameters (--param KEY=VALUE)",
        caption="weights: the parameter changes the weights the method trains (it is in their checkpoint key)",
        title_justify="left",
        caption_justify="left",
        box=None,
        pad_edge=False,
    )
    for column in ("name", "default", "allowed", "weights", "meaning"):
        table.add_column(column, no_wrap=column != "meaning", header_style="bold")
    for p in params:
        table.add_row(
            escape(p["name"]),
            escape(_shown(p["default"])),
            escape(_allowed(p)),
            "yes" if p["changes_weights"] else "",
            escape(p["help"] + (f" (smoke test: {_shown(p['smoke'])})" if p["has_smoke"] else "")),
        )
    if not params:
        table.add_row("(none)", "", "", "", "")
    return table


def _shown(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _allowed(p: dict[str, Any]) -> str:
    """The range or choices of an indexed parameter (`ParamSpec.allowed`, from its fields)."""
    if p["choices"] is not None:
        return "|".join(map(str, p["choices"]))
    low, high = p["low"], p["high"]
    if low is not None and high is not None:
        return f"{p['type']} {low:g}..{high:g}"
    if low is not None:
        return f"{p['type']} >= {low:g}"
    return f"{p['type']} <= {high:g}" if high is not None else p["type"]


def cmd_check(args: argparse.Namespace) -> None:
    from harness.api.params import parse_params
    from harness.api.registry import get_method
    from harness.conformance.checks import CHECKS, MethodCheckError, run_check, skipped_because

    cls, params = get_method(args.method), parse_params(args.param) or None
    table = Table(title=escape(f"conformance checks of {args.method}"), title_justify="left", box=None)
    for column in ("check", "result"):
        table.add_column(column)
    failed = 0
    for name in CHECKS:
        why = skipped_because(cls, name)
        if why:
            table.add_row(name, f"[dim]not run: {escape(why)}[/]")
            continue
        with err_console.status(escape(f"{args.method}: {name}")):
            try:
                run_check(cls, name, params)
                table.add_row(name, "[green]ok[/]")
            except MethodCheckError as exc:
                failed += 1
                table.add_row(name, f"[bold red]failed:[/] {escape(str(exc))}")
    console.print(table)
    if failed:
        raise XRBenchError(f"{args.method} failed {failed} of {len(CHECKS)} conformance checks")
