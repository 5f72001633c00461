"""The static leaderboard site: DuckDB in, Jinja2 templates out, browsable from file://.

Everything a page shows comes from the results database, downstream of the run and of the
leaderboard's assembly (`harness.results.leaderboard`): ranks, tie marks and corruption errors are
read from the `leaderboard` table, method cards from the runs that used them, board editions
from the `boards` table. Building the site imports neither torch nor the method registry and
reads no board file. Plots are SVG files made at build time and loaded through <img> (so
nothing in them can run), every table is also written as CSV and JSON, and the pages need no
network.
"""

from __future__ import annotations

import hashlib
import io
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
from PIL import Image

from harness import __version__
from harness.core.maps import decode
from harness.core.metrics import METRICS, column_key, leaderboard_metrics, names
from harness.core.paths import project_root
from harness.results import plots
from harness.results.leaderboard import TIE_ALPHA, edition
from harness.results.store import ResultStore


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

    def plot(self, render: Callable[..., str | bytes], data: object, name: str, suffix: str = "svg") -> str:
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

    # --- data -----------------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        return self.store.query("SELECT * FROM runs WHERE status = 'ok' ORDER BY finished_at")

    def board_table(self, board: str) -> pd.DataFrame:
        """One row per run on the board's current edition, as assembled in the leaderboard table
        (ranked best runs first), with every column of the leaderboard."""
        if board not in self._board_tables:
            self._board_tables[board] = self._board_table(board)
        return self._board_tables[board]

    def _board_table(self, board: str) -> pd.DataFrame:
        entries = self.store.query(
            "SELECT l.run_id, l.method, l.value, l.ci_low AS value_ci_low, l.ci_high AS value_ci_high, l.best, "
            "l.rank, l.tie_p, l.tied, l.mce, l.relative_mce, l.flag, l.seeds, l.seed_mean, l.seed_std, r.seed, "
            "r.device, r.weights_id, r.finished_at, r.precision FROM leaderboard l JOIN runs r USING (run_id) "
            "WHERE l.board = ? ORDER BY l.rank NULLS LAST, l.value DESC NULLS LAST",
            [board],
        )
        if entries.empty:
            return entries
        ids = entries["run_id"].tolist()
        metrics = self.store.query(
            "SELECT run_id, metric, value, ci_low, ci_high FROM metrics WHERE condition = 'clean' AND slice = 'all' "
            "AND run_id IN (SELECT unnest(?))",
            [ids],
        )
        wide = metrics.pivot(index="run_id", columns="metric", values="value")
        wide.columns = [column_key(c) for c in wide.columns]
        located = metrics[metrics["metric"].isin(names("localization"))]
        for bound in ("ci_low", "ci_high") if not located.empty else ():
            interval = located.pivot(index="run_id", columns="metric", values=bound)
            interval.columns = [f"{column_key(c)}_{bound}" for c in interval.columns]
            wide = wide.join(interval)
        robustness = self.store.query(
            "SELECT run_id, mean_corrupted_auroc, worst_auroc, worst_condition, worst_severity FROM robustness "
            "WHERE run_id IN (SELECT unnest(?))",
            [ids],
        ).set_index("run_id")
        latency = self.store.query(
            "SELECT run_id, batch_size, p50_ms, throughput_ips, param_count, device AS "
            "latency_device FROM latency WHERE run_id IN (SELECT unnest(?))",
            [ids],
        )
        one = latency[latency["batch_size"] == 1].set_index("run_id")[["p50_ms", "param_count", "latency_device"]]
        many = latency[latency["batch_size"] == 32].set_index("run_id")[["throughput_ips"]]
        table = entries.set_index("run_id").join(wide).join(robustness).join(one).join(many)
        return table.join(self.submissions(ids, board)).reset_index()

    def submissions(self, ids: list[str], board: str) -> pd.DataFrame:
        """Per submitted run: verification status and date, the reported primary metric and a
        short code reference (runs of this database have none)."""
        ed = edition(self.store, board)
        frame = self.store.query(
            "SELECT s.run_id, s.status AS verification, s.verified_at, s.code, s.bundle, r.value AS reported_value "
            "FROM submissions s LEFT JOIN reported_metrics r ON r.run_id = s.run_id AND r.condition = 'clean' "
            "AND r.slice = 'all' AND r.metric = ? WHERE s.run_id IN (SELECT unnest(?))",
            [ed.primary_metric if ed else "auroc", ids],
        )
        frame["code_ref"] = [code_reference(json.loads(c)) for c in frame["code"]]
        return frame.drop(columns="code").set_index("run_id")

    def superseded(self, board: str) -> int:
        """ok runs of the board not on its current edition (not in its leaderboard)."""
        return int(
            self.store.query(
                "SELECT count(*) AS n FROM runs WHERE board = ? AND status = 'ok' "
                "AND run_id NOT IN (SELECT run_id FROM leaderboard WHERE board = ?)",
                [board, board],
            )["n"].iloc[0]
        )

    def curve_points(self, board: str, run_id: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(labels, scores) of a run's clean test predictions for ROC and PR curves; on
        multi-label boards pooled over (image, finding) pairs (micro average)."""
        frame = self.store.predictions(run_id)
        frame = frame[(frame["split"] == "test") & (frame["condition"] == "clean")]
        if frame.empty:
            return {}
        if frame["score"].notna().all():
            return {board: (frame["label"].to_numpy(), frame["score"].to_numpy())}
        pooled = np.concatenate(frame["target_labels"].to_numpy()), np.concatenate(frame["scores"].to_numpy())
        return {f"{board} (micro over findings)": pooled}

    def card(self, method: str) -> dict | None:
        """The method's card as its most recent run stored it."""
        cards = self.store.query(
            "SELECT method_card FROM runs WHERE method = ? AND method_card IS NOT NULL "
            "ORDER BY finished_at DESC NULLS LAST LIMIT 1",
            [method],
        )
        return json.loads(cards.iloc[0, 0]) if not cards.empty else None

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
            [
                {k: b[k] for k in ("board", "task", "primary", "methods", "best_method", "best_value", "updated")}
                for b in boards
            ]
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
        ed = edition(self.store, board)
        task = ed.task if ed else "anomaly"
        primary = column_key(ed.primary_metric if ed else "auroc")
        best = table[table["best"].fillna(False).astype(bool)].reset_index(drop=True) if not table.empty else table
        name = slug(board)
        exported = self.export(best, f"{name}-leaderboard")
        all_runs = self.export(table, f"{name}-all-runs")
        ids = best["run_id"].tolist() if not best.empty else []
        heatmap, corrupt = self.corruption_heatmap(best, ids, name)
        points = best.dropna(subset=["p50_ms"]) if not best.empty else best
        scatter = None
        if not points.empty:
            scatter = self.plot(
                plots.accuracy_vs_latency,
                points.rename(columns={"p50_ms": "latency_ms"})[["method", "auroc", "latency_ms"]],
                f"{name}-scatter",
            )
        slice_table, slice_grid = self.slice_grid(ids, name)
        localization = self.localization_table(ids, name)
        located = [c for c in columns(task, ("localization",)) if c[0] in best.columns] if localization else []
        info = {
            "board": board,
            "slug": name,
            "task": task,
            "primary": primary,
            "description": ed.description if ed else "",
            "methods": len(best),
            "superseded": self.superseded(board),
            "split_sha256": ed.split_sha256 if ed else "",
            "dataset_sha256": (ed.dataset_sha256 or "") if ed else "",
            "best_method": best.iloc[0]["method"] if len(best) else "",
            "best_value": best.iloc[0]["value"] if len(best) else None,
            "updated": str(table["finished_at"].max())[:16] if not table.empty else "",
        }
        flagged = table[table["flag"].notna()] if not table.empty else table
        self.write_page(
            f"boards/{name}.html",
            "board.html",
            info=info,
            best=best,
            all_runs=all_runs,
            flagged=flagged,
            table=exported,
            columns=columns(task, ("ranking", "calibration")) + located + columns(task, ("robustness", "cost")),
            localization=localization,
            heatmap=heatmap,
            scatter=scatter,
            slices=slice_table,
            slice_grid=slice_grid,
            corruptions=corrupt,
            tie_alpha=TIE_ALPHA,
        )
        return info

    def corruption_heatmap(self, best: pd.DataFrame, ids: list[str], name: str) -> tuple[str | None, Table | None]:
        """AUROC per method (rows, in rank order) and corrupted condition (columns)."""
        corrupt = self.store.query(
            "SELECT m.run_id, r.method, m.condition, m.severity, m.value FROM metrics m JOIN runs r USING (run_id) "
            "WHERE m.slice = 'all' AND m.metric = 'auroc' AND m.condition <> 'clean' "
            "AND m.run_id IN (SELECT unnest(?))",
            [ids],
        )
        if corrupt.empty:
            return None, None
        corrupt["column"] = corrupt["condition"] + " s" + corrupt["severity"].astype(str)
        grid = corrupt.pivot(index="method", columns="column", values="value")
        grid = grid.reindex(index=[m for m in best["method"] if m in grid.index])
        return self.plot(plots.corruption_heatmap, grid, f"{name}-corruptions"), self.export(
            grid.reset_index(), f"{name}-corruptions"
        )

    def localization_table(self, ids: list[str], name: str) -> Table | None:
        """Localization metrics of the best runs, overall and per finding, with intervals."""
        frame = self.store.query(
            "SELECT r.method, m.slice, m.metric, m.value, m.ci_low, m.ci_high, m.n, m.n_pos, m.flag FROM metrics m "
            "JOIN runs r USING (run_id) WHERE m.condition = 'clean' AND m.metric IN (SELECT unnest(?)) "
            "AND m.run_id IN (SELECT unnest(?)) ORDER BY m.slice, r.method, m.metric",
            [list(names("localization")), ids],
        )
        return self.export(frame, f"{name}-localization") if not frame.empty else None

    def slice_grid(self, ids: list[str], name: str) -> tuple[Table, pd.DataFrame]:
        """Per-slice AUROC of the best runs: the exported rows, and the grid shown (slice x method)."""
        slices = self.store.query(
            "SELECT r.method, m.slice, m.value, m.ci_low, m.ci_high, m.n, m.n_pos, m.flag FROM metrics m "
            "JOIN runs r USING (run_id) WHERE m.condition = 'clean' AND m.metric = 'auroc' AND m.slice <> 'all' "
            "AND m.run_id IN (SELECT unnest(?)) ORDER BY m.slice",
            [ids],
        )
        grid = pd.DataFrame()
        if not slices.empty:
            # What a reader sees per cell: the AUROC, or why there is none.
            # A value with a flag is a multi-label macro mean over only some findings.
            slices["shown"] = [
                "too few cases" if not np.isfinite(v) else _num(v) + ("*" if isinstance(f, str) else "")
                for v, f in zip(slices["value"], slices["flag"], strict=True)
            ]
            grid = slices.pivot(index="slice", columns="method", values="shown").fillna("no result").reset_index()
        return self.export(slices, f"{name}-slices"), grid

    def method_page(self, method: str) -> None:
        boards = self.store.query("SELECT DISTINCT board FROM runs WHERE method = ? AND status = 'ok'", [method])
        results, curves, reliability, severity, galleries = [], {}, {}, {}, {}
        for board in sorted(boards["board"]):
            current = self.board_table(board)
            current = current[(current["method"] == method) & current["best"].fillna(False).astype(bool)]
            if current.empty:  # only runs on a superseded edition, or with altered predictions
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
            galleries[board] = self.gallery(best["run_id"], f"{slug(method)}-{slug(board)}")
        name = slug(method)
        reliability_plot = (
            self.plot(plots.reliability_diagrams, reliability, f"{name}-reliability") if reliability else None
        )
        severity_plot = self.plot(plots.auroc_vs_severity, severity, f"{name}-severity") if severity else None
        frame = pd.DataFrame(results)
        exported = self.export(frame, f"method-{name}")
        roc = self.plot(plots.roc_and_pr, curves, f"{name}-roc") if curves else None
        params = (
            self.store.query("SELECT params FROM runs WHERE run_id = ?", [frame.iloc[0]["run_id"]]).iloc[0, 0]
            if len(frame)
            else None
        )
        self.write_page(
            f"methods/{name}.html",
            "method.html",
            method=method,
            card=self.card(method),
            results=exported,
            roc=roc,
            reliability=reliability_plot,
            severity=severity_plot,
            params=json.loads(params or "{}"),
            weights=frame.iloc[0]["weights_id"] if len(frame) else "n/a",
            galleries={b: g for b, g in galleries.items() if g},
        )

    def gallery(self, run_id: str, name: str) -> list[dict]:
        """Thumbnails of a run's gallery: each image with its map and ground truth overlaid."""
        rows = self.store.query("SELECT * FROM gallery WHERE run_id = ? ORDER BY kind, finding, rank", [run_id])
        if rows.empty:
            return []
        run = self.store.run(run_id)
        maps = self.store.maps(run_id) if isinstance(run.get("maps_sha256"), str) else pd.DataFrame()
        stored = {(r.image_id, r.condition, int(r.severity)): r._asdict() for r in maps.itertuples()}
        targets = json.loads(run["targets"]) if isinstance(run.get("targets"), str) else []
        heats = []
        for row in rows.itertuples():
            heat = stored.get((row.image_id, row.condition, int(row.severity)))
            heats.append(
                None if heat is None else decode(heat)[targets.index(row.finding) if row.finding in targets else 0]
            )
        # One scale for the run, from its clean images: a corrupted case study saturates it
        # rather than washing out every other map.
        clean = [h for h, c in zip(heats, rows["condition"], strict=True) if h is not None and c == "clean"]
        shown = clean or [h for h in heats if h is not None]
        scale = tuple(np.percentile(np.concatenate([h.ravel() for h in shown]), [1, 99])) if shown else (0.0, 1.0)
        out = []
        for k, (row, heat) in enumerate(zip(rows.itertuples(), heats, strict=True)):
            condition = "clean" if row.condition == "clean" else f"{row.condition} s{row.severity}"
            caption = f"{row.image_id} · {condition}" + (f" · score {row.score:.3g}" if row.score == row.score else "")
            thumbnail = (_png_array(row.image), heat, _mask(row.mask), json.loads(row.boxes), scale)
            path = self.plot(plots.overlay_job, thumbnail, f"{name}-g{k}", "png")
            out.append({"kind": row.kind, "finding": row.finding, "path": path, "caption": caption})
        return out

    def findings_section(self, run: dict) -> dict | None:
        """A multi-label run's clean test metrics per finding (value and interval), its ROC and
        PR curves per finding, and its risk-coverage curves (by confidence and, when the method
        reports a variance, by uncertainty)."""
        if run.get("task") != "multilabel":
            return None
        run_id, name = run["run_id"], f"run-{slug(run['run_id'])}"
        metrics = self.store.query(
            "SELECT slice, metric, value, ci_low, ci_high, n_pos, flag FROM metrics "
            "WHERE run_id = ? AND condition = 'clean' AND slice LIKE 'finding=%' ORDER BY slice, metric",
            [run_id],
        )
        overall = self.store.query(
            "SELECT metric, value, ci_low, ci_high FROM metrics "
            "WHERE run_id = ? AND condition = 'clean' AND slice = 'all'",
            [run_id],
        ).set_index("metric")
        targets = json.loads(run.get("targets") or "[]")
        frame = self.store.predictions(run_id)
        test = frame[(frame["split"] == "test") & (frame["condition"] == "clean")]
        curves = {}
        if not test.empty:
            truth, scores = np.stack(test["target_labels"].to_numpy()), np.stack(test["scores"].to_numpy())
            curves = {
                t: (truth[:, k], scores[:, k]) for k, t in enumerate(targets) if truth[:, k].min() != truth[:, k].max()
            }
        risk = self.store.query(
            "SELECT coverage, risk, coalesce(abstain_by, 'confidence') AS abstain_by FROM risk_coverage "
            "WHERE run_id = ? AND condition = 'clean' ORDER BY abstain_by, coverage",
            [run_id],
        )
        metrics = metrics.assign(finding=metrics["slice"].str.removeprefix("finding="))
        rows = [
            {"finding": f, **{r.metric: r._asdict() for r in group.itertuples(index=False)}}
            for f, group in metrics.groupby("finding", sort=False)
        ]
        return {
            "table": self.export(metrics, f"{name}-findings"),
            "rows": rows,
            "columns": FINDING_COLUMNS,
            "overall": {m: r._asdict() for m, r in zip(overall.index, overall.itertuples(index=False), strict=True)},
            "curves": self.plot(plots.roc_and_pr, curves, f"{name}-findings-roc-pr") if curves else None,
            "risk": self.plot(plots.risk_coverage_curves, risk, f"{name}-risk-coverage") if not risk.empty else None,
        }

    def run_page(self, run_id: str) -> None:
        run = self.store.run(run_id)
        submission = self.submission(run_id)
        run["versions"] = json.loads(run["versions"] or "{}")
        if isinstance(run.get("diagnostics"), str):
            run["diagnostics"] = json.dumps(json.loads(run["diagnostics"]), indent=1)
        latency = self.export(
            self.store.query("SELECT * FROM latency WHERE run_id = ? ORDER BY batch_size", [run_id]),
            f"run-{slug(run_id)}-latency",
        )
        findings = self.findings_section(run)
        self.write_page(
            f"runs/{slug(run_id)}.html", "run.html", run=run, latency=latency, submission=submission, findings=findings
        )

    def submission(self, run_id: str) -> dict | None:
        """A submitted run's verification, and its clean test metrics reported beside verified."""
        rows = self.store.query("SELECT * FROM submissions WHERE run_id = ?", [run_id])
        if rows.empty:
            return None
        info = rows.iloc[0].to_dict()
        info["notes"] = json.loads(info["notes"] or "[]")
        info["code_ref"] = code_reference(json.loads(info["code"]))
        both = self.store.query(
            "SELECT metric, r.value AS reported, m.value AS verified "
            "FROM (SELECT metric, value FROM reported_metrics WHERE run_id = ? AND condition = 'clean' "
            "AND slice = 'all') r FULL JOIN (SELECT metric, value FROM metrics WHERE run_id = ? "
            "AND condition = 'clean' AND slice = 'all') m USING (metric) ORDER BY metric",
            [run_id, run_id],
        )
        info["metrics"] = self.export(both, f"run-{slug(run_id)}-reported-vs-verified")
        return info


FINDING_COLUMNS = [(m.name, m.label) for _, m in METRICS.items() if m.per_finding and "multilabel" in m.tasks]
"""The per-finding table of a multi-label run page (F1, precision, recall at the threshold)."""


def columns(task: str, groups: tuple[str, ...]) -> list[tuple[str, str, bool]]:
    """A board table's columns of the metric groups: (key, label, lower is better)."""
    return [(m.key, m.label_for(task), m.lower_is_better) for m in leaderboard_metrics(task, groups)]


def code_reference(code: dict) -> str:
    """A submission's code in a few words: its files' names and hashes at a commit, or a plugin."""
    if "plugin" in code:
        return f"plugin {code['plugin'].get('distribution', '?')} {code['plugin'].get('version', '?')}"
    files = ", ".join(f"{path} ({digest[:8]})" for path, digest in code.get("files", {}).items())
    return f"{files} at {code.get('commit', '?')[:10]}"


def _png_array(data: object) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(bytes(data))))


def _mask(data: object) -> np.ndarray | None:
    return _png_array(data) > 0 if isinstance(data, (bytes, bytearray)) else None


def _render(job: tuple[Callable[..., str | bytes], object, Path]) -> None:
    render, data, path = job
    out = render(data)
    if isinstance(out, bytes):
        path.write_bytes(out)
    else:
        path.write_text(out)


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
