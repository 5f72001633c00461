"""The backbones page: every card of the contamination ledger (`datasets/backbones.toml`), with
the datasets its pretraining saw, so that a mark on a board page can be traced to its source."""

from __future__ import annotations

from harness.results.backbones import ledger_table
from harness.site.render import Pages


def backbones_page(pages: Pages) -> None:
    pages.write("backbones.html", "backbones.html", table=pages.export(ledger_table(), "backbones"))
