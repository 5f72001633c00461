"""DENTEX (MICCAI 2023) panoramic radiographs, fully labelled set: COCO-style JSON
(`train_quadrant_enumeration_disease.json`, images in `xrays/` beside it) with a box per
abnormal tooth and three categories per box: quadrant (`category_id_1`, FDI quadrant 1-4),
tooth (`category_id_2`) and diagnosis (`category_id_3`: Impacted, Caries, Periapical Lesion,
Deep Caries).

Only abnormal teeth are boxed and the fully labelled set was assembled for abnormal-tooth
detection, so few if any whole X-rays are free of findings: the anomaly unit is the quadrant.
Each X-ray gives four entries, `<file>#q1` ... `#q4`, cropped from the image at its centre:
FDI quadrant 1 (the patient's upper right) is the image's upper-left quarter, 2 upper-right,
3 lower-right, 4 lower-left. A quadrant is abnormal when a box carries its quadrant number,
normal otherwise. The release has no patient ids: the X-ray is the patient, so the four
quadrants of one X-ray always share a split.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.boards.slices import NO_FINDING
from harness.core.errors import XRBenchError

LABELS = "train_quadrant_enumeration_disease.json"
# FDI quadrant -> (left, top, right, bottom) as fractions of the panoramic image. The image
# cache key holds the crops; the corrupted test sets' key does not: a change here also needs
# a new harness.data.cache.DECODING.
QUADRANT_CROPS = {1: (0.0, 0.0, 0.5, 0.5), 2: (0.5, 0.0, 1.0, 0.5), 3: (0.5, 0.5, 1.0, 1.0), 4: (0.0, 0.5, 0.5, 1.0)}


def labels_file(root: Path) -> Path:
    found = sorted(root.rglob(LABELS))
    if not found:
        raise XRBenchError(f"no {LABELS} under {root}: is this the DENTEX release (training_data/...)?")
    return found[0]


def read_coco(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(images: id, file_name, width, height; boxes: image_id, quadrant, diagnosis, x, y, w, h)."""
    try:
        data = json.loads(path.read_text())
        images = pd.DataFrame(data["images"])[["id", "file_name", "width", "height"]]
        quadrant = {c["id"]: int(c["name"]) for c in data["categories_1"]}
        diagnosis = {c["id"]: c["name"] for c in data["categories_3"]}
        rows = [
            (a["image_id"], quadrant[a["category_id_1"]], diagnosis[a["category_id_3"]], *map(float, a["bbox"]))
            for a in data["annotations"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise XRBenchError(f"{path} is not a DENTEX label file ({type(exc).__name__}: {exc})") from exc
    boxes = pd.DataFrame(rows, columns=["image_id", "quadrant", "diagnosis", "x", "y", "w", "h"])
    unknown = sorted(set(boxes["image_id"]) - set(images["id"]))
    if unknown:
        raise XRBenchError(f"{path}: annotations of image id {unknown[0]}, which its images list lacks")
    return images, boxes


def quadrant_id(file_name: str, quadrant: int) -> str:
    return f"{file_name}#q{quadrant}"


def read_boxes(path: Path) -> pd.DataFrame:
    """Boxes in fractions of their quadrant's crop (a board's `box_space = [1, 1]`), clipped to
    it: a tooth box may cross the image centre."""
    images, boxes = read_coco(path)
    by_id = images.set_index("id")
    out = []
    for box in boxes.itertuples():
        image = by_id.loc[box.image_id]
        left, top, right, bottom = QUADRANT_CROPS[box.quadrant]
        x0, y0 = left * image.width, top * image.height
        width, height = (right - left) * image.width, (bottom - top) * image.height
        x1, y1 = min(max(box.x - x0, 0.0), width), min(max(box.y - y0, 0.0), height)
        x2, y2 = min(max(box.x + box.w - x0, 0.0), width), min(max(box.y + box.h - y0, 0.0), height)
        out.append(
            (
                quadrant_id(image.file_name, box.quadrant),
                box.diagnosis,
                x1 / width,
                y1 / height,
                (x2 - x1) / width,
                (y2 - y1) / height,
            )
        )
    return pd.DataFrame(out, columns=["image_id", "finding", "x", "y", "w", "h"])


def read_dentex(root: Path) -> pd.DataFrame:
    """Four entries per X-ray (see the module docstring); `crop` holds the quadrant's fractions."""
    path = labels_file(root)
    images, boxes = read_coco(path)
    folder = path.parent.relative_to(root) / "xrays"
    found = boxes.groupby(["image_id", "quadrant"])["diagnosis"].agg(lambda d: "|".join(sorted(set(d))))
    rows = []
    for image in images.itertuples():
        for quadrant, crop in QUADRANT_CROPS.items():
            findings = found.get((image.id, quadrant), "")
            rows.append(
                {
                    "image_id": quadrant_id(image.file_name, quadrant),
                    "patient_id": image.file_name,
                    "findings": findings or NO_FINDING,
                    "label": int(bool(findings)),
                    "view": f"Q{quadrant}",
                    "sex": "",
                    "age": -1,
                    "site": "",
                    "path": (folder / image.file_name).as_posix(),
                    "crop": crop,
                }
            )
    return pd.DataFrame(rows)
