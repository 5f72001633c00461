"""Reader for the NIH ChestX-ray14 metadata table (`Data_Entry_2017.csv` layout).

The synthetic chest dataset writes the same layout, so one code path serves both.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.boards.slices import NO_FINDING
from harness.core.errors import XRBenchError
from harness.data.adapters.base import NIH_COLUMNS

REQUIRED = NIH_COLUMNS[:7]


def read_data_entry(path: Path) -> pd.DataFrame:
    """Normalise the table to `ENTRY_COLUMNS` (and `follow_up`)."""
    try:
        raw = pd.read_csv(path, dtype={"Image Index": str, "Finding Labels": str, "Patient ID": str})
    except pd.errors.EmptyDataError:
        raise XRBenchError(f"NIH metadata table {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, FileNotFoundError) as exc:
        raise XRBenchError(f"cannot read NIH metadata table {path}: {exc}") from exc
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise XRBenchError(f"{path} lacks the NIH columns {missing}; found {list(raw.columns)}")
    findings = raw["Finding Labels"].fillna("").str.strip()
    if (findings == "").any():
        row = int((findings == "").to_numpy().nonzero()[0][0]) + 2
        raise XRBenchError(f"{path}, line {row}: empty 'Finding Labels'")
    return pd.DataFrame(
        {
            "image_id": raw["Image Index"],
            "patient_id": raw["Patient ID"],
            "follow_up": whole_numbers(raw, "Follow-up #", path),
            "age": whole_numbers(raw, "Patient Age", path),
            "sex": raw["Patient Gender"],
            "view": raw["View Position"],
            "findings": findings,
            "label": (findings != NO_FINDING).astype(int),
            "site": raw["Site"] if "Site" in raw.columns else "",
        }
    )


def whole_numbers(raw: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A column of whole numbers; ages may carry the DICOM year suffix of early releases
    ('058Y'). Anything else is refused, naming the file, the line and the value."""
    text = raw[column].astype(str).str.strip().str.removesuffix("Y")
    numbers = pd.to_numeric(text, errors="coerce")
    bad = numbers.isna() | (numbers % 1 != 0) | (numbers < 0)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        value = raw[column].iloc[row]
        shown = "nothing" if pd.isna(value) or str(value).strip() == "" else repr(value)
        raise XRBenchError(f"{path}, line {row + 2}: column {column!r} holds {shown}, not a whole number")
    return numbers.astype(int)


def official_split(root: Path) -> dict[str, str]:
    """image -> 'train_val' or 'test' from the release's lists; empty when they are absent."""
    out: dict[str, str] = {}
    for name, split in (("train_val_list.txt", "train_val"), ("test_list.txt", "test")):
        path = root / name
        if path.exists():
            out.update({line.strip(): split for line in path.read_text().splitlines() if line.strip()})
    return out


def locate_images(root: Path) -> dict[str, str]:
    """image file name -> path relative to `root`, for `images/` or `images_001/images/` ...."""
    found: dict[str, str] = {}
    for folder in [root / "images", *sorted(root.glob("images_*/images"))]:
        if folder.is_dir():
            for path in folder.iterdir():
                found.setdefault(path.name, path.relative_to(root).as_posix())
    return found


BOX_FINDINGS = {"Infiltrate": "Infiltration"}
"""BBox_List_2017.csv names one finding otherwise than Data_Entry_2017.csv does."""


def read_bbox_list(path: Path) -> pd.DataFrame:
    """`BBox_List_2017.csv`: image_id, finding (named as in Data_Entry_2017.csv), x, y, w, h in
    the pixels of the released PNGs (1024 x 1024 for NIH), not of the original acquisitions."""
    raw = pd.read_csv(path)
    box = [c for c in raw.columns if c.startswith("Bbox")]
    if "Image Index" not in raw.columns or "Finding Label" not in raw.columns or not box:
        raise XRBenchError(f"{path} lacks the NIH box columns (Image Index, Finding Label, Bbox [x,y,w,h])")
    start = raw.columns.get_loc(box[0])
    values = raw.iloc[:, start : start + 4].astype(float).to_numpy()
    return pd.DataFrame(
        {
            "image_id": raw["Image Index"],
            "finding": raw["Finding Label"].map(lambda f: BOX_FINDINGS.get(f, f)),
            "x": values[:, 0],
            "y": values[:, 1],
            "w": values[:, 2],
            "h": values[:, 3],
        }
    )


