"""Where is the anomaly? Localization metrics of maps against masks and boxes, with 95%
patient-bootstrap intervals.

Masks (pixel level, the medical anomaly-detection benchmarks' conventions):
- `pixel_auroc`: AUROC over every test pixel (normal images' pixels are all negative).
  Exact under resampling too: a resample weighs each image by the number of times its patient was
  drawn, and the AUROC is `w' C w / (P N)` with C[i, j] the number of (positive pixel of i,
  negative pixel of j) pairs ordered correctly (ties half), computed once.
- `aupro`: area under the per-region-overlap curve up to a false-positive rate of 0.3, divided
  by 0.3; each connected ground-truth region counts equally (MVTec AD).
- `dice`: the best Dice over thresholds, pixels pooled over the test set (the threshold is
  chosen on the test set itself, as MedIAnomaly reports it: an optimistic figure).
- `aupimo`: the mean over abnormal images of each one's area under its per-image overlap
  curve (the share of its ground-truth pixels above a threshold) against the false-positive
  rate of normal images' pixels, on a log scale from 1e-5 to 1e-4, divided by that range
  (Bertoldo et al., 2024): how much of each lesion a map finds while almost no normal pixel
  fires. Every distinct normal score in the range is a vertex, joined linearly in log FPR
  and interpolated at the range's ends; the FPR pools the normal images' pixels (their
  per-image FPRs averaged, since all maps have one size). Its interval resamples the abnormal
  images' patients with the normal images' ruler held fixed. It needs at least 100,000 normal
  pixels, so that 1e-5 is one pixel: fewer gives no number.
The point values of AUPRO and Dice are exact; their intervals come from the same resamples,
with per-image counts at `GRID` thresholds (quantiles of the scores).

Boxes (the ChestX-ray8 protocol), per (image, finding) pair with boxes:
- `pointing_game`: the map's maximum lies inside a box of that finding;
- `iobb@T`: a connected region of the map above the validation level (the value exceeded by 5%
  of the pixels of normal validation images) has an intersection over its own bounding box of
  at least T with a box of that finding. Regions smaller than `MIN_REGION_SHARE` of the map
  are speckle, not a localization: their tiny boxes would lie inside any finding's box.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from harness.core.errors import DataIntegrityError
from harness.core.maps import decode
from harness.core.metrics import IOBB_LEVELS, names
from harness.data.groundtruth import GroundTruth, resize_mask, scale_boxes
from harness.scoring.metrics import MetricValue
from harness.scoring.resampling import patient_draws

FPR_LIMIT = 0.3
GRID = 1000
PIXEL_METRICS = ("pixel_auroc", "aupro", "dice", "aupimo")  # against masks
AUPIMO_FPR = (1e-5, 1e-4)  # the normal pixels' false-positive rates AUPIMO integrates between
BOX_METRICS = ("pointing_game", *(f"iobb@{t}" for t in IOBB_LEVELS))  # against boxes
METRICS = names("localization")  # both, as harness.core.metrics lists them (tested)
NORMAL_PIXEL_QUANTILE = 0.95
MIN_REGION_SHARE = 0.01
NAN = float("nan")


@dataclass
class Pixels:
    """One map per image, with its ground truth, at the same (h, w)."""

    scores: list[np.ndarray]  # (h, w) float64
    truth: list[np.ndarray]  # (h, w) bool; all False for an image without the finding

    def __post_init__(self) -> None:
        self.positives = np.array([t.sum() for t in self.truth], dtype=np.float64)
        self.negatives = np.array([t.size - t.sum() for t in self.truth], dtype=np.float64)


def image_weights(groups: np.ndarray, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Per resample, how many times each image is drawn (its patient's count): the draws of
    `harness.scoring.resampling.patient_draws`, so image and pixel metrics resample alike."""
    inverse, draws = patient_draws(groups, n_resamples, seed)
    n_patients = int(inverse.max()) + 1 if len(inverse) else 0
    for drawn in draws:
        yield np.bincount(drawn, minlength=n_patients)[inverse].astype(np.float64)


def interval(values: list[float]) -> tuple[float, float]:
    if not values:
        return NAN, NAN
    lo, hi = np.quantile(values, [0.025, 0.975])
    return float(lo), float(hi)


# --- pixel metrics ---------------------------------------------------------------------------------


