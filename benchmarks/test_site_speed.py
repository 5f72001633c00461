"""Site build time for a database of 20 methods x 5 boards of generated results."""

import numpy as np
import pandas as pd

from harness.results.store import ResultStore
from harness.site.builder import build_site

CORRUPTIONS = [
    "gaussian_noise",
    "gaussian_blur",
    "jpeg",
    "brightness_contrast",
    "quantum_noise",
    "resolution_loss",
    "gamma_window",
]


def fill(db, n_methods: int = 20, n_boards: int = 5, n_test: int = 400) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], n_test // 2)
    with ResultStore(db) as store:
        for b in range(n_boards):
            for m in range(n_methods):
                run_id = f"run-{b}-{m}"
                store.start_run(
                    {
                        "run_id": run_id,
                        "board": f"board-{b}",
                        "method": f"method-{m:02d}",
                        "params": "{}",
                        "seed": 0,
                        "split_sha256": "s",
                        "dataset_sha256": "d",
                        "versions": "{}",
                    }
                )
                strength = rng.uniform(0, 2)
                scores = {
                    c: rng.normal(size=n_test) + strength * labels * (0.6 if c != "clean" else 1)
                    for c in ["clean", *CORRUPTIONS]
                }
                predictions = pd.concat(
                    [
                        pd.DataFrame(
                            {
                                "image_id": [f"{i:05d}" for i in range(n_test)],
                                "patient_id": [str(i // 2) for i in range(n_test)],
                                "split": "test",
                                "condition": c,
                                "severity": 0 if c == "clean" else 1,
                                "label": labels,
                                "score": s,
                            }
                        )
                        for c, s in scores.items()
                    ]
                )
                metric_rows = [
                    {
                        "condition": "clean",
                        "severity": 0,
                        "slice": "all",
                        "metric": k,
                        "value": v,
                        "ci_low": v - 0.05,
                        "ci_high": v + 0.05,
                        "n": n_test,
                        "n_pos": n_test // 2,
                    }
                    for k, v in {
                        "auroc": rng.uniform(0.5, 0.95),
                        "auprc": 0.7,
                        "sens@95spec": 0.3,
                        "f1": 0.6,
                        "ece_none": 0.3,
                        "ece_platt": 0.05,
                        "aurc": 0.2,
                    }.items()
                ]
                metric_rows += [
                    {
                        "condition": c,
                        "severity": s,
                        "slice": "all",
                        "metric": "auroc",
                        "value": rng.uniform(0.5, 0.9),
                        "ci_low": 0.4,
                        "ci_high": 0.95,
                        "n": n_test,
                        "n_pos": n_test // 2,
                    }
                    for c in CORRUPTIONS
                    for s in (1, 2, 3)
                ]
                metric_rows += [
                    {
                        "condition": "clean",
                        "severity": 0,
                        "slice": f"view={v}",
                        "metric": "auroc",
                        "value": rng.uniform(0.5, 0.9),
                        "n": 200,
                        "n_pos": 100,
                    }
                    for v in ("AP", "PA")
                ]
                metrics = pd.DataFrame(metric_rows).assign(board=f"board-{b}", method=f"method-{m:02d}")
                bins = pd.DataFrame(
                    [
                        {
                            "condition": "clean",
                            "severity": 0,
                            "calibrator": k,
                            "index": i,
                            "lower": i / 15,
                            "upper": (i + 1) / 15,
                            "mean_confidence": (i + 0.5) / 15,
                            "accuracy": rng.uniform(),
                            "count": 20,
                        }
                        for k in ("none", "platt")
                        for i in range(15)
                    ]
                )
                latency = pd.DataFrame(
                    [
                        {
                            "board": f"board-{b}",
                            "method": f"method-{m:02d}",
                            "batch_size": bs,
                            "p50_ms": rng.uniform(1, 100),
                            "throughput_ips": rng.uniform(10, 1000),
                            "param_count": 1000,
                            "device": "cpu",
                        }
                        for bs in (1, 32)
                    ]
                )
                robustness = pd.DataFrame(
                    [
                        {
                            "clean_auroc": 0.8,
                            "mean_corrupted_auroc": 0.7,
                            "worst_condition": "jpeg",
                            "worst_severity": 3,
                            "worst_auroc": 0.6,
                            "auroc_drop": 0.1,
                        }
                    ]
                )
                store.complete_run(
                    run_id,
                    {
                        "predictions": predictions,
                        "metrics": metrics,
                        "calibration_bins": bins,
                        "latency": latency,
                        "robustness": robustness,
                    },
                    {"threshold": 0.5},
                )


def test_site_build_20_methods_5_boards(benchmark, tmp_path):
    db = tmp_path / "many.duckdb"
    fill(db)
    out = tmp_path / "build"
    index = benchmark.pedantic(build_site, args=(db, out), rounds=1, iterations=1)
    assert index.exists() and len(list((out / "runs").glob("*.html"))) == 100
