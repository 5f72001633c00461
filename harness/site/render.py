"""How the site is written: pages from Jinja2 templates, every table also as CSV and JSON under
`data/`, and plots queued and rendered in parallel at the end of the build."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib.figure import Figure
from PIL import Image

from harness import __version__
from harness.results.plots import svg

PlotJob = tuple[Callable[..., "Figure | bytes"], object, Path]


def slug(name: str) -> str:
    """A file-name-safe, collision-free name for anything a contributor can name."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:60] or "x"
    return f"{clean}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"


@dataclass
class Table:
    """A table shown on a page and offered as CSV and JSON."""

    frame: pd.DataFrame
    name: str

    def links(self) -> dict[str, str]:
        return {"csv": f"data/{self.name}.csv", "json": f"data/{self.name}.json"}


class Pages:
    """The site being written into `out`."""

    def __init__(self, out: Path, templates: Path, repository: str = ""):
        self.out = out
        self.env = Environment(
            loader=FileSystemLoader(templates), autoescape=select_autoescape(["html"]), trim_blocks=True,
            lstrip_blocks=True,
        )  # fmt: skip
        self.env.filters["num"] = num
        self.env.filters["provenance"] = provenance
        self.env.filters["ms"] = ms
        self.env.filters["slug"] = slug
        self.env.filters["from_json"] = json.loads
        self.env.filters["code_files"] = lambda code, commit=None: code_files(code, commit, repository)
        self.env.globals["repository"] = repository.rstrip("/")
        self.built_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        self._plots: list[PlotJob] = []

    def write(self, path: str, template: str, **context: object) -> None:
        depth = path.count("/")
        html = self.env.get_template(template).render(
            root="../" * depth, built_at=self.built_at, version=__version__, **context
        )
        (self.out / path).parent.mkdir(parents=True, exist_ok=True)
        (self.out / path).write_text(html)

    def export(self, frame: pd.DataFrame, name: str) -> Table:
        folder = self.out / "data"
        folder.mkdir(parents=True, exist_ok=True)
        frame.to_csv(folder / f"{name}.csv", index=False)
        (folder / f"{name}.json").write_text(frame.to_json(orient="records", indent=1, date_format="iso"))
        return Table(frame, name)

    def plot(self, render: Callable[..., Figure | bytes], data: object, name: str, suffix: str = "svg") -> str:
        """Queue a plot (rendered in parallel at the end of the build); returns its path."""
        self._plots.append((render, data, self.out / "plots" / f"{name}.{suffix}"))
        return f"plots/{name}.{suffix}"

    def render_plots(self) -> None:
        (self.out / "plots").mkdir(parents=True, exist_ok=True)
        workers = min(len(self._plots), os.cpu_count() or 1)
        if workers <= 1:
            for job in self._plots:
                _render(job)
        else:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_render, self._plots, chunksize=4))
        self._plots.clear()


def _render(job: PlotJob) -> None:
    render, data, path = job
    out = render(data)
    if isinstance(out, bytes):
        path.write_bytes(out)
    else:
        path.write_text(svg(out))


def num(value: object, digits: int = 3) -> str:
    """Numbers for display: fixed digits, thousands separators for counts, n/a for missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"
    return str(value)


def ms(value: object) -> str:
    """A latency in milliseconds with the digits it needs: two significant ones below 0.1 ms
    (a fast scorer's 0.031 ms is not "0.0"), two decimals below 10 ms, one above."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    v = float(value)  # type: ignore[arg-type]
    return f"{v:.2g}" if v < 0.1 else f"{v:.2f}" if v < 10 else f"{v:,.1f}"


def provenance(value: object, key: str) -> str:
    """A run record's value as a person reads it: "not recorded" for what a run did not record
    (None, NaN, NaT), seconds with one decimal, times to the second, and what "none" means for
    weights."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return "not recorded"
    if key.endswith("_seconds") and isinstance(value, (int, float, np.number)):
        return f"{float(value):,.1f} s"
    if key.endswith("_at"):
        return str(value)[:19]
    if key == "weights_id" and value == "none":
        return "none (random initialisation, seeded)"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)


def code_reference(code: dict) -> str:
    """A run's code in a few words: a plugin, or its method's files (with their hashes) and how many
    harness modules they import, at a commit."""
    harness = [path for path in code.get("files", {}) if path.startswith("harness/")]
    if "plugin" in code:
        plugin = code["plugin"]
        return f"plugin {plugin.get('distribution', '?')} {plugin.get('version', '?')}, {len(harness)} harness modules"
    own = ", ".join(
        f"{path} ({(digest or '?')[:8]})" for path, digest in code.get("files", {}).items() if path not in harness
    )
    modules = f" + {len(harness)} harness modules" if harness else ""
    return f"{own}{modules} at {code.get('commit', '?')[:10]}"


def slice_order(name: str) -> tuple:
    """Slices grouped by attribute, and within one in their natural order: numbered bins by
    their lower bound (`age_bin=<40`, `40-59`, `60+`), other values alphabetically."""
    attribute, _, value = name.partition("=")
    digits = "".join(c if c.isdigit() else " " for c in value).split()
    bound = -1.0 if value.startswith("<") else float(digits[0]) if digits else float("inf")
    return (attribute == "finding", attribute, bound, value)


COMMIT = re.compile(r"[0-9a-f]{7,40}")


def code_files(code: str | dict | None, commit: str | None, repository: str) -> dict:
    """A run's code as the run page lists it: the method's own files and the harness modules
    they import, each with a short hash, linked to `repository` at the run's commit when the
    site has a repository (`xrbench site --repository`) and the commit is known; or a plugin."""
    code = json.loads(code) if isinstance(code, str) else (code or {})
    at = code.get("commit") or commit
    base = repository.rstrip("/") if repository and at and COMMIT.fullmatch(at) else ""
    files = [
        {"path": path, "digest": (digest or "?")[:8], "url": f"{base}/blob/{at}/{path}" if base else None}
        for path, digest in code.get("files", {}).items()
    ]
    plugin = code.get("plugin")
    return {
        "own": [f for f in files if not f["path"].startswith("harness/")],
        "harness": [f for f in files if f["path"].startswith("harness/")],
        "plugin": f"{plugin.get('distribution', '?')} {plugin.get('version', '?')}" if plugin else None,
        "tree": f"{base}/tree/{at}" if base else None,
    }


def png_array(data: object) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(bytes(data))))


def mask_array(data: object) -> np.ndarray | None:
    return png_array(data) > 0 if isinstance(data, (bytes, bytearray)) else None