def region_weights(pixels: Pixels) -> tuple[list[np.ndarray], np.ndarray]:
    """Per image, each positive pixel's share of its connected region (1 / region size), and
    the number of regions per image."""
    shares, counts = [], []
    for truth in pixels.truth:
        labels, n = ndimage.label(truth, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)
        shares.append(np.where(labels > 0, 1.0 / np.maximum(sizes[labels], 1), 0.0))
        counts.append(n)
    return shares, np.array(counts, dtype=np.float64)


class Pooled:
    """Every pixel of a set of maps in one array, sorted by score, highest first, with its
    truth, its share of its ground-truth region and its image."""

    def __init__(self, pixels: Pixels):
        shares, self.regions = region_weights(pixels)
        scores = np.concatenate([s.ravel() for s in pixels.scores])
        order = np.argsort(-scores, kind="stable")
        self.scores = scores[order]
        self.truth = np.concatenate([t.ravel() for t in pixels.truth])[order]
        self.share = np.concatenate([s.ravel() for s in shares])[order]
        self.image = np.repeat(np.arange(len(pixels.scores)), [s.size for s in pixels.scores])[order]
        self.ends = np.flatnonzero(np.r_[self.scores[1:] != self.scores[:-1], True])  # last pixel of each tie

    def auroc(self) -> float:
        """Positives above negatives, ties counted half, over all pairs."""
        positive = np.cumsum(self.truth)[self.ends]
        negative = np.cumsum(~self.truth)[self.ends]
        pos, neg = np.diff(np.r_[0, positive]), np.diff(np.r_[0, negative])
        n_pos, n_neg = positive[-1], negative[-1]
        return float((pos * (n_neg - negative + 0.5 * neg)).sum() / (n_pos * n_neg))

    def aupro(self) -> float:
        if self.regions.sum() == 0:
            return NAN
        fpr = np.cumsum(~self.truth)[self.ends] / max((~self.truth).sum(), 1)
        return _area_to_limit(fpr, np.cumsum(self.share)[self.ends] / self.regions.sum())

    def dice(self) -> float:
        tp, predicted = np.cumsum(self.truth)[self.ends], self.ends + 1
        return float((2 * tp / (predicted + self.truth.sum())).max())

    def histograms(self, n_images: int, n_bins: int = GRID) -> dict[str, np.ndarray]:
        """(images, bins) counts of negative, positive and all pixels and sums of region shares,
        in bins of about equal size by score, in increasing order: a bin never splits a tie."""
        distinct = self.scores[self.ends][::-1]
        sampled = self.scores[np.linspace(0, len(self.scores) - 1, n_bins).astype(int)]
        edges = distinct if len(distinct) <= n_bins else np.unique(sampled)
        bins = np.searchsorted(edges, self.scores, "right") - 1
        key = self.image * len(edges) + bins
        size = n_images * len(edges)

        def count(weights: np.ndarray) -> np.ndarray:
            return np.bincount(key, weights=weights, minlength=size).reshape(n_images, len(edges))

        return {
            "negative": count((~self.truth).astype(float)),
            "positive": count(self.truth.astype(float)),
            "share": count(self.share),
            "all": count(np.ones(len(self.scores))),
        }


def _area_to_limit(fpr: np.ndarray, pro: np.ndarray, limit: float = FPR_LIMIT) -> float:
    """Area under pro(fpr) from 0 to `limit` (curve from (0, 0), linear between points,
    interpolated at the limit), divided by the limit."""
    fpr, pro = np.r_[0.0, fpr], np.r_[0.0, pro]
    keep = fpr <= limit
    x, y = fpr[keep], pro[keep]
    if keep.sum() < len(fpr):
        k = int(keep.sum())
        t = (limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1]) if fpr[k] > fpr[k - 1] else 0.0
        x, y = np.r_[x, limit], np.r_[y, pro[k - 1] + t * (pro[k] - pro[k - 1])]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / limit)


def pixel_auroc(pixels: Pixels) -> float:
    return Pooled(pixels).auroc()


def aupro(pixels: Pixels) -> float:
    """Exact: every distinct score is a threshold."""
    return Pooled(pixels).aupro()


def best_dice(pixels: Pixels) -> float:
    """Exact: the best Dice over every distinct threshold, pixels pooled."""
    return Pooled(pixels).dice() if any(t.any() for t in pixels.truth) else NAN


