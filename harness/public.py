"""xrbench's public Python API: what `import xrbench` offers, and what the command line calls.

    import xrbench as xb

    padim = xb.bench("padim", board="synth-cxr-ad")    # fit, predict, score, store: a Run
    padim.metrics                                       # one row per metric, condition and slice
    knn = xb.bench("knn")
    padim.compare(knn)                                  # the board task's paired test
    xb.leaderboard("synth-cxr-ad")

Runs live in a DuckDB file: `db=` where a function takes one, else $XRBENCH_DB, else
`results/xrbench.duckdb` of the workspace. The database is opened only for each call, so that
the command line, the site and other notebooks can use it meanwhile. Errors a user can fix
raise `XRBenchError` subclasses with the message the command line prints; in IPython and
Jupyter they show as that message, without a traceback.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console

from harness.core.errors import XRBenchError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from harness.run.runner import BenchResult
    from harness.scoring.significance import Comparison
    from harness.submissions.bundles import Bundle
    from harness.submissions.verify import Verification

RUN_COLUMNS = ("run_id", "board", "method", "seed", "status", "params", "started_at", "finished_at")
"""The runs table's columns that `results()` shows first (every other one follows)."""
METRIC_COLUMNS = ("metric", "condition", "severity", "slice", "value", "ci_low", "ci_high", "n", "n_pos", "flag")


def database(db: str | Path | None = None) -> Path:
    """The results database a call uses: `db`, else $XRBENCH_DB, else the workspace's."""
    from harness.core.paths import default_db

    return Path(db) if db is not None else default_db()


def _existing(db: str | Path | None) -> Path:
    path = database(db)
    if not path.is_file():
        raise XRBenchError(f"no results database at {path}: run xrbench.bench(...) first, or give db=")
    return path


def _console(progress: bool) -> Console:
    """Where progress bars go: stderr (a widget in Jupyter, through rich), or nowhere."""
    return Console(stderr=True) if progress else Console(file=io.StringIO())


def bench(
    method: str,
    board: str | Path = "synth-cxr-ad",
    *,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    device: str = "auto",
    corruptions: bool = True,
    precision: str = "fp32",
    explain: str | None = None,
    db: str | Path | None = None,
    progress: bool = True,
) -> Run:
    """Run `method` on `board` (a name, or a board file's path) and store it, as `xrbench bench`
    does: fit on the training split, predict the validation and test splits (and the board's
    stress suite unless `corruptions=False`), score, measure latency. `params` are the method's
    (typed values, or strings as on the command line); `seed` defaults to the board's;
    `explain` ("gradcam" or "gradcam++") keeps saliency maps of the score."""
    from harness.api.index import check_params_early

    values = dict(params or {})
    check_params_early(method, values)  # a typo answers before torch is imported
    from harness.run.runner import run_bench
    from harness.run.spec import RunOptions, RunSpec

    spec = RunSpec.build(method, board, seed, values, RunOptions(device, precision, corruptions, explain))
    result = run_bench(spec, database(db), _console(progress))
    return Run(result.run_id, result.db_path, result, board_file=board if Path(board).suffix == ".toml" else None)


