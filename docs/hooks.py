"""mkdocs hooks: the parts of the documentation that are read from the code when the site is
built, so that they cannot drift from it. A page holds a marker, replaced here:

- `<!-- methods -->`: every registered method, from its card (`harness.api.registry`);
- `<!-- boards -->`: every board file (`harness.boards.files`);
- `<!-- cli -->`: every command and option of `xrbench` (`harness.cli.main.build_parser`);
- `<!-- python-api -->`: every function and class `import xrbench` offers, with its signature
  and docstring (`xrbench.__all__`);
- `<!-- metrics -->`: every metric name a run stores, with its label, direction, tasks and
  definition (`harness.core.metrics.METRICS`).
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    markers = {"<!-- methods -->": methods, "<!-- boards -->": boards, "<!-- cli -->": commands,
               "<!-- python-api -->": python_api, "<!-- metrics -->": metrics}  # fmt: skip
    for marker, render in markers.items():
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


def metrics() -> str:
    from harness.core.metrics import METRICS

    rows = ["| name | shown as | better | tasks | what it is |", "| --- | --- | --- | --- | --- |"]
    for group in ("ranking", "decision", "calibration", "uncertainty", "localization", "robustness", "cost"):
        for name, m in METRICS.items():
            if m.group == group:
                better = "lower" if m.lower_is_better else "higher"
                cells = (f"`{name}`", m.label, better, ", ".join(m.tasks), f"*{group}*: {m.about}")
                rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
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


def python_api() -> str:
    """Each function and class of `xrbench.__all__`: its signature and docstring (for a class,
    those of its public methods and properties too); then the exceptions, one line each."""
    import xrbench

    out, errors = [], []
    for name in xrbench.__all__:
        value = getattr(xrbench, name)
        if inspect.isclass(value) and issubclass(value, Exception):
            errors.append(f"| `{name}` | {_cell(_first_paragraph(value) or value.__mro__[1].__name__)} |")
        elif callable(value):
            out += _api_entry(f"xrbench.{name}", value)
            if inspect.isclass(value):
                for member, attribute in vars(value).items():
                    if not member.startswith("_") and attribute.__doc__ and not isinstance(attribute, type):
                        shown = attribute if inspect.isfunction(attribute) else property(doc=attribute.__doc__)
                        out += _api_entry(f"{name}.{member}", shown, level="####")
    return "\n".join([*out, "### Exceptions", "", "| exception | raised for |", "| --- | --- |", *errors])


def _api_entry(title: str, value: Any, level: str = "###") -> list[str]:
    name = title.rpartition(".")[2]
    signature = f"{name}{_signature(value)}" if callable(value) else f"{name}  # an attribute"
    return [f"{level} `{title}`", "", "```python", signature, "```", "", inspect.cleandoc(value.__doc__ or ""), ""]


def _signature(value: Any) -> str:
    """`(a: int, *, b: str = 'x') -> Run`, annotations as written (they are strings here)."""
    sig = inspect.signature(value)
    parts, starred = [], False
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.KEYWORD_ONLY and not starred:
            parts.append("*")
            starred = True
        text = p.name + (f": {p.annotation}" if p.annotation is not p.empty else "")
        parts.append(text + (f" = {p.default!r}" if p.default is not p.empty else ""))
    returns = f" -> {sig.return_annotation}" if sig.return_annotation not in (sig.empty, "None") else ""
    return f"({', '.join(parts)}){returns}"


def _first_paragraph(value: Any) -> str:
    return inspect.cleandoc(value.__doc__ or "").split("\n\n")[0] if value.__doc__ else ""
