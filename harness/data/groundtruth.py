"""Where the findings are: boxes (NIH `BBox_List_2017.csv` layout) and pixel masks, verified by
hash and brought to the board's resolution, for scoring anomaly and saliency maps.

A board's `[ground_truth]` table names the files (relative to the root of the dataset its
test images come from), their SHA-256 and the pixel space of the boxes:

    [ground_truth]
    boxes = "BBox_List_2017.csv"      # Image Index, Finding Label, Bbox [x, y, w, h]
    boxes_sha256 = "..."
    box_space = [1024, 1024]          # width, height of the images the boxes were drawn on
    box_format = "rsna"               # optional: whose layout the boxes file has (default nih)
    masks = "masks.npz"               # optional: one bool array per "<image id>|<finding>"
    masks_sha256 = "..."              # over the masks' contents (`masks_sha256`)

or, for a dataset that publishes masks in its own encoding, no boxes file:

    [ground_truth]
    masks = "train-rle.csv"           # SIIM's run lengths
    masks_sha256 = "..."              # the file's SHA-256
    mask_format = "siim"              # the dataset whose encoding it is

The boxes the box metrics score against then surround each connected region of each mask.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from harness.boards.datasets import DATASETS
from harness.core.errors import DataIntegrityError, XRBenchError
from harness.core.fingerprints import file_sha256

BOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"


@dataclass
class GroundTruth:
    """The test images' ground truth at the board's resolution."""

    boxes: pd.DataFrame  # image_id, finding, x, y, w, h (board pixels)
    resolution: int  # the board's: masks are (resolution, resolution)
    masks: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (image id, finding) -> bool

    @property
    def has_masks(self) -> bool:
        return bool(self.masks)

    @property
    def image_ids(self) -> set[str]:
        """The images with a box or a mask."""
        return set(self.boxes["image_id"].astype(str)) | {image_id for image_id, _ in self.masks}


# --- writing (the synthetic generators) -----------------------------------------------------


def marked_span(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), inclusive, of the rectangle that holds every marked pixel of
    a bool mask; None when nothing is marked. A lesion is a small part of a 1024 px radiograph:
    working inside this rectangle is what makes mask boxes and resizing fast."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])) if len(rows) else None


def mask_boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of every 8-connected region of a bool mask, in pixels, labelled within the
    mask's `marked_span`."""
    span = marked_span(mask)
    if span is None:
        return []
    top, bottom, left, right = span
    labels, _ = ndimage.label(mask[top : bottom + 1, left : right + 1], structure=np.ones((3, 3)))
    regions = ndimage.find_objects(labels)
    return [(left + c.start, top + r.start, c.stop - c.start, r.stop - r.start) for r, c in regions]


def write_ground_truth(folder: Path, masks: list[tuple[str, str, np.ndarray]]) -> dict[str, str]:
    """`BBox_List_2017.csv` (a box per connected region of each mask) and `masks.npz` in
    `folder`; returns their file names and hashes as a board's `[ground_truth]` table holds them."""
    rows = [
        f"{image_id},{finding},{x},{y},{w},{h}\n"
        for image_id, finding, mask in masks
        for x, y, w, h in mask_boxes(mask)
    ]
    (folder / "BBox_List_2017.csv").write_text(BOX_HEADER + "".join(rows))
    arrays = {f"{image_id}|{finding}": mask for image_id, finding, mask in masks}
    np.savez_compressed(folder / "masks.npz", **arrays)
    return {
        "boxes": "BBox_List_2017.csv",
        "boxes_sha256": file_sha256(folder / "BBox_List_2017.csv"),
        "masks": "masks.npz",
        "masks_sha256": masks_sha256(arrays),
    }


def ensure_ground_truth(folder: Path, masks: Callable[[], list[tuple[str, str, np.ndarray]]]) -> dict[str, str]:
    """A generated dataset's ground truth, written once beside it (`ground_truth.json` holds
    the `[ground_truth]` entries a board copies)."""
    record = folder / "ground_truth.json"
    if not record.exists():
        entries = write_ground_truth(folder, masks())
        record.write_text(json.dumps(entries, indent=1) + "\n")
    return json.loads(record.read_text())


def masks_sha256(masks: dict[str, np.ndarray]) -> str:
    """Content hash of masks (keys in order, shapes, bits): a zip's own bytes carry dates."""
    h = hashlib.sha256()
    for key in sorted(masks):
        mask = np.asarray(masks[key], dtype=bool)
        h.update(f"{key}|{mask.shape}|".encode())
        h.update(np.packbits(mask).tobytes())
    return h.hexdigest()