class Run:
    """A stored run, read from its database when first asked for (predictions and maps are
    checked against the hashes the run recorded). `Run(run_id, db)` opens any stored run;
    `bench` returns one with `result`, what the run measured, attached. `board_file`: the
    board's file, when it is not leaderboards/<board>.toml (`explain` reads its images)."""

    def __init__(
        self,
        run_id: str,
        db: str | Path | None = None,
        result: BenchResult | None = None,
        board_file: str | Path | None = None,
    ) -> None:
        self.run_id = run_id
        self.db = _existing(db)
        self.result = result
        self.board_file = board_file
        self.record  # noqa: B018  (an unknown run id fails here, not at first use)

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}: {self.method} on {self.board}, seed {self.seed}, {self.status})"

    def _store(self) -> Any:
        from harness.results.store import ResultStore

        return ResultStore(self.db)

    @cached_property
    def record(self) -> dict[str, Any]:
        """The run's row of the `runs` table: provenance, code identity, hashes, timings."""
        with self._store() as store:
            return store.run(self.run_id)

    @property
    def method(self) -> str:
        return str(self.record["method"])

    @property
    def board(self) -> str:
        return str(self.record["board"])

    @property
    def seed(self) -> int:
        return int(self.record["seed"])

    @property
    def status(self) -> str:
        """ok, failed, or running (a run of another process, or one that was killed)."""
        return str(self.record["status"])

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """Every metric, those of the clean test split over all its images first: columns
        metric, condition, severity, slice, value, ci_low and ci_high (the 95% patient-bootstrap
        interval), n, n_pos (abnormal images) and flag (why a value is missing or unreliable)."""
        self._check_ok()
        from harness.results import queries

        with self._store() as store:
            frame = queries.run_table(store, "metrics", self.run_id, METRIC_COLUMNS)
        frame = frame.assign(corrupted=frame["condition"] != "clean", sliced=frame["slice"] != "all")
        order = ["corrupted", "condition", "severity", "sliced", "slice", "metric"]
        return frame.sort_values(order, ignore_index=True).drop(columns=["corrupted", "sliced"])

    @cached_property
    def predictions(self) -> pd.DataFrame:
        """One row per image, split and condition: the label, the patient and the score (the
        logits of a multi-label board), in a stable order."""
        self._check_ok()
        with self._store() as store:
            return store.predictions(self.run_id)

    @cached_property
    def maps(self) -> pd.DataFrame:
        """The maps the run kept (validation and test, clean and a case study of corrupted
        images): split, condition, severity, image_id and `map`, a (channels, h, w) float32 array.
        Empty when the method makes none."""
        from harness.core.maps import decode

        self._check_ok()
        with self._store() as store:
            frame = store.maps(self.run_id)
        keep = ["split", "condition", "severity", "image_id"]
        return frame[keep].assign(map=[decode(row) for _, row in frame.iterrows()])

    @cached_property
    def calibration(self) -> pd.DataFrame:
        """Reliability bins on the clean test split, per calibrator (`none`: the raw scores
        mapped to [0, 1]; the others fitted on the validation split): calibrator,
        mean_confidence, accuracy (the fraction abnormal) and count."""
        from harness.results import queries

        self._check_ok()
        with self._store() as store:
            return queries.calibration_bins(store, self.run_id)

    @cached_property
    def latency(self) -> pd.DataFrame:
        """Latency, throughput and memory by batch size, as measured after the run."""
        from harness.results import queries

        with self._store() as store:
            return queries.run_table(store, "latency", self.run_id, exclude=("board", "method"))

    def explain(self, image_id: str, finding: str | None = None) -> Figure:
        """One validation or test image with the run's map over it and its ground truth (red
        outline, yellow boxes). `finding`: whose map, on a multi-label board."""
        from harness.results.explain import explained
        from harness.results.plots import overlay_figure

        with self._store() as store:
            e = explained(store, self.run_id, image_id, self.board_file, finding)
        fig = overlay_figure(e.image, e.heat, e.mask, e.boxes, e.scale, width=3.2)
        fig.suptitle(self._caption(image_id, e.note), fontsize=8, wrap=True)
        return fig

    def _caption(self, image_id: str, note: str) -> str:
        """The image id, its label and score (anomaly boards) and what the map shows."""
        rows = self.predictions[(self.predictions["image_id"] == image_id) & (self.predictions["condition"] == "clean")]
        parts = [image_id]
        if not rows.empty and pd.notna(rows["score"].iloc[0]):
            label = "abnormal" if rows["label"].iloc[0] == 1 else "normal"
            parts.append(f"{label}, score {rows['score'].iloc[0]:.4g}")
        return " · ".join([*parts, note] if note else parts)

    def compare(
        self, other: Run | str, metric: str = "auroc", condition: str = "clean", severity: int = 0
    ) -> Comparison:
        """This run against `other` (a Run of the same database, or its run id) on the same
        test images, by the test the board's task defines: the two values, their difference
        with its 95% paired patient-bootstrap interval, and p-values (DeLong's for one AUROC per
        image, NaN where it does not apply, and the paired bootstrap's)."""
        from harness.results.compare import compare_runs

        if isinstance(other, Run) and other.db != self.db:
            raise XRBenchError(f"run {other.run_id} is in {other.db}, not in {self.db}: compare runs of one database")
        other_id = other.run_id if isinstance(other, Run) else other
        with self._store() as store:
            return compare_runs(store, self.run_id, other_id, condition, severity, metric=metric)

    def _check_ok(self) -> None:
        if self.status != "ok":
            error = str(self.record.get("error") or "").split("\n")[0]
            raise XRBenchError(f"run {self.run_id} has status {self.status}; it has no results" +
                               (f" ({error})" if error else ""))  # fmt: skip


@dataclass(frozen=True)
class Results:
    """Everything a results database holds, as DataFrames: `runs`, one row per run (status,
    parameters, provenance, hashes, timings); `metrics`, every metric of the completed runs,
    with run id, board and method; `leaderboard`, every board's current edition, ranked."""

    runs: pd.DataFrame
    metrics: pd.DataFrame
    leaderboard: pd.DataFrame


def results(db: str | Path | None = None) -> Results:
    """The runs, the metrics of completed runs and every board's leaderboard (assembled now)."""
    from harness.results import queries
    from harness.results.leaderboard import assemble_all
    from harness.results.store import ResultStore

    with ResultStore(_existing(db)) as store:
        assemble_all(store)
        runs = queries.all_runs(store)
        metrics = queries.completed_metrics(store, METRIC_COLUMNS)
        board = queries.leaderboards(store)
    first = [c for c in RUN_COLUMNS if c in runs.columns]
    return Results(runs[first + [c for c in runs.columns if c not in first]], metrics, board)


