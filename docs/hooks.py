"""mkdocs hooks: the parts of the documentation that are read from the code when the site is
built, so that they cannot drift from it. A page holds a marker, replaced here:

- `<!-- methods -->`: every registered method, from its card (`harness.api.registry`);
- `<!-- boards -->`: every board file (`harness.boards.files`);
- `<!-- cli -->`: every command and option of `xrbench` (`harness.cli.main.build_parser`).
"""

from __future__ import annotations

import argparse
from typing import Any


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for marker, render in (("<!-- methods -->", methods), ("<!-- boards -->", boards), ("<!-- cli -->", commands)):
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def methods() -> str:
    from harness.api.registry import method_index

    rows = ["| method | what it is | what it scores |", "|---" * 3 + "|"]
    for name, entry in sorted(method_index()["methods"].items()):
        card = entry["card"]
        kind = [card["family"], ", ".join(card["tasks"]), f"learns: {card['learning']}"]
        kind += ["maps"] if card["produces_maps"] else []
        rows.append("| " + " | ".join(_cell(c) for c in (f"`{name}`", " · ".join(kind), card["description"])) + " |")
    return "\n".join(rows)


def boards() -> str:
    from harness.boards.files import available_boards, load_board

    rows = ["| board | task | dataset | px | description |", "| --- | --- | --- | --- | --- |"]
    for name in available_boards():
        b = load_board(name)
        rows.append("| " + " | ".join(_cell(c) for c in (f"`{b.name}`", b.task, b.dataset.name, b.resolution,
                                                              b.description)) + " |")  # fmt: skip
    return "\n".join(rows)


def commands() -> str:
    from harness.cli.main import build_parser

    out = []
    for name, parser in _subcommands(build_parser()):
        out += [f"### `xrbench {name}`", "", _cell(parser.description or "").strip(), "", "```text"]
        out += [parser.format_usage().strip(), ""]
        for action in parser._actions:
            if action.help in (None, argparse.SUPPRESS) or isinstance(action, argparse._HelpAction):
                continue
            flags = ", ".join(action.option_strings) or action.dest
            out.append(f"  {flags:<24} {action.help}")
        out += ["```", ""]
    return "\n".join(out)


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """(`data prepare`, parser) for every leaf command, in the order the parser lists them."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                children = _subcommands(sub, f"{prefix}{name} ")
                out += children or [(f"{prefix}{name}", sub)]
    return out
