"""Speed of the harness's hot paths. `make benchmark` times them; `make test` runs each once
with timing disabled so that they keep working."""

import numpy as np
import pandas as pd
import pytest
import torch

from harness.components.coreset import greedy_coreset
from harness.components.neighbors import NearestNeighbors
from harness.data.synth.cohort import draw_cohort, render_record
from harness.scoring.metrics import binary_metrics


@pytest.fixture(scope="module")
def patches():
    return torch.randn(153_600, 384, generator=torch.Generator().manual_seed(0))


def test_render_one_phantom_at_256(benchmark):
    record = next(r for r in draw_cohort(0, 10) if r.findings)
    benchmark(render_record, record, 0, 256)


def test_coreset_1000_of_153600_patches(benchmark, patches):
    benchmark.pedantic(greedy_coreset, args=(patches, 1000), kwargs={"projection_dim": 64}, rounds=1, iterations=1)


def test_faiss_search_64k_queries_against_7680_bank(benchmark, patches):
    index = NearestNeighbors(patches[:7680].numpy())
    queries = patches[-65_536:].numpy()
    benchmark.pedantic(index.distances, args=(queries, 1), rounds=1, iterations=1)


def test_metrics_with_1000_patient_bootstrap_resamples(benchmark):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 200)
    scores = rng.normal(size=400) + labels
    groups = np.arange(400) // 2
    benchmark.pedantic(binary_metrics, args=(labels, scores, groups, 0.5, 1000, 0), rounds=1, iterations=1)


@pytest.fixture(scope="module")
def nih_cls_sized():
    """nih-cls's test split: 22,424 images of 6,231 patients, 14 findings."""
    rng = np.random.default_rng(0)
    targets = (rng.random((22_424, 14)) < 0.05).astype(np.int64)
    logits = targets + rng.normal(size=targets.shape)
    return targets, logits, rng.integers(0, 6_231, len(targets))


def test_multilabel_macro_auroc_1000_resamples_nih_cls_size(benchmark, nih_cls_sized):
    """The macro AUROC with its interval of one stress condition at the board's 1,000 resamples."""
    from harness.scoring.multilabel import multilabel_metrics

    names = tuple(f"f{k}" for k in range(14))
    benchmark.pedantic(multilabel_metrics, args=(*nih_cls_sized, names, 1000, 0, 30), rounds=1, iterations=1)


def test_multilabel_clean_per_finding_auroc_and_auprc_1000_resamples_nih_cls_size(benchmark, nih_cls_sized):
    """The clean condition's macro and per-finding AUROC and AUPRC with their intervals."""
    from harness.scoring.multilabel import multilabel_metrics

    names = tuple(f"f{k}" for k in range(14))
    kwargs = {"metrics": ("auroc", "auprc"), "per_finding": True}
    benchmark.pedantic(multilabel_metrics, (*nih_cls_sized, names, 1000, 0, 30), kwargs, rounds=1, iterations=1)


def test_anomaly_clean_metrics_1000_resamples_nih_cls_size(benchmark, nih_cls_sized):
    """AUROC, AUPRC, sensitivity at 95% specificity and F1 with intervals on 22,424 images."""
    targets, logits, groups = nih_cls_sized
    labels, scores = targets.any(axis=1).astype(np.int64), logits.max(axis=1)
    benchmark.pedantic(binary_metrics, args=(labels, scores, groups, 1.5, 1000, 0), rounds=1, iterations=1)


@pytest.mark.parametrize("way", ["counted", "copied"])
def test_bootstrap_auprcs_30_resamples_counted_vs_copied(benchmark, nih_cls_sized, way):
    """The same 30 resamples' 14 AUPRCs: counted (the harness) against scikit-learn on each copy."""
    from sklearn.metrics import average_precision_score

    from harness.scoring import counted
    from harness.scoring.resampling import Resamples, patient_resamples

    targets, logits, groups = nih_cls_sized

    def copied():
        return [
            [average_precision_score(targets[i, k], logits[i, k]) for k in range(14)]
            for i in patient_resamples(groups, 30, 0)
        ]

    def counted_values():
        return counted.average_precisions(targets, logits, Resamples.keeping_both_classes(targets, groups, 30, 0))

    benchmark.pedantic(copied if way == "copied" else counted_values, rounds=1, iterations=1)


@pytest.mark.parametrize("way", ["counted", "copied"])
def test_bootstrap_aurocs_100_resamples_counted_vs_copied(benchmark, nih_cls_sized, way):
    """The same 100 resamples' 14 AUROCs: counted (the harness) against ranking each copy."""
    from harness.scoring.metrics import auroc, bootstrap_aurocs
    from harness.scoring.resampling import patient_resamples

    targets, logits, groups = nih_cls_sized

    def copied():
        return [[auroc(targets[i, k], logits[i, k]) for k in range(14)] for i in patient_resamples(groups, 100, 0)]

    run = copied if way == "copied" else lambda: bootstrap_aurocs(targets, logits, groups, 100, 0)
    benchmark.pedantic(run, rounds=1, iterations=1)


