"""Backbone cards: what each weights id is, where its file comes from, and what it was pretrained on.

The cards live in `datasets/backbones.toml` (the contamination ledger, extended by pull request).
This module reads and checks the file's shape; `harness.boards.ledger` checks the datasets it
names and decides, per board, whether a run's pretraining saw the board's data.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from harness.core.errors import ParameterError, XRBenchError
from harness.core.paths import SHIPPED, checkout, project_root

GENERIC_LOADERS = ("none", "timm", "open_clip", "file")
XRAY_LOADERS = ("xrv-densenet", "xrv-resnet", "xrv-ae", "dinov2-hf", "clip-vision", "clip-model")
"""How xrbench builds an X-ray backbone: these cards' names are usable as `backbone=`."""
LOADERS = GENERIC_LOADERS + XRAY_LOADERS
REQUIRED = ("title", "architecture", "loader", "source", "licence", "pretraining")
OPTIONAL = (
    "xrv_weights", "file", "folder", "hf_repo", "sha256", "input_size", "input_range", "mean", "std",
    "open_clip_model", "notes",
)  # fmt: skip


class LedgerError(XRBenchError):
    """The ledger file is malformed, or names something it does not define."""


@dataclass(frozen=True)
class Pretraining:
    dataset: str
    split: str
    disjoint_boards: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackboneCard:
    name: str
    title: str
    architecture: str
    loader: str
    source: str
    licence: str
    pretraining: tuple[Pretraining, ...]
    extra: dict = field(default_factory=dict)

    def get(self, key: str, default: object = None) -> object:
        return self.extra.get(key, default)

    def summary(self) -> dict:
        """The card as a run stores it (JSON-ready)."""
        return {
            "name": self.name,
            **{k: getattr(self, k) for k in ("title", "architecture", "loader", "source", "licence")},
            "pretraining": [
                {"dataset": p.dataset, "split": p.split, "disjoint_boards": list(p.disjoint_boards)}
                for p in self.pretraining
            ],
            **self.extra,
        }


@dataclass(frozen=True)
class Ledger:
    cards: dict[str, BackboneCard]
    datasets: dict[str, str]  # datasets declared in the ledger besides the boards' own
    overlaps: dict[str, tuple[str, ...]]  # dataset -> datasets whose images it holds

    def card(self, name: str) -> BackboneCard:
        if name not in self.cards:
            known = ", ".join(self.xray_backbones())
            raise ParameterError(f"backbone {name!r} has no card in datasets/backbones.toml (X-ray backbones: {known})")
        return self.cards[name]

    def xray_backbones(self) -> list[str]:
        return sorted(n for n, c in self.cards.items() if c.loader in XRAY_LOADERS)


def ledger_path() -> Path:
    """`datasets/backbones.toml` of the project (XRBENCH_ROOT may name a project without one:
    then the checkout's, or the copy an installed wheel carries)."""
    for root in (project_root(), checkout(), SHIPPED):
        if root is not None and (root / "datasets" / "backbones.toml").is_file():
            return root / "datasets" / "backbones.toml"
    return project_root() / "datasets" / "backbones.toml"


@lru_cache(maxsize=4)
def _load_cached(path: Path, mtime_ns: int) -> Ledger:
    return parse_ledger(path)


def load_ledger(path: Path | None = None) -> Ledger:
    """The ledger (datasets/backbones.toml unless `path`), checked for shape."""
    path = path or ledger_path()
    try:
        return _load_cached(path, path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise LedgerError(f"{path}: the backbone ledger is missing") from None


def parse_ledger(path: Path) -> Ledger:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LedgerError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"datasets", "overlaps", "backbones"}
    if unknown:
        raise LedgerError(f"{path}: unknown table {sorted(unknown)[0]!r} (tables: datasets, overlaps, backbones)")
    datasets = data.get("datasets", {})
    if not all(isinstance(v, str) for v in datasets.values()):
        raise LedgerError(f"{path}: [datasets] maps each name to its title (a string)")
    overlaps = {k: tuple(v) for k, v in data.get("overlaps", {}).items()}
    cards = {name: _card(path, name, entry) for name, entry in data.get("backbones", {}).items()}
    return Ledger(cards, dict(datasets), overlaps)


def _card(path: Path, name: str, entry: dict) -> BackboneCard:
    where = f"{path}: backbone {name!r}"
    if not isinstance(entry, dict):
        raise LedgerError(f"{where} is not a table")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise LedgerError(f"{where} lacks {missing[0]!r}")
    extra = {k: v for k, v in entry.items() if k not in REQUIRED}
    unknown = set(extra) - set(OPTIONAL)
    if unknown:
        raise LedgerError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if entry["loader"] not in LOADERS:
        raise LedgerError(f"{where}: loader {entry['loader']!r} is not one of {', '.join(LOADERS)}")
    if entry["loader"] in XRAY_LOADERS and not ("input_range" in extra or "mean" in extra):
        raise LedgerError(f"{where}: an X-ray backbone needs input_range or mean/std")
    sha = extra.get("sha256", "")
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise LedgerError(f"{where}: sha256 must be 64 lowercase hex digits or empty")
    return BackboneCard(
        name=name,
        **{k: str(entry[k]) for k in REQUIRED if k != "pretraining"},
        pretraining=tuple(_pretraining(where, p) for p in entry["pretraining"]),
        extra=extra,
    )


def _pretraining(where: str, entry: object) -> Pretraining:
    if not isinstance(entry, dict) or not {"dataset", "split"} <= set(entry):
        raise LedgerError(f"{where}: each pretraining entry needs dataset and split")
    unknown = set(entry) - {"dataset", "split", "disjoint_boards"}
    if unknown:
        raise LedgerError(f"{where}: pretraining entry has unknown key {sorted(unknown)[0]!r}")
    return Pretraining(str(entry["dataset"]), str(entry["split"]), tuple(entry.get("disjoint_boards", ())))


def stored_card(card: str | None, weights_id: str) -> dict:
    """The card a run stores: its weights' card, or for weights that name none (runs stored
    before cards), the card their id implies: random initialisation, ImageNet, or a weights file
    without a card."""
    base = weights_id.split("+")[0]
    guess = "random-init" if base == "none" else "imagenet" if base.endswith(":imagenet") else "weights-file"
    return load_ledger().card(card or guess).summary()
