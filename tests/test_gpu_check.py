"""The GPU check's bookkeeping: its targets, its budgets and deadline, its report. (Its steps
run end to end on the CPU in `make gpu-check DRY=1`, which CI runs.)"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.api.protocol import FitContext
from harness.components.embedding import PatchBank
from harness.core.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import gpu_check


def measured(**changes: object) -> dict:
    """Steps as the check records them; the targets computed by hand from these numbers are
    patchcore 1.1 (met), padim 2.0 (not met), backbone/padim 1200/500 = 2.4 (not met),
    backbone/coreset 1200/(600/1.0) = 2.0 (met), bf16 speedup 10/4 = 2.5 (met)."""
    steps = {
        "prepare": {"anomaly": {"images": {"train": 600, "val": 200, "test": 400}}},
        "backbone": {
            "rows": [
                {"precision": "fp32", "batch_size": 32, "throughput_ips": 1000.0},
                {"precision": "fp32", "batch_size": 128, "throughput_ips": 1200.0},
                {"precision": "bf16", "batch_size": 128, "throughput_ips": 3000.0},
            ]
        },
        "latency": {
            "rows": [
                {"method": "padim", "precision": "fp32", "batch_size": 128, "throughput_ips": 500.0},
                {"method": "padim", "precision": "bf16", "batch_size": 128, "throughput_ips": 900.0},
                {"method": "knn", "precision": "fp32", "batch_size": 128, "throughput_ips": 5000.0},
            ]
        },
        "runs": {"patchcore": {"overhead": 1.1, "coreset_seconds": 1.0}, "padim": {"overhead": 2.0}},
        "supervised": {
            "bf16": {"seconds_per_epoch": 4.0, "macro_auroc": 0.80, "macro_auroc_ci": [0.75, 0.85]},
            "fp32": {"seconds_per_epoch": 10.0, "macro_auroc": 0.81, "macro_auroc_ci": [0.76, 0.86]},
        },
    }
    steps.update(changes)
    return steps


def by_name(found: list[dict]) -> dict[str, dict]:
    return {t["target"].split(":")[0]: t for t in found}


def test_targets_from_measurements():
    found = gpu_check.targets(measured())
    assert len(found) == 5
    runs = [t for t in found if "whole run" in t["target"]]
    assert [(t["value"], t["met"]) for t in runs] == [(1.1, True), (2.0, False)]
    named = by_name(found)
    assert named["padim"]["value"] == pytest.approx(2.4) and named["padim"]["met"] is False
    assert named["coreset"]["value"] == pytest.approx(2.0) and named["coreset"]["met"] is True
    assert named["supervised"]["value"] == pytest.approx(2.5) and named["supervised"]["met"] is True


def test_bf16_target_needs_equal_auroc():
    supervised = measured()["supervised"]
    supervised["bf16"] = {**supervised["bf16"], "macro_auroc": 0.70, "macro_auroc_ci": [0.65, 0.75]}
    target = by_name(gpu_check.targets(measured(supervised=supervised)))["supervised"]
    assert target["value"] == pytest.approx(2.5) and target["met"] is False


def test_unmeasured_targets_are_none():
    assert all(t["value"] is None and t["met"] is None for t in gpu_check.targets({}))


def check_for(
    tmp_path: Path, seconds_left: float, base: gpu_check.Sizes = gpu_check.DRY, **budgets: float
) -> gpu_check.Check:
    sizes = gpu_check.Sizes(**{**gpu_check.asdict(base), "budgets": budgets})
    return gpu_check.Check(sizes, torch.device("cpu"), {}, tmp_path, time.monotonic() + seconds_left)


def test_a_step_is_stopped_at_its_budget_and_keeps_what_it_measured(tmp_path):
    def slow(check, out):
        out["first"] = 1.0
        time.sleep(10)
        out["second"] = 2.0

    started = time.monotonic()
    out = gpu_check.run_step(check_for(tmp_path, 100, slow=0.5), "slow", slow)
    assert time.monotonic() - started < 5
    assert out["status"] == "stopped at its budget"
    assert out["first"] == 1.0 and "second" not in out


def test_a_step_is_stopped_at_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "MIN_START_S", 0.1)
    out = gpu_check.run_step(check_for(tmp_path, 0.5, slow=60), "slow", lambda check, out: time.sleep(30))
    assert out["status"] == "stopped at the deadline"


def test_a_failing_step_is_recorded_and_past_the_deadline_steps_are_skipped(tmp_path):
    def broken(check, out):
        raise ValueError("no such board")

    out = gpu_check.run_step(check_for(tmp_path, 100, broken=10), "broken", broken)
    assert out["status"] == "failed: ValueError: no such board"
    out = gpu_check.run_step(check_for(tmp_path, 0, late=10), "late", broken)
    assert out["status"].startswith("skipped")


def test_report_written_whole(tmp_path):
    steps = measured()
    for step in steps.values():
        step |= {"status": "ok", "seconds": 1.0, "budget_s": 10}
    report = {"dry": True, "date": "2026-12-07", "commit": "0" * 40, "dirty": False, "device": "cpu: test",
              "deadline_s": 300, "elapsed_s": 12.0, "sizes": {"backbone_size": 64}, "steps": steps,
              "targets": gpu_check.targets(steps)}  # fmt: skip
    gpu_check.write_report(report, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-check.json", "gpu-check.md"]
    assert json.loads((tmp_path / "gpu-check.json").read_text())["steps"]["runs"]["padim"]["overhead"] == 2.0
    text = (tmp_path / "gpu-check.md").read_text()
    assert "| padim: the whole run at most 1.25 x fit + predict | 2 | 1.25 | **no** |" in text
    assert "| padim | fp32 | 128 |" in text  # the latency table


def test_scale_size_follows_the_measured_speed_and_its_bounds(tmp_path):
    check = check_for(tmp_path, 1000, gpu_check.GPU, scale=100)
    low, high = check.sizes.scale_images
    assert gpu_check.scale_images(check) == low  # nothing measured yet
    check.report["steps"] = {"prepare": {"anomaly": {"resolution": check.sizes.scale_size}}}
    sizes = []
    for per_second in (1.0, 1e3, 1e9):
        check.report["steps"]["runs"] = {"patchcore": {"predicted_images": per_second * 10, "total": 10.0}}
        sizes.append(gpu_check.scale_images(check))
    assert sizes[0] == low and sizes[2] == high
    # 40% of the step's 100 s at 1,000 predicted images a second, 6.7 predicted per board image
    assert sizes[1] == 5970


def test_the_coreset_seconds_are_read_from_the_fit(tmp_path):
    ctx = FitContext(0, torch.device("cpu"), tmp_path, logging.getLogger("xrbench.method.patchcore"))
    patches = torch.randn(4, 8, 5, 5, generator=torch.Generator().manual_seed(0))
    with gpu_check.coreset_seconds("patchcore") as found:
        PatchBank(coreset_ratio=0.1, projection_dim=4, seed=0).fit(patches, ctx)
    assert found["coreset_kept"] == 10 and found["coreset_patches"] == 100 and found["coreset_seconds"] > 0


@pytest.mark.parametrize("value", ["nan", "-5", "0"])
def test_deadline_must_be_positive(value, capsys):
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--dry", "--deadline", value])
    assert stopped.value.code == 2
    assert "--deadline must be a positive number of seconds" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_the_check_says_so(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main([])
    assert "no CUDA device here" in capsys.readouterr().err
