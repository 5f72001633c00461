"""Published splits that were code, not lists: a board's `[split] recipe` rebuilds the lists
from the dataset's own files when it is frozen (`harness.boards.lists`), so that nothing
derived from a licensed dataset's labels is committed. The lists can also be written out:

    python -m harness.boards.recipes upd-chexpert path/to/train.csv upd-chexpert-lists.json

UPD (Lagogiannis et al., "Unsupervised Pathology Detection: A Deep Dive Into the State of the
Art", IEEE TMI 2023) wrote per-sex lists from CheXpert-v1.0-small's `train.csv`, in file order,
and drew its default effusion split from them with torch's seeded permutations:
- lists: frontal images with `Age > '18'` (compared as strings, as UPD does), `AP/PA == 'AP'`
  and `Support Devices != '1.0'` (an uncertain -1 stays in); normal: `No Finding == '1.0'`;
  effusion: `Pleural Effusion == '1.0'` and none of `EFFUSION_EXCLUDES` equal to `'1.0'`;
- the female and male normal lists are cut to the shorter's length; images 200 on of each are
  the training pool, permuted with seed 42: the first 95% train, the rest validation normals;
- the first 200 of each normal list are the test normals, and the first 400 of the female then
  male effusion lists (cut to equal length) the test effusions; with seed 42 again, one
  permutation orders the normals and the next the effusions; the first 90% of each is the
  reported test set and the last 10% the validation images UPD trains with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

from harness.core.errors import XRBenchError

EFFUSION_EXCLUDES = ("Enlarged Cardiomediastinum", "Lung Opacity", "Fracture", "Pleural Other", "Pneumothorax")
UPD_SEED = 42
N_TEST_PER_SEX = 200
TRAIN_SHARE = 0.95
TEST_SHARE = 0.9


def upd_list(table: pd.DataFrame, sex: str, kind: str) -> list[str]:
    """One of UPD's `<sex>_<normal|anomal_effusion>_..._AP_no_sup` lists: `Path` values in file
    order. `table` is train.csv read as strings, blanks as empty strings."""
    rows = (
        (table["Frontal/Lateral"] == "Frontal")
        & (table["Age"] > "18")
        & (table["AP/PA"] == "AP")
        & (table["Support Devices"] != "1.0")
        & (table["Sex"] == sex)
    )
    if kind == "normal":
        rows &= table["No Finding"] == "1.0"
    else:
        rows &= table["Pleural Effusion"] == "1.0"
        for finding in EFFUSION_EXCLUDES:
            rows &= table[finding] != "1.0"
    return table.loc[rows, "Path"].tolist()


def _permuted(items: list[str], generator: torch.Generator) -> list[str]:
    return [items[k] for k in torch.randperm(len(items), generator=generator).tolist()]


def upd_chexpert_split(table: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """UPD's default effusion split, as image ids (the `Path` without its release folder)."""
    normal = [upd_list(table, sex, "normal") for sex in ("Female", "Male")]
    effusion = [upd_list(table, sex, "effusion") for sex in ("Female", "Male")]
    normal = [paths[: min(map(len, normal))] for paths in normal]
    effusion = [paths[: min(map(len, effusion))] for paths in effusion]
    pool = normal[0][N_TEST_PER_SEX:] + normal[1][N_TEST_PER_SEX:]
    generator = torch.Generator().manual_seed(UPD_SEED)
    pool = _permuted(pool, generator)
    n_train = int(len(pool) * TRAIN_SHARE)
    test_normal = normal[0][:N_TEST_PER_SEX] + normal[1][:N_TEST_PER_SEX]
    test_effusion = (effusion[0] + effusion[1])[: len(test_normal)]
    generator = torch.Generator().manual_seed(UPD_SEED)
    test_normal, test_effusion = _permuted(test_normal, generator), _permuted(test_effusion, generator)
    n_test = int(len(test_normal) * TEST_SHARE)
    split = {
        "train": {"normal": pool[:n_train]},
        "val": {"normal_pool": pool[n_train:], "normal": test_normal[n_test:], "effusion": test_effusion[n_test:]},
        "test": {"normal": test_normal[:n_test], "effusion": test_effusion[:n_test]},
    }
    return {part: {name: [p.split("/", 1)[1] for p in paths] for name, paths in lists.items()}
            for part, lists in split.items()}  # fmt: skip


def read_train_csv(path: Path) -> pd.DataFrame:
    """CheXpert's train.csv with every value a string, as UPD's list writer compared them."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise XRBenchError(f"cannot read CheXpert table {path}: {exc}") from exc
    needed = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Pleural Effusion", "Support Devices",
              *EFFUSION_EXCLUDES]  # fmt: skip
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise XRBenchError(f"{path} lacks the CheXpert columns {missing}")
    return table


# recipe name -> (the dataset file it reads, relative to the dataset's root; what makes the lists)
RECIPES = {"upd-chexpert": ("train.csv", lambda path: upd_chexpert_split(read_train_csv(path)))}


def run_recipe(name: str, root: Path) -> dict:
    """The lists a recipe makes from the dataset's files in `root`, as nested tables of ids."""
    if name not in RECIPES:
        raise XRBenchError(f"unknown split recipe {name!r} (known: {', '.join(RECIPES)})")
    file, make = RECIPES[name]
    return make(root / file)


def write_lists(lists: dict, out: Path) -> None:
    out.write_text(json.dumps(lists, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "upd-chexpert":
        sys.exit("usage: python -m harness.boards.recipes upd-chexpert TRAIN_CSV OUT_JSON")
    write_lists(upd_chexpert_split(read_train_csv(Path(sys.argv[2]))), Path(sys.argv[3]))
