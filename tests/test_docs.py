"""The method example of docs/adding-a-method.md must keep the contract, as printed."""

import re
import types
from pathlib import Path

from harness.conformance.checks import check_method

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "adding-a-method.md"


def test_the_guide_example_passes_check_method():
    code = re.search(r"```python\n(# methods/tiny_ae\.py\n.*?)```", GUIDE.read_text(), re.S).group(1)
    module = types.ModuleType("guide_example.tiny_ae")
    exec(compile(code, str(GUIDE), "exec"), module.__dict__)
    (report,) = check_method(module.TinyAutoencoder)
    assert report.task == "anomaly" and report.maps_shape == (52, 64, 64)  # (B, h, w), as the contract says
    assert report.weights.id == "none+trained" and len(report.weights.sha256) == 64
