"""The README's method example must work as printed."""

import re
import types
from pathlib import Path

from harness.run.runner import bench

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_method_example_runs(tiny_board, tmp_path):
    code = re.search(r"```python\n(# methods/mean_distance\.py\n.*?)```", README.read_text(), re.S).group(1)
    module = types.ModuleType("methods.mean_distance")
    exec(compile(code, "README.md", "exec"), module.__dict__)
    result = bench("mean-distance", tiny_board, db=tmp_path / "r.duckdb", device="cpu")
    assert "auroc" in set(result.metrics["metric"])
