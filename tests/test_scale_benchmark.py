"""`make benchmark-scale` keeps working: the scale benchmark on a small board."""

import importlib.util
import sys
from pathlib import Path

import pytest


def _scale_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py"
    spec = importlib.util.spec_from_file_location("scale_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_the_scale_benchmark_runs_every_stage_and_prints_its_throughput(isolated_cache, capsys):
    scale = _scale_module()
    args = ["--images", "200", "--size", "48", "--resolution", "48", "--bootstrap", "20", "--methods", "random"]
    assert scale.main([*args, "--no-corruptions"]) == 0
    out = capsys.readouterr().out
    assert "scale-200" in out and "random" in out and "predict" in out
    with pytest.raises(SystemExit):
        scale.main(["--images", "10"])
    assert "--images must be at least 100" in capsys.readouterr().err
