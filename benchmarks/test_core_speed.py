"""Speed of the harness's hot paths. `make benchmark` times them; `make test` runs each once
with timing disabled so that they keep working."""

import numpy as np
import pandas as pd
import pytest
import torch

from harness.metrics import binary_metrics
from harness.neighbors import NearestNeighbors, greedy_coreset
from harness.synth.cohort import draw_cohort, render_record


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


def test_multilabel_macro_auroc_100_resamples_nih_cls_size(benchmark):
    """nih-cls's test split: 22,424 images of 6,231 patients, 14 findings (macro AUROC of one
    stress condition). Scale by 10 for the board's 1,000 resamples."""
    from harness.tasks.multilabel import multilabel_metrics

    rng = np.random.default_rng(0)
    targets = (rng.random((22_424, 14)) < 0.05).astype(np.int64)
    logits = targets + rng.normal(size=targets.shape)
    groups = rng.integers(0, 6_231, len(targets))
    names = tuple(f"f{k}" for k in range(14))
    benchmark.pedantic(multilabel_metrics, args=(targets, logits, groups, names, 100, 0, 30), rounds=1, iterations=1)


def test_whole_corruption_suite_on_400_images(benchmark):
    from harness.boards import load_board
    from harness.corruptions import apply

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
    from harness.store import ResultStore

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

    from harness.maps import map_rows, maps_sha256, stored_size

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