def pair_counts(pixels: Pixels) -> np.ndarray:
    """[i, j]: the positive pixels of image i scored above the negative pixels of image j, ties
    counted half, over all such pairs: exact. Each image's negatives are counted below every
    distinct positive score once, then summed per positive pixel."""
    n = len(pixels.scores)
    positive = [s[t] for s, t in zip(pixels.scores, pixels.truth, strict=True)]
    values, index = np.unique(np.concatenate(positive), return_inverse=True)  # distinct positive scores
    image = np.repeat(np.arange(n), [len(p) for p in positive])
    pairs = np.zeros((n, n))
    for j, (s, t) in enumerate(zip(pixels.scores, pixels.truth, strict=True)):
        negative = s[~t]
        first_not_below = np.searchsorted(values, negative, "left")
        first_above = np.searchsorted(values, negative, "right")  # values[k] > negative for k >= this
        below = np.cumsum(np.bincount(first_above, minlength=len(values) + 1))[: len(values)]
        tied = first_not_below < first_above
        ties = np.bincount(first_not_below[tied], minlength=len(values))
        pairs[:, j] = np.bincount(image, weights=(below + 0.5 * ties)[index], minlength=n)
    return pairs


class Resampled:
    """The pixel metrics of a weighted set of images (a patient-bootstrap resample): the AUROC
    exactly from per-image pair counts, AUPRO and Dice from per-image histograms (exact at the
    bins' edges)."""

    def __init__(self, pooled: Pooled, pixels: Pixels, n_bins: int = GRID):
        h = pooled.histograms(len(pixels.scores), n_bins)
        self.pairs = pair_counts(pixels)
        self.positive, self.negative, self.regions = pixels.positives, pixels.negatives, pooled.regions

        def at_or_above(counts: np.ndarray) -> np.ndarray:  # per image, per edge from the highest down
            return np.cumsum(counts[:, ::-1], axis=1)

        self.neg_above, self.share_above = at_or_above(h["negative"]), at_or_above(h["share"])
        self.pos_above, self.all_above = at_or_above(h["positive"]), at_or_above(h["all"])

    def values(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """The metrics of each resample: `w` is (resamples, images) weights."""
        positives, negatives = w @ self.positive, w @ self.negative
        fpr, pro = (w @ self.neg_above) / negatives[:, None], (w @ self.share_above) / (w @ self.regions)[:, None]
        return {
            "pixel_auroc": np.einsum("ri,ri->r", w @ self.pairs, w) / (positives * negatives),
            "aupro": np.array([_area_to_limit(x, y) for x, y in zip(fpr, pro, strict=True)]),
            "dice": (2 * (w @ self.pos_above) / ((w @ self.all_above) + positives[:, None])).max(axis=1),
        }


def pixel_metrics(
    pixels: Pixels, groups: np.ndarray, n_resamples: int, seed: int, name: str = "all"
) -> list[MetricValue]:
    """pixel_auroc, aupro and dice with their intervals, as metric values of slice `name`."""
    n, n_pos = len(pixels.scores), int((pixels.positives > 0).sum())
    if n_pos == 0 or pixels.negatives.sum() == 0:
        return [MetricValue(m, NAN, NAN, NAN, n, n_pos, name) for m in PIXEL_METRICS]
    pooled = Pooled(pixels)
    weights = np.array(list(image_weights(groups, n_resamples, seed))).reshape(-1, n)
    weights = weights[(weights @ pixels.positives > 0) & (weights @ pixels.negatives > 0)]
    draws = Resampled(pooled, pixels).values(weights)
    point = {"pixel_auroc": pooled.auroc(), "aupro": pooled.aupro(), "dice": pooled.dice()}
    out = [MetricValue(m, point[m], *interval(list(draws[m])), n, n_pos, name) for m in point]
    per_image = aupimo_per_image(pixels)
    abnormal = pixels.positives > 0
    draws_aupimo = [float(w[abnormal] @ per_image[abnormal] / w[abnormal].sum()) for w in weights]
    value = float(per_image[abnormal].mean())
    return [*out, MetricValue("aupimo", value, *interval([] if np.isnan(value) else draws_aupimo), n, n_pos, name)]


def aupimo_per_image(pixels: Pixels) -> np.ndarray:
    """Each abnormal image's AUPIMO (see the module docstring); NaN for normal images, and for
    all when the normal pixels are too few for the range."""
    out = np.full(len(pixels.scores), NAN)
    normal = [s.ravel() for s, t in zip(pixels.scores, pixels.truth, strict=True) if not t.any()]
    pool = np.concatenate(normal) if normal else np.empty(0)
    low, high = AUPIMO_FPR
    if len(pool) * low < 1:
        return out
    thresholds, fpr = _normal_fpr_vertices(pool, high)
    if fpr[0] > low:  # ties at the top: the curve does not start inside the range
        return out
    x = np.log10(fpr)
    for i, (scores, truth) in enumerate(zip(pixels.scores, pixels.truth, strict=True)):
        if truth.any():
            positive = np.sort(scores[truth])
            tpr = (len(positive) - np.searchsorted(positive, thresholds, "left")) / len(positive)
            out[i] = _area_between(x, tpr, np.log10(low), np.log10(high))
    return out


def _normal_fpr_vertices(pool: np.ndarray, high: float) -> tuple[np.ndarray, np.ndarray]:
    """The distinct normal scores, highest first, down to the first whose false-positive rate
    (the share of normal pixels at or above it) passes `high`, with those rates."""
    k = min(len(pool), int(np.ceil(high * len(pool))) + 1)
    top = np.sort(np.partition(pool, len(pool) - k)[len(pool) - k :])  # the k highest, ascending
    thresholds = np.unique(top)[::-1]
    at_or_above = len(top) - np.searchsorted(top, thresholds, "left")
    at_or_above[-1] = int((pool >= thresholds[-1]).sum())  # the lowest may tie with scores left out
    return thresholds, at_or_above / len(pool)


def _area_between(x: np.ndarray, y: np.ndarray, a: float, b: float) -> float:
    """Area under y(x), linear between points (x increasing), from a to b, divided by b - a."""
    inside = x[(x > a) & (x < b)]
    xs = np.r_[a, inside, b]
    ys = np.interp(xs, x, y)
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2) / (b - a))