# --- reading (every board) -----------------------------------------------------------------------


def box_reader(spec: dict) -> Callable[[Path], pd.DataFrame]:
    """The reader of a `[ground_truth]` table's boxes file layout (`box_format`: the dataset whose
    layout it has, NIH's by default; the board file checks the name): image_id, finding, x, y,
    w, h per box."""
    reader = DATASETS.get(spec.get("box_format", "nih")).boxes
    assert reader is not None, "boards.spec refuses a box_format without a boxes reader"
    return reader.load()


def read_boxes(
    path: Path,
    known_images: set[str],
    known_findings: set[str],
    reader: Callable[[Path], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The boxes of a boxes file, refusing a box of an unknown image or finding, or one with no
    area, naming the file and the line."""
    try:
        boxes = (reader or box_reader({}))(path)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise DataIntegrityError(f"boxes file {path} is not readable: {exc}") from exc
    for row, box in boxes.iterrows():
        where = f"{path}, line {row + 2}"
        if box["image_id"] not in known_images:
            raise DataIntegrityError(f"{where}: a box for image {box['image_id']}, which the dataset does not have")
        if box["finding"] not in known_findings:
            raise DataIntegrityError(
                f"{where}: finding {box['finding']!r} is not one of the dataset's ({', '.join(sorted(known_findings))})"
            )
        if not (box["w"] > 0 and box["h"] > 0) or box[["x", "y", "w", "h"]].isna().any():
            raise DataIntegrityError(f"{where}: a box needs a positive width and height, not {box['w']} x {box['h']}")
    return boxes


def check_inside(boxes: pd.DataFrame, space: tuple[float, float], path: Path) -> None:
    width, height = space
    outside = (boxes["x"] < -0.5) | (boxes["y"] < -0.5)
    outside |= (boxes["x"] + boxes["w"] > width + 0.5) | (boxes["y"] + boxes["h"] > height + 0.5)
    if outside.any():
        row = int(outside.to_numpy().nonzero()[0][0])
        box = boxes.iloc[row]
        raise DataIntegrityError(
            f"{path}, line {row + 2}: box ({box['x']:g}, {box['y']:g}, {box['w']:g}, {box['h']:g}) of "
            f"{box['image_id']} is outside the {width:g} x {height:g} image"
        )


def read_masks(path: Path, expected_sha256: str | None) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as archive:
            masks = {key: archive[key].astype(bool) for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataIntegrityError(f"masks file {path} is not readable: {exc}") from exc
    actual = masks_sha256(masks)
    if expected_sha256 and actual != expected_sha256:
        raise DataIntegrityError(f"masks file {path} has content SHA-256 {actual}, not the board's {expected_sha256}")
    return masks


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask at (height, width): the pixels at least half covered by the original mask,
    their covered area counted exactly in integers (no rounding decides a borderline pixel).
    Only the output pixels the marked pixels touch are computed: a lesion on a 1024 px
    radiograph resizes in well under a millisecond."""
    (height, width), (h, w) = mask.shape, size
    out, span = np.zeros(size, dtype=bool), marked_span(mask)
    if span is None:
        return out
    top, bottom, left, right = span
    r0, r1 = (top * h) // height, -((-(bottom + 1) * h) // height)  # output rows touched
    c0, c1 = (left * w) // width, -((-(right + 1) * w) // width)
    y0, y1 = (r0 * height) // h, -((-r1 * height) // h)  # the input rows under them
    x0, x1 = (c0 * width) // w, -((-c1 * width) // w)
    # The covered area times h * w: whole numbers below 2**53, so float64 products (BLAS) are exact.
    covered = _overlaps(height, h, r0, r1, y0, y1) @ mask[y0:y1, x0:x1].astype(np.float64)
    covered = covered @ _overlaps(width, w, c0, c1, x0, x1).T
    out[r0:r1, c0:c1] = 2 * covered >= height * width
    return out


def _overlaps(n_in: int, n_out: int, lo: int, hi: int, first: int, last: int) -> np.ndarray:
    """(hi - lo, last - first): n_out times the length of input pixel i (first <= i < last)
    inside output pixel r (lo <= r < hi), which spans [r * n_in / n_out, (r + 1) * n_in / n_out)."""
    r, i = np.arange(lo, hi)[:, None], np.arange(first, last)[None, :]
    overlap = np.minimum((i + 1) * n_out, (r + 1) * n_in) - np.maximum(i * n_out, r * n_in)
    return np.clip(overlap, 0, None).astype(np.float64)


def scale_boxes(boxes: pd.DataFrame, space: tuple[float, float], size: tuple[int, int]) -> pd.DataFrame:
    """Boxes from `space` (width, height) to an image of `size` (height, width)."""
    sx, sy = size[1] / space[0], size[0] / space[1]
    return boxes.assign(x=boxes["x"] * sx, y=boxes["y"] * sy, w=boxes["w"] * sx, h=boxes["h"] * sy)


def load_ground_truth(
    spec: dict, root: Path, images: pd.DataFrame, known_images: set[str], resolution: int, where: str
) -> GroundTruth:
    """Ground truth of `images` (manifest rows) from a board's `[ground_truth]` table, files
    read from `root`, verified by hash, at (resolution, resolution)."""
    on_board = set(images["image_id"])
    size = (resolution, resolution)
    if spec.get("mask_format"):
        return _encoded_masks(spec, root, on_board, size, where)
    boxes_path = root / spec["boxes"]
    _check_file(boxes_path, spec.get("boxes_sha256"), where, "boxes")
    findings = {f for fs in images["findings"].astype(str).str.split("|") for f in fs} | set(spec.get("findings", ()))
    space = spec.get("box_space")
    if not (isinstance(space, list) and len(space) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in space)):
        raise XRBenchError(f"{where}: [ground_truth] box_space must be [width, height] in pixels, not {space!r}")
    boxes = read_boxes(boxes_path, known_images, findings, box_reader(spec))
    check_inside(boxes, tuple(space), boxes_path)
    boxes = scale_boxes(boxes[boxes["image_id"].isin(on_board)].reset_index(drop=True), tuple(space), size)
    masks = {}
    if spec.get("masks"):
        for key, mask in read_masks(root / spec["masks"], spec.get("masks_sha256")).items():
            image_id, _, finding = key.rpartition("|")
            if image_id in on_board:
                masks[(image_id, finding)] = resize_mask(mask, size)
    return GroundTruth(boxes, resolution, masks)


def _check_file(path: Path, expected: str | None, where: str, what: str) -> None:
    if not path.is_file():
        raise DataIntegrityError(f"{where}: its {what} file {path} does not exist")
    actual = file_sha256(path)
    if expected and actual != expected:
        raise DataIntegrityError(
            f"{where}: {what} file {path} has SHA-256 {actual}, but the board was frozen with "
            f"{expected}; the localization results would not be comparable"
        )


def _encoded_masks(spec: dict, root: Path, on_board: set[str], size: tuple[int, int], where: str) -> GroundTruth:
    """Masks from a dataset's own encoding (`mask_format`, such as SIIM's run lengths), decoded
    for the board's images only; the boxes scored by the box metrics surround each connected
    region of each mask, in the mask's own pixels, then at the board's resolution."""
    path = root / spec["masks"]
    _check_file(path, spec.get("masks_sha256"), where, "masks")
    reader = DATASETS.get(spec["mask_format"]).masks
    assert reader is not None, "boards.files refuses a mask_format without a masks reader"
    native = reader.load()(path, on_board)
    by_space: dict[tuple[int, int], list[tuple]] = {}  # (width, height) of the masks -> their boxes
    for (image_id, finding), mask in native.items():
        space = (mask.shape[1], mask.shape[0])
        by_space.setdefault(space, []).extend((image_id, finding, *box) for box in mask_boxes(mask))
    columns = ["image_id", "finding", "x", "y", "w", "h"]
    frames = [scale_boxes(pd.DataFrame(rows, columns=columns).astype({c: float for c in "xywh"}), space, size)
              for space, rows in by_space.items()]  # fmt: skip
    empty = pd.DataFrame(columns=columns).astype({c: float for c in "xywh"})
    boxes = pd.concat(frames, ignore_index=True) if frames else empty
    masks = {key: resize_mask(mask, size) for key, mask in native.items()}
    return GroundTruth(boxes, size[0], masks)


def truth_of(truth: GroundTruth | None, image_id: str, finding: str) -> tuple[np.ndarray | None, list]:
    """The mask (bool, board resolution) and boxes (board pixels) of an image's finding, or of
    all its findings."""
    if truth is None:
        return None, []
    wanted = (lambda f: f == finding) if finding else (lambda f: True)
    own = truth.boxes[(truth.boxes["image_id"] == image_id) & truth.boxes["finding"].map(wanted)]
    masks = [m for (i, f), m in truth.masks.items() if i == image_id and wanted(f)]
    return (np.logical_or.reduce(masks) if masks else None), own[["x", "y", "w", "h"]].round(2).to_numpy().tolist()
