"""The plots of the leaderboard site and of the Python API, as matplotlib figures.

Figures are built as `Figure` objects, never through pyplot, and the style is applied only
while one is drawn or saved: importing this module changes neither matplotlib's backend nor
its settings, so a notebook's own plots stay as they were. The site saves them as static SVG
(`svg`): text stays text in a generic font family, so the browser fetches no fonts, and pages
load the files through <img>, where nothing in an SVG can run."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from typing import ParamSpec

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from sklearn.metrics import precision_recall_curve, roc_curve

STYLE = {
    "svg.fonttype": "path",
    "svg.hashsalt": "xrbench",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
P = ParamSpec("P")


def styled(build: Callable[P, Figure]) -> Callable[P, Figure]:
    """`build` run under the plots' style (font size and spines are read as artists are made)."""

    @functools.wraps(build)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            fig = build(*args, **kwargs)
            fig.tight_layout()
            return fig

    return wrapper


def svg(fig: Figure) -> str:
    """The figure as inline SVG, byte-stable (no date, a fixed hash salt)."""
    buffer = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prologue and DOCTYPE for inline use


@styled
def corruption_heatmap(table: pd.DataFrame) -> Figure:
    """`table`: rows = methods, columns = 'corruption sN', values = AUROC."""
    fig = Figure(figsize=(max(6, 0.42 * table.shape[1]), 0.45 * table.shape[0] + 1.6))
    ax = fig.subplots()
    im = ax.imshow(table.to_numpy(dtype=float), cmap="viridis", vmin=0.4, vmax=1.0, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=60, ha="right")
    ax.set_yticks(range(table.shape[0]), table.index)
    for (i, j), v in np.ndenumerate(table.to_numpy(dtype=float)):
        if v == v:
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.75 else "black")
    fig.colorbar(im, ax=ax, label="AUROC", fraction=0.03)
    return fig


@styled
def accuracy_vs_latency(points: pd.DataFrame) -> Figure:
    """`points`: method, auroc, latency_ms."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    ax.scatter(points["latency_ms"], points["auroc"], color="#1f5fa8")
    for r in points.itertuples():
        ax.annotate(str(r.method), (r.latency_ms, r.auroc), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency at batch 1 (ms, log scale)")
    ax.set_ylabel("clean AUROC")
    return fig


@styled
def roc_and_pr(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """`curves`: label -> (labels, scores); ROC on the left, precision-recall on the right."""
    fig = Figure(figsize=(8, 3.6))
    roc_ax, pr_ax = fig.subplots(1, 2)
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        roc_ax.plot(fpr, tpr, label=name)
        precision, recall, _ = precision_recall_curve(y, s)
        pr_ax.plot(recall, precision, label=name)
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc_ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    roc_ax.legend(fontsize=7, loc="lower right")
    return fig


@styled
def risk_coverage_curves(frame: pd.DataFrame) -> Figure:
    """`frame`: abstain_by, coverage, risk (one condition): the error rate of what is kept when
    the rest is deferred, least confident (or most uncertain) first."""
    fig = Figure(figsize=(4.6, 3.6))
    ax = fig.subplots()
    for name, group in frame.groupby("abstain_by", sort=True):
        ax.plot(group["coverage"], group["risk"], label=f"defer by {name}")
    ax.set(xlabel="coverage (fraction of decisions kept)", ylabel="risk (error rate of kept decisions)", xlim=(0, 1))
    ax.legend(fontsize=7)
    return fig


@styled
def reliability_diagrams(panels: dict[str, pd.DataFrame]) -> Figure:
    """One panel per board; each frame: calibrator, mean_confidence, accuracy (clean condition)."""
    fig = Figure(figsize=(3.8 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, bins) in zip(axes[0], panels.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        for name, group in bins.groupby("calibrator", sort=False):
            ax.plot(group["mean_confidence"], group["accuracy"], marker="o", markersize=3, label=str(name))
        ax.set(xlabel="mean predicted P(abnormal)", ylabel="fraction abnormal", xlim=(0, 1), ylim=(0, 1), title=title)
        ax.legend(fontsize=7, title="calibrator", title_fontsize=7)
    return fig


@styled
def auroc_vs_severity(panels: dict[str, tuple[pd.DataFrame, float]]) -> Figure:
    """One panel per board; each (frame of condition, severity, value (AUROC), clean AUROC)."""
    fig = Figure(figsize=(4.6 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, (frame, clean)) in zip(axes[0], panels.items(), strict=True):
        for name, group in frame.groupby("condition"):
            group = group.sort_values("severity")
            ax.plot([0, *group["severity"]], [clean, *group["value"]], marker="o", markersize=3, label=str(name))
        ax.set(xlabel="severity (0 = clean)", ylabel="AUROC", title=title)
        ax.set_xticks(sorted({0, *frame["severity"].astype(int)}))
        ax.legend(fontsize=7, ncol=2)
    return fig


def overlay_job(args: tuple) -> bytes:
    """`overlay` with its arguments in one tuple (the form plot jobs take)."""
    return overlay(*args)


def overlay_figure(
    image: np.ndarray,
    heat: np.ndarray | None,
    mask: np.ndarray | None,
    boxes: list,
    scale: tuple[float, float],
    width: float = 2.6,
    dpi: int = 96,
) -> Figure:
    """The image in grey, the map over it (upsampled, translucent, on the run's common `scale`),
    the ground truth's outline (red) and boxes (yellow); `width` in inches."""
    fig = Figure(figsize=(width, width * image.shape[0] / image.shape[1]), dpi=dpi)
    ax = fig.subplots()
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    extent = (-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5)
    if heat is not None:
        ax.imshow(
            heat, cmap="inferno", alpha=0.45, extent=extent, interpolation="bilinear", vmin=scale[0], vmax=scale[1]
        )
    if mask is not None and mask.any():
        ax.contour(mask, levels=[0.5], colors="red", linewidths=0.8)
    for x, y, w, h in boxes:
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, color="yellow", linewidth=0.8))
    ax.axis("off")
    fig.tight_layout(pad=0.2)
    return fig


def overlay(
    image: np.ndarray, heat: np.ndarray | None, mask: np.ndarray | None, boxes: list, scale: tuple[float, float]
) -> bytes:
    """`overlay_figure` as a PNG of at most 256 px, in a 64-colour palette (a third of the bytes
    of full colour, same look)."""
    fig = overlay_figure(image, heat, mask, boxes, scale)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    buffer = io.BytesIO()
    Image.fromarray(rgb).quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