# --- boxes ---------------------------------------------------------------------------------------


def pointing_hit(scores: np.ndarray, boxes: pd.DataFrame) -> bool:
    """The centre of the map's (first) maximum pixel lies inside one of `boxes` (map pixels)."""
    row, col = np.unravel_index(int(np.argmax(scores)), scores.shape)
    x, y, w, h = (boxes[k].to_numpy() for k in "xywh")
    return bool(((x <= col + 0.5) & (col + 0.5 <= x + w) & (y <= row + 0.5) & (row + 0.5 <= y + h)).any())


def iobb_hits(scores: np.ndarray, boxes: pd.DataFrame, level: float) -> dict[float, bool]:
    """For each IoBB level: does a region of the map above `level` cover a box enough?
    IoBB = the area of (region's bounding box and the box) over the region's bounding box;
    regions of fewer than `MIN_REGION_SHARE` of the map's pixels are left out."""
    labels, _ = ndimage.label(scores >= level, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    big = sizes >= max(1, round(MIN_REGION_SHARE * scores.size))
    found = ndimage.find_objects(labels)
    regions = np.array([(c.start, r.start, c.stop, r.stop) for (r, c), keep in zip(found, big, strict=True) if keep])
    regions = regions.astype(float).reshape(-1, 4)
    if not len(regions) or boxes.empty:
        return {t: False for t in IOBB_LEVELS}
    bx, by = boxes["x"].to_numpy(), boxes["y"].to_numpy()
    bx2, by2 = bx + boxes["w"].to_numpy(), by + boxes["h"].to_numpy()
    x1, y1, x2, y2 = (regions[:, k : k + 1] for k in range(4))  # one row per region, one column per box
    overlap = np.clip(np.minimum(x2, bx2) - np.maximum(x1, bx), 0, None) * np.clip(
        np.minimum(y2, by2) - np.maximum(y1, by), 0, None
    )
    best = float((overlap / ((x2 - x1) * (y2 - y1))).max())
    return {t: best >= t for t in IOBB_LEVELS}


def box_metrics(hits: pd.DataFrame, n_resamples: int, seed: int, name: str = "all") -> list[MetricValue]:
    """Hit rates of (image, finding) pairs (columns pointing_game and iobb@T, with patient_id),
    with intervals."""
    metrics = BOX_METRICS
    if hits.empty:
        return [MetricValue(m, NAN, NAN, NAN, 0, 0, name) for m in metrics]
    groups = hits["patient_id"].to_numpy()
    values = {m: hits[m].to_numpy(dtype=np.float64) for m in metrics}
    draws: dict[str, list[float]] = {m: [] for m in metrics}
    for w in image_weights(groups, n_resamples, seed):
        for m in metrics:
            draws[m].append(float(w @ values[m] / w.sum()))
    return [MetricValue(m, float(values[m].mean()), *interval(draws[m]), len(hits), len(hits), name) for m in metrics]


# --- a run's localization rows -------------------------------------------------------------------


def decoded_maps(maps: pd.DataFrame, meta: pd.DataFrame, split: str) -> np.ndarray:
    """(N, C, h, w) clean maps of a split's images, in the manifest's order."""
    rows = maps[(maps["split"] == split) & (maps["condition"] == "clean")].set_index("image_id")
    missing = meta["image_id"][~meta["image_id"].isin(rows.index)]
    if len(missing):
        raise DataIntegrityError(f"{len(missing)} {split} images have no stored map (first: {missing.iloc[0]})")
    return np.stack([decode(rows.loc[i]) for i in meta["image_id"]]).astype(np.float64)


def normal_level(val_maps: np.ndarray, val_labels: np.ndarray) -> float:
    """The map value exceeded by 5% of the pixels of normal validation images."""
    normal = val_maps[val_labels == 0] if (val_labels == 0).any() else val_maps
    return float(np.quantile(normal, NORMAL_PIXEL_QUANTILE))


@dataclass
class Item:
    """One scored map: an image's map for one finding, or for all of them."""

    image_id: str
    patient_id: str
    scores: np.ndarray  # (h, w)
    truth: np.ndarray  # (h, w) bool (all False without masks)
    boxes: pd.DataFrame  # in map pixels


NO_BOXES = pd.DataFrame(columns=["image_id", "finding", "x", "y", "w", "h"])


class Localizer:
    """The test maps of a run against the board's ground truth, at the maps' size."""

    def __init__(self, maps: np.ndarray, meta: pd.DataFrame, truth: GroundTruth, channels: tuple[str, ...] | None):
        self.maps, self.meta, self.truth, self.channels = maps, meta, truth, channels
        size = maps.shape[-2:]
        self.boxes = scale_boxes(truth.boxes, (truth.resolution, truth.resolution), size)
        self.image_boxes = {image_id: rows for image_id, rows in self.boxes.groupby("image_id", sort=False)}
        self.masks = {key: resize_mask(mask, size) for key, mask in truth.masks.items()}
        self.findings = [str(f).split("|") for f in meta["findings"]]

    def item(self, i: int, channel: int, names: list[str]) -> Item:
        image_id = self.meta["image_id"].iloc[i]
        truth = np.zeros(self.maps.shape[-2:], bool)
        for name in names:
            truth |= self.masks.get((image_id, name), False)
        boxes = self.image_boxes.get(image_id, NO_BOXES)
        if len(boxes):
            boxes = boxes[boxes["finding"].isin(names)]
        return Item(image_id, self.meta["patient_id"].iloc[i], self.maps[i, channel], truth, boxes)

    def items(self, finding: str | None) -> list[Item]:
        """The maps scored for `finding` (None: all). One map per image: the images with that
        finding and the normal ones (all: every image, truth the union of its findings). One map
        per finding: that finding's channel of every image (all: every image and channel)."""
        if self.channels is None:
            labels = self.meta["label"].to_numpy()
            return [
                self.item(i, 0, fs if finding is None else [finding])
                for i, fs in enumerate(self.findings)
                if finding is None or labels[i] == 0 or finding in fs
            ]
        names = self.channels if finding is None else (finding,)
        return [self.item(i, self.channels.index(n), [n]) for n in names for i in range(len(self.meta))]

    def slices(self) -> list[str]:
        present = {f for fs in self.findings for f in fs}
        named = {f for _, f in self.masks} | set(self.boxes["finding"])
        return sorted((set(self.channels) if self.channels else present) & named)


def localization_metrics(localizer: Localizer, level: float, n_resamples: int, seed: int) -> list[MetricValue]:
    """Pixel metrics (when there are masks) and box metrics (when there are boxes), overall and
    per finding."""
    out = []
    for finding in [None, *localizer.slices()]:
        name = "all" if finding is None else f"finding={finding}"
        items = localizer.items(finding)
        groups = np.array([item.patient_id for item in items])
        if localizer.truth.has_masks:
            pixels = Pixels([item.scores for item in items], [item.truth for item in items])
            out += pixel_metrics(pixels, groups, n_resamples, seed, name)
        if len(localizer.truth.boxes):
            hits = pd.DataFrame([box_hits(item, level) for item in items if len(item.boxes)])
            out += box_metrics(hits, n_resamples, seed, name)
    return out


def box_hits(item: Item, level: float) -> dict:
    """The pointing game and IoBB hits of one map against its boxes."""
    iobb = {f"iobb@{t}": hit for t, hit in iobb_hits(item.scores, item.boxes, level).items()}
    return {"patient_id": item.patient_id, "pointing_game": pointing_hit(item.scores, item.boxes), **iobb}
