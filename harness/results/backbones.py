"""The contamination ledger as a table: every backbone card and the datasets its pretraining saw
(for the site's backbones page and `xrbench` users reading it as data)."""

from __future__ import annotations

import pandas as pd

from harness.boards.ledger import UNKNOWN, check_ledger, dataset_title
from harness.core.ledger import XRAY_LOADERS, Ledger


def seen_as_text(ledger: Ledger, dataset: str, split: str) -> str:
    if dataset == UNKNOWN:
        return "unknown data"
    return f"{dataset_title(ledger, dataset)} ({'split unknown' if split == UNKNOWN else split})"


def ledger_table() -> pd.DataFrame:
    """One row per card of `datasets/backbones.toml` (checked against the boards' datasets)."""
    ledger = check_ledger()
    rows = []
    for card in ledger.cards.values():
        seen = [seen_as_text(ledger, p.dataset, p.split) for p in card.pretraining]
        rows.append(
            {
                "name": card.name,
                "title": card.title,
                "architecture": card.architecture,
                "source": card.source,
                "licence": card.licence,
                "sha256": card.get("sha256") or "",
                "pretraining": "; ".join(seen) or "nothing",
                "usable_as_backbone": card.loader in XRAY_LOADERS and card.loader != "xrv-ae",
                "notes": card.get("notes") or "",
            }
        )
    return pd.DataFrame(rows)
