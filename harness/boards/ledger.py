"""The contamination ledger against the boards: did a run's pretraining see the board's data?

`datasets/backbones.toml` (read by `harness.core.ledger`) lists each card's pretraining datasets;
here they are checked against the datasets boards are built from, and a run's card is judged on
a board: every pretraining dataset that is the board's own (or holds its images) gives a mark,
and unless the card shows that split disjoint from the board's test split, the run is possibly
contaminated.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.boards.datasets import DATASETS
from harness.core.ledger import Ledger, LedgerError, load_ledger

UNKNOWN = "unknown"


def dataset_title(ledger: Ledger, name: str) -> str:
    if name in DATASETS.names():
        return DATASETS.get(name).title
    return ledger.datasets.get(name, name)


def check_ledger(ledger: Ledger | None = None) -> Ledger:
    """The ledger, refused in one line when a card or an overlap names an unknown dataset."""
    ledger = ledger or load_ledger()
    known = set(DATASETS.names()) | set(ledger.datasets) | {UNKNOWN}
    clash = set(DATASETS.names()) & set(ledger.datasets)
    if clash:
        raise LedgerError(f"ledger [datasets] redeclares a board dataset: {sorted(clash)[0]!r}")
    for card in ledger.cards.values():
        for entry in card.pretraining:
            if entry.dataset not in known:
                raise LedgerError(
                    f"ledger card {card.name!r} names unknown dataset {entry.dataset!r} (declare it under "
                    "[datasets], or use a dataset of harness/boards/datasets.py)"
                )
    for name, holds in ledger.overlaps.items():
        for dataset in (name, *holds):
            if dataset not in known:
                raise LedgerError(f"ledger [overlaps] names unknown dataset {dataset!r}")
    return ledger


@dataclass(frozen=True)
class Contamination:
    marks: tuple[str, ...]  # "pretraining saw NIH ChestX-ray14", one per dataset seen
    reason: str | None  # why the run is ranked apart; None when it is not

    @property
    def possibly_contaminated(self) -> bool:
        return self.reason is not None


def with_overlaps(datasets: set[str], ledger: Ledger) -> set[str]:
    """The datasets whose images these datasets hold (themselves, and those they overlap)."""
    return datasets | {held for name in datasets for held in ledger.overlaps.get(name, ())}


def contamination(card: dict, board: str, datasets: set[str], ledger: Ledger | None = None) -> Contamination:
    """Judge a run's stored card (`BackboneCard.summary()`) on `board`, whose images come from
    `datasets` (`harness.boards.spec.board_datasets`). The ledger's current card of the same
    name is used when there is one, so that a corrected ledger corrects old runs."""
    ledger = ledger or load_ledger()
    if card.get("name") in ledger.cards:
        card = ledger.cards[card["name"]].summary()
    tested = with_overlaps(datasets, ledger)
    marks, reasons = [], []
    for entry in card.get("pretraining", []):
        seen = {entry["dataset"]} | set(ledger.overlaps.get(entry["dataset"], ()))
        if entry["dataset"] == UNKNOWN:
            marks.append("pretraining data unknown")
            reasons.append(f"{card.get('title', card.get('name'))}: its pretraining data are unknown")
            continue
        for dataset in sorted(seen & tested):
            title = dataset_title(ledger, dataset)
            marks.append(f"pretraining saw {title}")
            if board not in entry.get("disjoint_boards", []):
                reasons.append(
                    f"{card.get('title', card.get('name'))} was pretrained on {title} ({_split(entry['split'])}), "
                    "not shown disjoint from this board's test split"
                )
    return Contamination(tuple(dict.fromkeys(marks)), "; ".join(dict.fromkeys(reasons)) or None)


def _split(split: str) -> str:
    return "split unknown" if split == UNKNOWN else split
