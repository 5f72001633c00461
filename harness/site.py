"""The static leaderboard site: DuckDB in, Jinja2 templates out, browsable from file://.

Everything a page shows comes from the results database; plots are SVG files made at build
time and loaded through <img> (so nothing in them can run), every table is also written as
CSV and JSON, and the pages need no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from harness import __version__, plots
from harness.boards import load_board
from harness.compare import compare_multilabel, evaluated_findings, multilabel_arrays, tied_with_leader
from harness.errors import XRBenchError
from harness.paths import project_root
from harness.store import ResultStore

# Metrics shown in the board table: (column, label, lower is better).
COLUMNS = [
    ("auroc", "AUROC", False),
    ("auprc", "AUPRC", False),
    ("sens_at_95spec", "Sens@95%Spec", False),
    ("ece_none", "ECE before", True),
    ("ece_platt", "ECE after (Platt)", True),
    ("mean_corrupted_auroc", "Mean corrupted AUROC", False),
    ("worst_auroc", "Worst-case AUROC", False),
    ("p50_ms", "p50 latency (ms, batch 1)", True),
    ("throughput_ips", "Throughput (img/s, batch 32)", False),
    ("param_count", "Parameters", True),
]
MULTILABEL_COLUMNS = [
    ("auroc", "Macro AUROC", False),
    ("auprc", "Macro AUPRC", False),
    ("ece_none", "ECE before", True),
    ("ece_temperature", "ECE after (temperature)", True),
    *COLUMNS[5:],
]
TIE_ALPHA = 0.05
MULTILABEL_TIE_RESAMPLES = 500  # paired bootstrap of the macro AUROC per entry on a multi-label board


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


class SiteBuilder:
    def __init__(self, store: ResultStore, out: Path, templates: Path | None = None):
        self.store, self.out = store, out
        templates = templates or project_root() / "site" / "templates"
        self.env = Environment(
            loader=FileSystemLoader(templates),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["num"] = _num
        self.env.filters["slug"] = slug
        self.built_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        self._board_tables: dict[str, pd.DataFrame] = {}
        self._superseded: dict[str, int] = {}
        self._editions: dict[str, tuple[str, str]] = {}
        self._plots: list[tuple[Callable[..., str], object, Path]] = []

    # --- output helpers -------------------------------------------------------------------
    def write_page(self, path: str, template: str, **context: object) -> None:
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

    def plot(self, render: Callable[..., str], data: object, name: str) -> str:
        """Queue an SVG plot (rendered in parallel at the end of the build); returns its path."""
        self._plots.append((render, data, self.out / "plots" / f"{name}.svg"))
        return f"plots/{name}.svg"

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

    # --- data -----------------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        return self.store.query("SELECT * FROM runs WHERE status = 'ok' ORDER BY finished_at")

    def board_table(self, board: str) -> pd.DataFrame:
        """One row per ok run on the board's current split and dataset, with every column of the
        leaderboard (computed once). Results on an older manifest or different pixels are never
        ranked with current ones; they are only counted."""
        if board not in self._board_tables:
            table = self._board_table(board)
            split, dataset = self._editions[board] = self.current_edition(board, table)
            current = (table["split_sha256"] == split) & (table["dataset_sha256"] == dataset)
            self._superseded[board] = int((~current).sum())
            self._board_tables[board] = table[current]
        return self._board_tables[board]

    @staticmethod
    def current_edition(board: str, table: pd.DataFrame) -> tuple[str, str]:
        """(split, dataset) hashes ranked on a board: the board file's, or without a board file
        here, those of the most recent run."""
        try:
            definition = load_board(board)
            if definition.dataset.content_sha256:
                return definition.split_sha256, definition.dataset.content_sha256
            # Real datasets have no pixel hash: the board's full manifest is what is ranked.
            on_split = table[table["split_sha256"] == definition.split_sha256]
            if not on_split.empty:
                table = on_split
        except XRBenchError:
            pass
        latest = table.sort_values("finished_at").iloc[-1]
        return latest["split_sha256"], latest["dataset_sha256"]

    def _board_table(self, board: str) -> pd.DataFrame:
        runs = self.store.query(
            "SELECT run_id, method, seed, device, weights_id, finished_at, split_sha256, "
            "dataset_sha256 FROM runs WHERE board = ? AND status = 'ok'",
            [board],
        )
        if runs.empty:
            return runs
        ids = runs["run_id"].tolist()
        metrics = self.store.query(
            "SELECT run_id, metric, value, ci_low, ci_high FROM metrics WHERE condition = 'clean' AND slice = 'all' "
            "AND run_id IN (SELECT unnest(?))",
            [ids],
        )
        wide = metrics.pivot(index="run_id", columns="metric", values="value")
        wide.columns = [c.replace("@", "_at_") for c in wide.columns]  # usable as attribute names
        wide["auroc_ci_low"] = metrics[metrics["metric"] == "auroc"].set_index("run_id")["ci_low"]
        wide["auroc_ci_high"] = metrics[metrics["metric"] == "auroc"].set_index("run_id")["ci_high"]
        robustness = self.store.query("SELECT * FROM robustness WHERE run_id IN (SELECT unnest(?))", [ids])
        latency = self.store.query(
            "SELECT run_id, batch_size, p50_ms, throughput_ips, param_count, device AS "
            "latency_device FROM latency WHERE run_id IN (SELECT unnest(?))",
            [ids],
        )
        one = latency[latency["batch_size"] == 1].set_index("run_id")[["p50_ms", "param_count", "latency_device"]]
        many = latency[latency["batch_size"] == 32].set_index("run_id")[["throughput_ips"]]
        table = (
            runs.set_index("run_id")
            .join(wide)
            .join(
                robustness.set_index("run_id")[
                    ["mean_corrupted_auroc", "worst_auroc", "worst_condition", "worst_severity"]
                ]
            )
            .join(one)
            .join(many)
        )
        return table.reset_index().sort_values("auroc", ascending=False, kind="stable")

    def test_scores(self, run_ids: list[str], condition: str = "clean", severity: int = 0) -> pd.DataFrame:
        frame = self.store.query(
            "SELECT run_id, image_id, label, score FROM predictions WHERE split = 'test' AND condition = ? "
            "AND severity = ? AND run_id IN (SELECT unnest(?))",
            [condition, severity, run_ids],
        )
        return frame.pivot(index="image_id", columns="run_id", values="score").join(
            frame.drop_duplicates("image_id").set_index("image_id")["label"]
        )

    def board_task(self, board: str) -> str:
        """The board file's task; without the file here, what its runs stored."""
        try:
            return load_board(board).task
        except XRBenchError:
            multilabel = self.store.query(
                "SELECT count(*) AS n FROM runs WHERE board = ? AND targets IS NOT NULL", [board]
            )["n"].iloc[0]
            return "multilabel" if multilabel else "anomaly"

    def curve_points(self, board: str, run_id: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(labels, scores) of a run's clean test predictions for ROC and PR curves; on
        multi-label boards pooled over (image, finding) pairs (micro average)."""
        scores = self.test_scores([run_id]).dropna()
        if not scores.empty:
            return {board: (scores["label"].to_numpy(), scores[run_id].to_numpy())}
        frame = self.store.query(
            "SELECT scores, target_labels FROM predictions WHERE run_id = ? AND split = 'test' "
            "AND condition = 'clean' AND scores IS NOT NULL",
            [run_id],
        )
        if frame.empty:
            return {}
        pooled = np.concatenate(frame["target_labels"].to_numpy()), np.concatenate(frame["scores"].to_numpy())
        return {f"{board} (micro over findings)": pooled}

    def ties(self, best: pd.DataFrame, task: str) -> dict[str, float]:
        """p-value of each best run against the leader, among runs on the same split: DeLong on
        anomaly boards, the paired patient bootstrap of the macro AUROC on multi-label ones."""
        if best.empty:
            return {}
        leader_split = best.iloc[0]["split_sha256"]
        comparable = best[best["split_sha256"] == leader_split]
        if task == "multilabel":
            return self.multilabel_ties(comparable["run_id"].tolist())
        scores = self.test_scores(comparable["run_id"].tolist()).dropna()
        if len(comparable) < 2 or scores.empty:
            return {r: 1.0 for r in comparable["run_id"]}
        return tied_with_leader(scores["label"].to_numpy(), {r: scores[r].to_numpy() for r in comparable["run_id"]})

    def multilabel_ties(self, run_ids: list[str]) -> dict[str, float]:
        """Run ids in leaderboard order; the first is the leader, whose evaluated findings are used."""
        frame = self.store.query(
            "SELECT run_id, image_id, patient_id, scores, target_labels FROM predictions WHERE split = 'test' "
            "AND condition = 'clean' AND run_id IN (SELECT unnest(?)) ORDER BY run_id, image_id",
            [run_ids],
        )
        runs = {r: g for r, g in frame.groupby("run_id")}
        ties = {run_ids[0]: 1.0}
        leader = runs.get(run_ids[0])
        if leader is None:
            return ties
        targets, leader_logits = multilabel_arrays(leader)
        groups, columns = leader["patient_id"].to_numpy(), evaluated_findings(self.store, run_ids[0])
        for run_id in run_ids[1:]:
            other = runs.get(run_id)
            if other is None or leader["image_id"].tolist() != other["image_id"].tolist():
                continue
            comparison = compare_multilabel(
                targets,
                leader_logits,
                multilabel_arrays(other)[1],
                groups,
                n_resamples=MULTILABEL_TIE_RESAMPLES,
                columns=columns,
            )
            ties[run_id] = comparison.bootstrap_p
        return ties

    # --- pages ----------------------------------------------------------------------------
    def build(self) -> Path:
        if self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        shutil.copytree(project_root() / "site" / "static", self.out / "static")
        runs = self.runs()
        boards = []
        for board in sorted(runs["board"].unique()) if not runs.empty else []:
            boards.append(self.board_page(board))
        index = pd.DataFrame(
            [{k: b[k] for k in ("board", "task", "methods", "best_method", "best_auroc", "updated")} for b in boards]
        )
        self.write_page("index.html", "index.html", boards=boards, index=self.export(index, "boards"))
        for method in sorted(runs["method"].unique()) if not runs.empty else []:
            self.method_page(method)
        for run in runs.itertuples():
            self.run_page(run.run_id)
        self.render_plots()
        return self.out / "index.html"

    def board_page(self, board: str) -> dict:
        table = self.board_table(board)
        superseded = self._superseded[board]
        best = table.drop_duplicates("method").reset_index(drop=True)
        task = self.board_task(board)
        ties = self.ties(best, task)
        best["rank"] = np.arange(1, len(best) + 1)
        best["tie_p"] = best["run_id"].map(ties)
        best["tied"] = (best["tie_p"] >= TIE_ALPHA) & (best["rank"] > 1)
        name = slug(board)
        exported = self.export(best.drop(columns=["split_sha256", "dataset_sha256"]), f"{name}-leaderboard")
        all_runs = self.export(table.drop(columns=["split_sha256", "dataset_sha256"]), f"{name}-all-runs")
        ids = best["run_id"].tolist()
        corrupt = self.store.query(
            "SELECT m.run_id, r.method, m.condition, m.severity, m.value FROM metrics m JOIN runs r USING (run_id) "
            "WHERE m.slice = 'all' AND m.metric = 'auroc' AND m.condition <> 'clean' "
            "AND m.run_id IN (SELECT unnest(?))",
            [ids],
        )
        heatmap = None
        if not corrupt.empty:
            corrupt["column"] = corrupt["condition"] + " s" + corrupt["severity"].astype(str)
            grid = corrupt.pivot(index="method", columns="column", values="value")
            grid = grid.reindex(index=[m for m in best["method"] if m in grid.index])
            heatmap = self.plot(plots.corruption_heatmap, grid, f"{name}-corruptions")
            corrupt = self.export(grid.reset_index(), f"{name}-corruptions")
        points = best.dropna(subset=["p50_ms"])
        scatter = None
        if not points.empty:
            scatter = self.plot(
                plots.accuracy_vs_latency,
                points.rename(columns={"p50_ms": "latency_ms"})[["method", "auroc", "latency_ms"]],
                f"{name}-scatter",
            )
        slices = self.store.query(
            "SELECT r.method, m.slice, m.value, m.ci_low, m.ci_high, m.n, m.n_pos, m.flag FROM metrics m "
            "JOIN runs r USING (run_id) WHERE m.condition = 'clean' AND m.metric = 'auroc' AND m.slice <> 'all' "
            "AND m.run_id IN (SELECT unnest(?)) ORDER BY m.slice",
            [ids],
        )
        slice_grid = pd.DataFrame()
        if not slices.empty:
            # What a reader sees per cell: the AUROC, or why there is none.
            # A value with a flag is a multi-label macro mean over only some findings.
            slices["shown"] = [
                "too few cases" if not np.isfinite(v) else _num(v) + ("*" if isinstance(f, str) else "")
                for v, f in zip(slices["value"], slices["flag"], strict=True)
            ]
            slice_grid = slices.pivot(index="slice", columns="method", values="shown").fillna("no result").reset_index()
        slice_table = self.export(slices, f"{name}-slices")
        updated = str(table["finished_at"].max())[:16] if not table.empty else ""
        info = {
            "board": board,
            "slug": name,
            "task": task,
            "methods": len(best),
            "superseded": superseded,
            "split_sha256": self._editions[board][0],
            "dataset_sha256": self._editions[board][1],
            "best_method": best.iloc[0]["method"] if len(best) else "",
            "best_auroc": best.iloc[0]["auroc"] if len(best) else None,
            "updated": updated,
        }
        self.write_page(
            f"boards/{name}.html",
            "board.html",
            info=info,
            best=best,
            all_runs=all_runs,
            table=exported,
            columns=MULTILABEL_COLUMNS if task == "multilabel" else COLUMNS,
            heatmap=heatmap,
            scatter=scatter,
            slices=slice_table,
            slice_grid=slice_grid,
            corruptions=corrupt if heatmap else None,
            tie_alpha=TIE_ALPHA,
        )
        return info

    def method_page(self, method: str) -> None:
        from harness.errors import UnknownMethodError
        from harness.registry import get_method

        try:
            card = get_method(method).card
        except UnknownMethodError:
            card = None
        table = self.store.query("SELECT board, run_id FROM runs WHERE method = ? AND status = 'ok'", [method])
        results, curves, reliability, severity = [], {}, {}, {}
        for board in sorted(table["board"].unique()):
            current = self.board_table(board)
            current = current[current["method"] == method]
            if current.empty:  # only runs on a superseded split or dataset
                continue
            best = current.iloc[0].copy()
            best["board"] = board
            results.append(best)
            curves.update(self.curve_points(board, best["run_id"]))
            bins = self.store.query(
                "SELECT calibrator, mean_confidence, accuracy, count FROM calibration_bins "
                "WHERE run_id = ? AND condition = 'clean' ORDER BY calibrator, \"index\"",
                [best["run_id"]],
            )
            if not bins.empty:
                reliability[board] = bins
            sev = self.store.query(
                "SELECT condition, severity, value FROM metrics WHERE run_id = ? AND slice = 'all' "
                "AND metric = 'auroc' AND condition <> 'clean'",
                [best["run_id"]],
            )
            if not sev.empty:
                severity[board] = (sev, best["auroc"])
        name = slug(method)
        reliability_plot = (
            self.plot(plots.reliability_diagrams, reliability, f"{name}-reliability") if reliability else None
        )
        severity_plot = self.plot(plots.auroc_vs_severity, severity, f"{name}-severity") if severity else None
        frame = pd.DataFrame(results)
        exported = self.export(
            frame.drop(columns=["split_sha256", "dataset_sha256"], errors="ignore"), f"method-{slug(method)}"
        )
        roc = self.plot(plots.roc_and_pr, curves, f"{slug(method)}-roc") if curves else None
        params = (
            self.store.query("SELECT params FROM runs WHERE run_id = ?", [frame.iloc[0]["run_id"]]).iloc[0, 0]
            if len(frame)
            else None
        )
        self.write_page(
            f"methods/{slug(method)}.html",
            "method.html",
            method=method,
            card=card,
            results=exported,
            roc=roc,
            reliability=reliability_plot,
            severity=severity_plot,
            params=json.loads(params or "{}"),
            weights=frame.iloc[0]["weights_id"] if len(frame) else "n/a",
        )

    def run_page(self, run_id: str) -> None:
        run = self.store.run(run_id)
        run["versions"] = json.loads(run["versions"] or "{}")
        latency = self.export(
            self.store.query("SELECT * FROM latency WHERE run_id = ? ORDER BY batch_size", [run_id]),
            f"run-{slug(run_id)}-latency",
        )
        self.write_page(f"runs/{slug(run_id)}.html", "run.html", run=run, latency=latency)


def _render(job: tuple[Callable[..., str], object, Path]) -> None:
    render, data, path = job
    path.write_text(render(data))


def _num(value: object, digits: int = 3) -> str:
    """Numbers for display: fixed digits, thousands separators for counts, n/a for missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def build_site(db: Path, out: Path) -> Path:
    with ResultStore(db) as store:
        return SiteBuilder(store, out).build()
