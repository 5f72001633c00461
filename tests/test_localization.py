"""Localization metrics against independent computations: scikit-learn on flattened pixels,
per-region overlaps recomputed threshold by threshold on scipy.ndimage.label regions, hand-built
boxes."""

import numpy as np
import pandas as pd
import pytest
from reference import region_aupro
from sklearn.metrics import roc_auc_score

from harness.data.groundtruth import mask_boxes, masks_sha256, resize_mask
from harness.scoring.localization import (
    Pixels,
    Pooled,
    Resampled,
    aupro,
    best_dice,
    box_metrics,
    iobb_hits,
    pixel_auroc,
    pixel_metrics,
    pointing_hit,
)


def _pixels(seed=0, n=12, size=16):
    """Maps with blobs where the masks are, tied values, and some normal images."""
    rng = np.random.default_rng(seed)
    scores, truth = [], []
    for i in range(n):
        mask = np.zeros((size, size), bool)
        if i % 3:
            for _ in range(1 + i % 2):  # one or two regions
                r, c = rng.integers(2, size - 5, 2)
                mask[r : r + rng.integers(2, 5), c : c + rng.integers(2, 5)] = True
        score = np.round(rng.normal(size=(size, size)) + 1.5 * mask, 1)  # rounded: ties
        scores.append(score)
        truth.append(mask)
    return Pixels(scores, truth)


def test_pixel_auroc_is_scikit_learns_on_every_pixel():
    p = _pixels()
    flat_s = np.concatenate([s.ravel() for s in p.scores])
    flat_t = np.concatenate([t.ravel() for t in p.truth])
    assert pixel_auroc(p) == pytest.approx(roc_auc_score(flat_t, flat_s), abs=1e-12)


def _materialised(p: Pixels, weights: np.ndarray) -> Pixels:
    copies = [i for i, k in enumerate(weights) for _ in range(int(k))]
    return Pixels([p.scores[i] for i in copies], [p.truth[i] for i in copies])


def _flat(p: Pixels) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([x.ravel() for x in p.truth]), np.concatenate([x.ravel() for x in p.scores])


def test_resampled_pixel_metrics_equal_the_materialised_copies():
    """With fewer distinct scores than histogram bins, every resample value is exact."""
    p = _pixels()  # scores rounded to 0.1: about 60 distinct values
    weights = np.array([[2, 0, 1, 3, 1, 0, 1, 1, 2, 0, 1, 1], [1, 1, 0, 0, 2, 2, 1, 0, 1, 3, 0, 1]], dtype=float)
    values = Resampled(Pooled(p), p).values(weights)
    for r, w in enumerate(weights):
        copy = _materialised(p, w)
        assert values["pixel_auroc"][r] == pytest.approx(roc_auc_score(*_flat(copy)), abs=1e-12)
        assert values["dice"][r] == pytest.approx(best_dice(copy), abs=1e-12)
        assert values["aupro"][r] == pytest.approx(region_aupro(copy.scores, copy.truth), abs=1e-12)


def test_resampled_pixel_auroc_stays_exact_with_more_distinct_scores_than_bins():
    rng = np.random.default_rng(5)
    truth = _pixels(4).truth
    p = Pixels([rng.normal(size=t.shape) + t for t in truth], truth)  # every score distinct
    weights = rng.integers(0, 3, size=(3, len(p.scores))).astype(float)
    values = Resampled(Pooled(p), p, n_bins=4).values(weights)
    for r, w in enumerate(weights):
        assert values["pixel_auroc"][r] == pytest.approx(roc_auc_score(*_flat(_materialised(p, w))), abs=1e-12)


def test_aupro_equals_a_threshold_by_threshold_computation_on_connected_regions():
    p = _pixels(1)
    assert aupro(p) == pytest.approx(region_aupro(p.scores, p.truth), abs=1e-12)
    assert np.isnan(aupro(Pixels([np.ones((4, 4))], [np.zeros((4, 4), bool)])))  # no region


def test_aupro_of_a_perfect_and_a_reversed_map():
    truth = [np.zeros((8, 8), bool) for _ in range(3)]
    truth[1][2:4, 2:5] = True
    truth[2][5:7, 1:3] = True
    perfect = Pixels([t.astype(float) for t in truth], truth)
    assert aupro(perfect) == pytest.approx(1.0)
    reversed_ = Pixels([1.0 - t for t in truth], truth)
    assert aupro(reversed_) == pytest.approx(0.0)


def test_best_dice_equals_the_best_over_every_threshold():
    p = _pixels(2)
    s = np.concatenate([x.ravel() for x in p.scores])
    t = np.concatenate([x.ravel() for x in p.truth])
    best = max(2 * ((s >= th) & t).sum() / ((s >= th).sum() + t.sum()) for th in np.unique(s))
    assert best_dice(p) == pytest.approx(best, abs=1e-12)