def leaderboard(board: str, db: str | Path | None = None) -> pd.DataFrame:
    """The board's leaderboard: every run on its current edition, ranked by the board's primary
    metric (best configuration per method), with intervals, ties with the leader, corruption
    errors and flags."""
    from harness.results.leaderboard import assemble
    from harness.results.store import ResultStore

    with ResultStore(_existing(db)) as store:
        table = assemble(store, board)
    if table.empty:
        raise XRBenchError(f"no completed run on board {board!r} in {database(db)}")
    return table


def grid(
    methods: list[str] | None = None,
    boards: list[str] | None = None,
    *,
    seeds: list[int] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    device: str = "auto",
    corruptions: bool = True,
    precision: str = "fp32",
    force: bool = False,
    workers: int = 1,
    db: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Methods x boards x seeds, as `xrbench grid`: each cell whose key (method, parameters,
    code, board edition, seed, options) already has a completed run in the database is skipped
    unless `force`, so calling it again after an interruption resumes where it stopped.
    `methods=None`: every method that supports each board's task; `boards=None`: synth-cxr-ad;
    `params`: method -> its parameters (a list of values sweeps one); `workers`: cells at once, each
    in its own process.
    Returns one row per cell: its state (done: already in the database; ok; failed), run id,
    primary metric and error."""
    from harness.run.grid import mark_done, plan_grid, run_grid
    from harness.run.runner import progress_bars
    from harness.run.spec import RunOptions

    if workers < 1:
        raise XRBenchError(f"workers must be at least 1, not {workers}")
    overrides = {m: dict(p) for m, p in (params or {}).items()}
    unknown = sorted(set(overrides) - set(methods)) if methods is not None else []
    if unknown:
        raise XRBenchError(f"params for {unknown[0]}, which is not in the grid ({', '.join(methods or [])})")
    options = RunOptions(device, precision, corruptions)
    plan = plan_grid(methods, boards or ["synth-cxr-ad"], seeds, overrides, options)
    path = database(db)
    mark_done(plan, path, force)
    todo = [c for c in plan.cells if c.state != "done"]
    with progress_bars(_console(progress), transient=False) as bars:
        task = bars.add_task(f"grid: {len(plan.cells) - len(todo)} cells done before", total=len(todo))
        finished = lambda: bars.update(task, completed=sum(c.state in ("ok", "failed") for c in todo))  # noqa: E731
        run_grid(plan, path, finished, workers=workers)
    return pd.DataFrame(
        [(c.spec.method, c.spec.board.name, c.spec.seed, c.state, c.run_id, c.value, c.seconds, c.error)
         for c in plan.cells],
        columns=["method", "board", "seed", "state", "run_id", "value", "seconds", "error"],
    )  # fmt: skip


def load_bundle(path: str | Path) -> Bundle:
    """A submission bundle's files, read and checked for layout and schema (verification's
    first check): `.submission`, `.reported`, `.predictions` and `.maps` (None without maps)."""
    from harness.submissions.bundles import read_layout

    return read_layout(Path(path))


def verify(
    path: str | Path,
    rerun: bool = False,
    boards: Mapping[str, str | Path] | None = None,
    external: str | Path | None = None,
) -> Verification:
    """Verify a submission bundle as `xrbench verify` does: `.ok`, `.checks` passed, `.failed`
    and `.message`, and `.comparison` (reported beside verified values). `rerun`: also run the
    method again here and compare its predictions; `boards`: board name -> file, for boards
    that are not in leaderboards/; `external`: the local copy of a bundle's external files
    (`DIR/<bundle folder name>/<file>`)."""
    from harness.submissions.verify import verify_bundle

    return verify_bundle(
        Path(path),
        rerun=rerun,
        boards={k: Path(v) for k, v in (boards or {}).items()},
        external=Path(external) if external is not None else None,
    )


def import_bundles(paths: list[str | Path], db: str | Path | None = None, unverified: bool = False) -> list[Run]:
    """Load bundles (folders, or folders holding bundles) into the results database, as
    `xrbench import` does: each is verified first; a failing one is refused (raised after the
    others are in) unless `unverified`, which imports it flagged and never ranked."""
    from harness.results.store import ResultStore
    from harness.submissions.importing import import_bundle
    from harness.submissions.verify import bundle_folders

    imported, refused = [], []
    path = database(db)
    with ResultStore(path) as store:
        for folder in bundle_folders([Path(p) for p in paths]):
            try:
                outcome, _ = import_bundle(store, folder, {}, unverified=unverified)
            except XRBenchError as exc:
                refused.append(f"{folder}: {exc}")
                continue
            imported.append(outcome.run_id)
    if refused:
        raise XRBenchError(f"{len(refused)} bundles were not imported; the first: {refused[0]}")
    return [Run(run_id, path) for run_id in imported]