def read_nih(root: Path, labels: str = "nih") -> pd.DataFrame:
    """Entries for a local NIH ChestX-ray14 copy: `path` is relative to `root`;
    `official_split` comes from the release's lists ('' when absent). With `labels =
    "experts"`, the images Google's radiologists adjudicated carry their labels instead
    (`expert_labelled`)."""
    if labels not in ("nih", "experts"):
        raise XRBenchError(f"nih option labels = {labels!r}: choose nih (the text-mined labels) or experts")
    table = next((root / n for n in ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv") if (root / n).exists()), None)
    if table is None:
        raise XRBenchError(f"{root} has no Data_Entry_2017.csv (or _v2020): is this the NIH ChestX-ray14 root?")
    entries = read_data_entry(table)
    split = official_split(root)
    located = locate_images(root)
    entries["official_split"] = [split.get(i, "") for i in entries["image_id"]]
    entries["path"] = entries["image_id"].map(lambda i: located.get(i, f"images/{i}"))
    return expert_labelled(entries, root / EXPERT_LABELS) if labels == "experts" else entries


EXPERT_LABELS = "google2019_nih-chest-xray-labels.csv"
EXPERT_FINDINGS = ("Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass")


def expert_labelled(entries: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The entries with Google's adjudicated labels (Majkowska et al., Radiology 2020) on the
    4,376 images they cover: `findings` the experts' YES findings (or "No Finding" when all
    four are NO), `label` 1 when any is YES, `official_split` their set ("val" or "test"),
    `nih_findings` NIH's text-mined findings, and `nih_agrees` whether NIH's normal-or-abnormal
    is the experts'. Other images keep NIH's labels, `official_split` "" and `nih_agrees` ""."""
    if not path.exists():
        raise XRBenchError(f"{path} is missing: the combined expert label file torchxrayvision publishes "
                           f"({EXPERT_LABELS}); put it beside Data_Entry_2017.csv")  # fmt: skip
    experts = pd.read_csv(path, dtype={"Image Index": str, "Set Id": str})
    missing = [c for c in ("Image Index", "Set Id", *EXPERT_FINDINGS) if c not in experts.columns]
    if missing:
        raise XRBenchError(f"{path} lacks the expert label columns {missing}")
    values = experts[list(EXPERT_FINDINGS)]
    bad = ~values.isin(["YES", "NO"]).all(axis=1) | ~experts["Set Id"].isin(["val", "test"])
    if bad.any():
        raise XRBenchError(f"{path}, line {int(bad.to_numpy().nonzero()[0][0]) + 2}: findings must be YES or NO, "
                           "and Set Id val or test")  # fmt: skip
    unknown = sorted(set(experts["Image Index"]) - set(entries["image_id"]))
    if unknown:
        raise XRBenchError(f"{path}: {len(unknown)} images are not in the NIH table (first: {unknown[0]})")
    yes = values == "YES"
    named = yes.apply(lambda row: "|".join(f for f in EXPERT_FINDINGS if row[f]) or NO_FINDING, axis=1)
    by_image = pd.DataFrame({"findings": named.to_numpy(), "label": yes.any(axis=1).astype(int).to_numpy(),
                             "split": experts["Set Id"].to_numpy()}, index=experts["Image Index"])  # fmt: skip
    listed = entries["image_id"].isin(by_image.index)
    own = by_image.reindex(entries["image_id"]).set_axis(entries.index)
    out = entries.assign(nih_findings=entries["findings"], official_split="", nih_agrees="")
    out.loc[listed, "findings"] = own.loc[listed, "findings"]
    out.loc[listed, "label"] = own.loc[listed, "label"].astype(int)
    out.loc[listed, "official_split"] = own.loc[listed, "split"]
    agrees = (entries["label"] == own["label"]).map({True: "agrees", False: "differs"})
    out.loc[listed, "nih_agrees"] = agrees[listed]
    return out