def test_pixel_metric_intervals_come_from_patient_resamples():
    p = _pixels(3, n=30)
    groups = np.arange(30) // 2
    rows = {m.metric: m for m in pixel_metrics(p, groups, 200, 0)}
    assert rows["pixel_auroc"].value == pytest.approx(pixel_auroc(p), abs=1e-12)
    assert np.isnan(rows.pop("aupimo").value)  # 10 normal maps of 16 x 16: far fewer than 100,000 pixels
    for m in rows.values():
        assert m.ci_low < m.ci_high and m.n == 30 and m.n_pos == sum(t.any() for t in p.truth)
    narrow = {m.metric: m for m in pixel_metrics(p, groups, 200, 1)}
    assert narrow["pixel_auroc"].ci_low != rows["pixel_auroc"].ci_low  # the seed changes the draws


def test_pointing_game_and_iobb_on_hand_built_maps():
    scores = np.zeros((10, 10))
    scores[6, 2] = 5.0  # the maximum, at pixel centre (2.5, 6.5)
    scores[1:3, 6:9] = 2.0  # a second region above the level
    boxes = pd.DataFrame({"x": [1.0], "y": [5.0], "w": [3.0], "h": [3.0]})
    assert pointing_hit(scores, boxes)
    assert not pointing_hit(scores, pd.DataFrame({"x": [6.0], "y": [1.0], "w": [3.0], "h": [2.0]}))
    # the region {(6, 2)} is a 1 x 1 box fully inside: IoBB 1. A box half covering the 3 x 2 region: 0.5
    assert iobb_hits(scores, boxes, level=1.0) == {0.1: True, 0.25: True, 0.5: True}
    half = pd.DataFrame({"x": [7.5], "y": [1.0], "w": [5.0], "h": [2.0]})
    assert iobb_hits(scores, half, level=1.0) == {0.1: True, 0.25: True, 0.5: True}
    quarter = pd.DataFrame({"x": [8.25], "y": [1.0], "w": [5.0], "h": [2.0]})
    assert iobb_hits(scores, quarter, level=1.0) == {0.1: True, 0.25: True, 0.5: False}
    # On a 30 x 30 map a region needs 9 pixels (1%): a one-pixel speckle inside the box is no hit.
    big = np.zeros((30, 30))
    big[6, 2] = 5.0
    box = pd.DataFrame({"x": [0.0], "y": [4.0], "w": [6.0], "h": [6.0]})
    assert iobb_hits(big, box, level=1.0) == {0.1: False, 0.25: False, 0.5: False}
    big[5:8, 1:4] = 5.0
    assert iobb_hits(big, box, level=1.0) == {0.1: True, 0.25: True, 0.5: True}


def test_box_metric_rates_and_intervals():
    hits = pd.DataFrame(
        {
            "patient_id": list("aabbcdde"),
            "pointing_game": [1, 0, 1, 1, 0, 1, 1, 0],
            "iobb@0.1": [1, 1, 1, 1, 0, 1, 1, 1],
            "iobb@0.25": [1, 0, 1, 0, 0, 1, 0, 0],
            "iobb@0.5": [0, 0, 0, 0, 0, 1, 0, 0],
        }
    )
    rows = {m.metric: m for m in box_metrics(hits, 100, 0)}
    assert rows["pointing_game"].value == pytest.approx(5 / 8) and rows["iobb@0.5"].value == pytest.approx(1 / 8)
    assert rows["pointing_game"].n == 8 and rows["pointing_game"].ci_low <= 5 / 8 <= rows["pointing_game"].ci_high


def test_masks_give_one_box_per_connected_region_and_resize_by_area():
    mask = np.zeros((8, 10), bool)
    mask[1:3, 2:5] = True
    mask[5:8, 7:9] = True
    assert sorted(mask_boxes(mask)) == [(2, 1, 3, 2), (7, 5, 2, 3)]
    small = resize_mask(np.kron(mask, np.ones((2, 2), bool)), (8, 10))
    assert np.array_equal(small, mask)
    assert masks_sha256({"a|Mass": mask}) != masks_sha256({"a|Mass": ~mask})