def test_whole_corruption_suite_on_400_images(benchmark):
    from harness.boards.files import load_board
    from harness.data.corruptions import apply

    images = torch.randint(0, 256, (400, 1, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ids = [f"{i:08d}_000.png" for i in range(400)]
    suite = load_board("synth-cxr-ad").corruptions

    def run_suite():
        for name, levels in suite.items():
            for severity, level in enumerate(levels, start=1):
                apply(name, images, level, ids, 0, severity)

    benchmark.pedantic(run_suite, rounds=1, iterations=1)


def test_duckdb_write_of_one_run(benchmark, tmp_path):
    """One run's tables (about 9,000 predictions and 600 metric rows) in one transaction."""
    from harness.results.store import ResultStore

    rng = np.random.default_rng(0)
    predictions = pd.DataFrame(
        {
            "image_id": [f"{i:08d}" for i in range(9000)],
            "patient_id": "1",
            "split": "test",
            "condition": "clean",
            "severity": 0,
            "label": rng.integers(0, 2, 9000),
            "score": rng.normal(size=9000),
        }
    )
    metrics = pd.DataFrame(
        {
            "board": "b",
            "method": "m",
            "condition": "clean",
            "severity": 0,
            "slice": "all",
            "metric": [f"m{i}" for i in range(600)],
            "value": rng.normal(size=600),
        }
    )
    store = ResultStore(tmp_path / "bench.duckdb")
    counter = iter(range(10**6))

    def write():
        run_id = f"run{next(counter)}"
        store.start_run({"run_id": run_id, "board": "b", "method": "m"})
        store.complete_run(run_id, {"predictions": predictions, "metrics": metrics}, {"threshold": 0.5})

    benchmark.pedantic(write, rounds=3, iterations=1)
    store.close()


def test_maps_of_one_default_run(benchmark):
    """What keeping maps adds to a default PatchCore run: 600 maps (200 validation, 400 test)
    of 128 x 128 area-averaged to 64 x 64, encoded as float16 and hashed."""
    import torch.nn.functional as F

    from harness.core.maps import map_rows, maps_sha256, stored_size

    maps = torch.rand(600, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    ids = [f"{i:08d}_000.png" for i in range(600)]

    def keep():
        rows = []
        for start in range(0, 600, 32):
            batch = maps[start : start + 32]
            small = F.adaptive_avg_pool2d(batch, stored_size(*batch.shape[-2:])).numpy()
            rows.append(map_rows("test", "clean", 0, ids[start : start + 32], small))
        frame = pd.concat(rows, ignore_index=True)
        return maps_sha256(frame), int(frame["data"].map(len).sum())

    digest, size = benchmark.pedantic(keep, rounds=3, iterations=1)
    assert size == 600 * 64 * 64 * 2 and len(digest) == 64


FINDINGS = ("Cardiomegaly", "Effusion", "Mass", "Nodule", "Pneumothorax", "Consolidation")


def _test_split_with_ground_truth(rng: np.random.Generator):
    """400 test images of 200 patients as synth-cxr-ad's: half abnormal, each abnormal image
    with one or two findings drawn as ellipses of the phantoms' sizes (1% to 13% of the image)
    at the board's 128 px, and a box per region."""
    from harness.data.groundtruth import GroundTruth, mask_boxes

    yy, xx = np.mgrid[0:128, 0:128]
    rows, boxes, masks = [], [], {}
    for i in range(400):
        image_id, findings = f"{i:08d}.png", []
        if i % 2:
            for finding in rng.choice(FINDINGS, size=1 + i % 3 // 2, replace=False):
                cx, cy, rx, ry = *rng.uniform(30, 98, 2), *rng.uniform(7, 33, 2)
                mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
                masks[(image_id, str(finding))] = mask
                boxes += [(image_id, str(finding), *box) for box in mask_boxes(mask)]
                findings.append(str(finding))
        rows.append((image_id, str(i // 2), i % 2, "|".join(findings) or "No Finding"))
    meta = pd.DataFrame(rows, columns=["image_id", "patient_id", "label", "findings"])
    return meta, GroundTruth(pd.DataFrame(boxes, columns=["image_id", "finding", "x", "y", "w", "h"]), 128, masks)


def test_localization_scoring_of_a_default_run(benchmark):
    """Localization of a default PatchCore run: 400 test images, maps 64 x 64 as stored
    (float16 values), masks and boxes at the board's 128 px, 1,000 patient-bootstrap resamples
    (every metric, overall and per finding)."""
    from harness.scoring.localization import Localizer, localization_metrics

    rng = np.random.default_rng(0)
    test, truth = _test_split_with_ground_truth(rng)
    maps = rng.random((len(test), 1, 64, 64)).astype(np.float16).astype(np.float64)
    localizer = Localizer(maps, test, truth, None)
    rows = benchmark.pedantic(localization_metrics, args=(localizer, 0.9, 1000, 0), rounds=1, iterations=1)
    assert {r.metric for r in rows} >= {"pixel_auroc", "aupro", "dice", "pointing_game", "iobb@0.25"}
    assert {r.slice for r in rows} == {"all", *(f"finding={f}" for f in FINDINGS)}
    assert all(0.45 < r.value < 0.55 for r in rows if r.metric == "pixel_auroc")  # random maps