def _covered_by_fractions(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Each output pixel's covered share, from the overlap of every input pixel with it in exact
    fractions: the definition `resize_mask` implements, written out one pixel at a time."""
    from fractions import Fraction

    (height, width), (h, w) = mask.shape, size
    out = np.zeros(size, dtype=bool)
    marked = np.argwhere(mask)
    for r in range(h):
        top, bottom = Fraction(r * height, h), Fraction((r + 1) * height, h)
        for c in range(w):
            left, right = Fraction(c * width, w), Fraction((c + 1) * width, w)
            area = sum(max(0, min(i + 1, bottom) - max(i, top)) * max(0, min(j + 1, right) - max(j, left))
                       for i, j in marked)  # fmt: skip
            out[r, c] = area * 2 >= (bottom - top) * (right - left)
    return out


@pytest.mark.parametrize(("shape", "size"), [((24, 20), (7, 9)), ((9, 11), (20, 16)), ((30, 30), (12, 12))])
def test_a_mask_resizes_to_the_pixels_it_covers_at_least_half(shape, size):
    """Down and up, by ratios that are not whole, with regions on the borders and single pixels."""
    rng = np.random.default_rng(sum(shape))
    for trial in range(6):
        mask = np.zeros(shape, dtype=bool)
        top, left = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        mask[top : top + rng.integers(1, shape[0] // 2), left : left + rng.integers(1, shape[1] // 2)] = True
        mask[rng.integers(0, shape[0], 3), rng.integers(0, shape[1], 3)] = True
        if trial % 2:
            mask[-1, :] = mask[:, 0] = True
        assert np.array_equal(resize_mask(mask, size), _covered_by_fractions(mask, size)), trial
    assert not resize_mask(np.zeros(shape, dtype=bool), size).any()


def _reference_aupimo(scores: list[np.ndarray], truth: list[np.ndarray]) -> list[float]:
    """AUPIMO from its definition, another way: the normal pixels ranked once, each threshold's
    overlap counted pixel by pixel, the curve integrated on a fine grid of log FPR."""
    normal = np.sort(np.concatenate([s.ravel() for s, t in zip(scores, truth, strict=True) if not t.any()]))[::-1]
    n = len(normal)
    last_of_tie = np.flatnonzero(np.r_[normal[1:] != normal[:-1], True])
    fpr, thresholds = (last_of_tie + 1) / n, normal[last_of_tie]
    wanted = np.flatnonzero(fpr >= 1e-4)[0] + 1  # through the first vertex past the range
    fpr, thresholds = fpr[:wanted], thresholds[:wanted]
    grid = np.linspace(-5.0, -4.0, 200_001)
    out = []
    for s, t in zip(scores, truth, strict=True):
        if t.any():
            lesion = s[t]
            overlap = np.array([sum(v >= threshold for v in lesion) / len(lesion) for threshold in thresholds])
            curve = np.interp(grid, np.log10(fpr), overlap)
            out.append(float(np.sum((curve[1:] + curve[:-1]) / 2) / (len(grid) - 1)))
    return out


def test_aupimo_against_its_definition_computed_another_way():
    from harness.scoring.localization import Pixels, aupimo_per_image

    rng = np.random.default_rng(12)
    scores, truth = [], []
    for _ in range(12):  # 12 normal maps of 100 x 100: 120,000 normal pixels
        scores.append(rng.normal(size=(100, 100)))
        truth.append(np.zeros((100, 100), bool))
    for k in range(5):
        s, t = rng.normal(size=(100, 100)), np.zeros((100, 100), bool)
        t[10 : 30 + 5 * k, 20:40] = True
        s[t] += 2.5 + 0.5 * k + np.round(rng.normal(size=t.sum()), 1)  # some tied lesion scores
        scores.append(s)
        truth.append(t)
    per_image = aupimo_per_image(Pixels(scores, truth))
    assert np.isnan(per_image[:12]).all()
    np.testing.assert_allclose(per_image[12:], _reference_aupimo(scores, truth), rtol=0, atol=1e-6)
    assert 0.0 < per_image[12] < per_image[16] < 1.0  # stronger lesions: more overlap at the same FPR

    perfect = [*scores[:12], np.where(truth[12], 100.0, scores[12])]
    assert aupimo_per_image(Pixels(perfect, [*truth[:12], truth[12]]))[-1] == 1.0
    hidden = [*scores[:12], np.where(truth[12], -100.0, scores[12])]
    assert aupimo_per_image(Pixels(hidden, [*truth[:12], truth[12]]))[-1] == 0.0
    too_few = aupimo_per_image(Pixels(scores[:9] + scores[12:], truth[:9] + truth[12:]))  # 90,000 normal pixels
    assert np.isnan(too_few).all()
    rows = {m.metric: m for m in pixel_metrics(Pixels(scores, truth), np.arange(len(scores)), 200, 0)}
    assert rows["aupimo"].value == pytest.approx(per_image[12:].mean(), abs=1e-15)
    assert rows["aupimo"].ci_low < rows["aupimo"].value < rows["aupimo"].ci_high
