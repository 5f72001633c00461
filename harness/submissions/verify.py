"""`xrbench verify`: check a submission bundle, in order, stopping at the first failure.

    1 layout      files, size, schema            5 scores       finite, of the board's shape
    2 checksums   SHA256SUMS                     6 re-score     xrbench's scoring, frozen labels
    3 board       edition and hashes             7 reported     reported == verified (1e-9)
    4 image ids   the frozen manifest's, exactly 8 code         the code reference's files
                                                 9 rerun        (--rerun) the method run again

The verified metrics are xrbench's own scoring of the bundle's predictions against the
frozen labels; what the submitter reported is only compared with them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from harness.boards.files import load_board
from harness.boards.maps import kept_map_ids
from harness.boards.spec import Board
from harness.core.errors import XRBenchError, first_line, printable
from harness.core.fingerprints import file_sha256, predictions_sha256
from harness.core.maps import maps_sha256
from harness.core.metrics import names
from harness.core.paths import REPO_ROOT
from harness.data.loading import frozen_manifest, load_manifest, test_ground_truth
from harness.run.inference import prediction_rows
from harness.scoring.score import METRICS_ADDED, SCORING_VERSION, Scored, score_predictions
from harness.scoring.tasks import task_for
from harness.submissions.bundles import (
    MAPS,
    REQUIRED_FILES,
    ROBUSTNESS_KEYS,
    SUMS,
    Bundle,
    bundle_files,
    read_layout,
    read_text,
    size_limit,
)
from harness.submissions.external import GIT_BUNDLE_BYTES, whole_bundle

TOLERANCE = 1e-9
"""Reported and verified values may differ by this much (float summation order)."""
RERUN_TOLERANCE = 1e-3
"""A rerun of a bundle made on a GPU or below fp32 may differ by this fraction of the score range."""


class CheckFailed(XRBenchError):
    pass


@dataclass
class Verification:
    path: Path
    files: Path | None = None  # where its files are read: the folder, or a whole copy of an external bundle
    checks: list[str] = field(default_factory=list)  # passed, in order
    failed: str | None = None
    message: str | None = None
    bundle: Bundle | None = None
    board: Board | None = None
    manifest: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None  # rebuilt rows: labels and patients from the manifest
    scored: Scored | None = None
    comparison: pd.DataFrame | None = None  # key, column, reported, verified, differs
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed is None

    def summary(self) -> str:
        if self.ok:
            return f"{self.path}: verified ({len(self.checks)} checks, {self.seconds:.1f} s)"
        return f"{self.path}: check '{self.failed}' failed: {self.message}"


# --- the checks ------------------------------------------------------------------------------


def check_layout(v: Verification, boards: dict[str, Path]) -> None:
    v.bundle = dataclasses.replace(read_layout(v.files), path=v.path)


def check_sums(v: Verification, boards: dict[str, Path]) -> None:
    lines = read_text(v.files / SUMS).splitlines()
    listed: dict[str, str] = {}
    for k, line in enumerate(lines, 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/" in name:
            raise CheckFailed(f"{SUMS} line {k} is not '<sha256>  <file name>': {printable(line[:80])!r}")
        listed[name] = digest
    present = {p.name for p in v.files.iterdir()} - {SUMS}
    if present - set(listed):
        raise CheckFailed(f"{sorted(present - set(listed))[0]} is not listed in {SUMS}")
    for name, digest in listed.items():
        if name not in present:
            raise CheckFailed(f"{SUMS} lists {name}, which is not in the bundle")
        if file_sha256(v.files / name) != digest:
            raise CheckFailed(f"{name} does not match its SHA-256 in {SUMS}")


def check_board(v: Verification, boards: dict[str, Path]) -> None:
    claimed = v.bundle.submission["board"]
    board = load_board(boards.get(claimed["name"], claimed["name"]))
    if board.name != claimed["name"]:
        raise CheckFailed(f"the board file given for {claimed['name']} is board {board.name}")
    for key, mine in (("version", board.version), ("task", board.task), ("split_sha256", board.split_sha256)):
        if claimed[key] != mine:
            raise CheckFailed(
                f"the bundle is for {key} {claimed[key]} of board {board.name}; this board file has {mine}"
            )
    if board.dataset_sha256 is not None and claimed.get("dataset_sha256") != board.dataset_sha256:
        raise CheckFailed(f"the bundle's dataset hash {claimed.get('dataset_sha256')} is not board {board.name}'s")
    stress = claimed.get("stress_sha256")
    if board.stress_sha256 is not None and stress is not None and stress != board.stress_sha256:
        raise CheckFailed(
            f"the bundle's corrupted test set hashes to {stress}; board {board.name} froze {board.stress_sha256}: "
            "its corrupted predictions were made on other inputs"
        )
    if tuple(claimed.get("targets") or ()) != tuple(board.targets):
        raise CheckFailed(f"the bundle's targets are not board {board.name}'s ({', '.join(board.targets)})")
    v.board = board
    v.manifest = frozen_manifest(board) if board.labels_sha256 is None else load_manifest(board).manifest


def check_size(v: Verification, boards: dict[str, Path]) -> None:
    """The bundle within its board's limit: predictions of every image it must cover, and maps
    of at most the images the board keeps maps for (its map sample, the case study's copies)."""
    board, manifest = v.board, v.manifest
    corruptions = bool(v.bundle.submission["corruptions"])
    kept = 0
    if v.bundle.maps is not None:
        truth = ground_truth_ids(board, manifest)
        kept = sum(len(kept_map_ids(board, manifest[manifest["split"] == s], s, truth)) for s in ("val", "test"))
        kept += 1 + (sum(len(x) for x in board.corruptions.values()) if corruptions else 0)  # the case study
    limit = size_limit(board, manifest, corruptions, kept)
    size = sum(bundle_files(v.files).values())
    committed = sum(bundle_files(v.path).values())
    if committed > GIT_BUNDLE_BYTES:
        v.notes.append(
            f"the folder holds {committed / 2**20:.1f} MiB, more than a repository should "
            f"({GIT_BUNDLE_BYTES / 2**20:.0f} MiB): keep its parquet files in an external dataset repository "
            "(xrbench submit --external-url URL --external-dir DIR)"
        )
    if size > limit:
        raise CheckFailed(
            f"the bundle is {size / 2**20:.1f} MiB, over board {board.name}'s limit of {limit / 2**20:.1f} MiB "
            f"(its predictions{f' and {kept} maps' if kept else ''}); keep maps only for the board's map sample"
        )


def ground_truth_ids(board: Board, manifest: pd.DataFrame) -> set[str]:
    """The test images with boxes or masks (none when the board has no ground truth)."""
    if not board.ground_truth:
        return set()
    found = load_manifest(board)
    return test_ground_truth(board, manifest, found.test_source or found.source).image_ids


def expected_groups(board: Board, corruptions: bool) -> list[tuple[str, str, int]]:
    """(split, condition, severity) of every prediction group a bundle must hold."""
    groups = [("val", "clean", 0), ("test", "clean", 0)]
    if corruptions:
        groups += [("test", name, k + 1) for name, levels in board.corruptions.items() for k in range(len(levels))]
    return groups


def check_ids(v: Verification, boards: dict[str, Path]) -> None:
    rows = v.bundle.predictions
    expected = expected_groups(v.board, v.bundle.submission["corruptions"])
    found = {(s, c, int(k)) for s, c, k in zip(rows["split"], rows["condition"], rows["severity"], strict=True)}
    unexpected = sorted(found - set(expected))
    if unexpected:
        raise CheckFailed(f"predictions for {_group(unexpected[0])}, which is not a condition of the board")
    for group in expected:
        if group not in found:
            raise CheckFailed(f"no predictions for {_group(group)}")
        ids = _rows_of(rows, group)["image_id"]
        manifest_ids = v.manifest.loc[v.manifest["split"] == group[0], "image_id"]
        problems = []
        for what, bad in (
            ("missing", manifest_ids[~manifest_ids.isin(ids)]),
            ("not in the manifest", ids[~ids.isin(manifest_ids)]),
            ("duplicated", ids[ids.duplicated()]),
        ):
            if len(bad):
                problems.append(f"{len(bad)} {what} (first: {bad.iloc[0]})")
        if problems:
            raise CheckFailed(f"{_group(group)}: image ids differ from the frozen manifest: {'; '.join(problems)}")


def check_scores(v: Verification, boards: dict[str, Path]) -> None:
    rows = v.bundle.predictions
    if v.board.task == "anomaly":
        values = rows["score"].to_numpy(dtype=float, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            r = rows.iloc[bad[0]]
            raise CheckFailed(f"image {r['image_id']} ({_group(_key(r))}): score {values[bad[0]]} is not finite")
        return
    k = len(v.board.targets)
    for r in rows.itertuples():
        scores = r.scores
        if scores is None or len(scores) != k:
            raise CheckFailed(f"image {r.image_id} ({_group(_key(r._asdict()))}): {k} scores expected (one per target)")
        if not np.isfinite(np.asarray(scores, dtype=float)).all():
            raise CheckFailed(f"image {r.image_id} ({_group(_key(r._asdict()))}): a score is not finite")


def check_rescore(v: Verification, boards: dict[str, Path]) -> None:
    v.predictions = rebuilt_predictions(v.bundle, v.board, v.manifest)
    claimed = v.bundle.submission["predictions_sha256"]
    actual = predictions_sha256(v.predictions)
    if actual != claimed:
        raise CheckFailed(f"the predictions hash to {actual}, not to the {claimed} that submission.toml records")
    maps, truth = None, None
    if v.bundle.maps is not None:
        if maps_sha256(v.bundle.maps) != v.bundle.submission.get("maps_sha256"):
            raise CheckFailed(f"{MAPS} does not hash to the maps_sha256 that submission.toml records")
        maps = v.bundle.maps
        if v.board.ground_truth:
            found = load_manifest(v.board)
            truth = test_ground_truth(v.board, v.manifest, found.test_source or found.source)
    v.scored = score_predictions(v.board, v.manifest, v.predictions, maps=maps, ground_truth=truth)


def rebuilt_predictions(bundle: Bundle, board: Board, manifest: pd.DataFrame) -> pd.DataFrame:
    """The bundle's scores as full prediction rows: labels and patients from the manifest."""
    task = task_for(board)
    column = "score" if board.task == "anomaly" else "scores"
    frames = []
    for group, rows in bundle.predictions.groupby(["split", "condition", "severity"], sort=True):
        meta = manifest[manifest["split"] == group[0]].reset_index(drop=True)
        aligned = rows.set_index("image_id").loc[meta["image_id"].to_numpy()]
        scores = aligned[column].to_numpy()
        scores = np.stack(scores).astype(np.float64) if column == "scores" else scores.astype(np.float64)
        variances = np.stack(aligned["variances"].to_numpy()).astype(np.float64) if "variances" in aligned else None
        truth = task.truth(meta, board)
        frames.append(prediction_rows(task, meta, truth, group[0], group[1], int(group[2]), scores, variances))
    return pd.concat(frames, ignore_index=True)


def check_reported(v: Verification, boards: dict[str, Path]) -> None:
    reported_version = v.bundle.reported.get("scoring_version", v.bundle.submission["scoring_version"])
    v.comparison = compare_reported(v.bundle, v.scored, reported_version)
    differing = v.comparison[v.comparison["differs"]]
    reported_localization = {m["metric"] for m in v.bundle.reported["metrics"]} & set(names("localization"))
    if v.bundle.maps is None and reported_localization:
        v.notes.append(
            f"localization metrics not verified: the bundle has no maps ({len(reported_localization)} reported "
            "kinds ignored; submit with --maps to verify them)"
        )
    if reported_version != SCORING_VERSION:
        v.notes.append(
            f"reported under scoring version {reported_version}, verified under {SCORING_VERSION}: "
            f"{len(differing)} values differ and the verified ones count"
        )
        return
    if len(differing):
        d = differing.iloc[0]
        raise CheckFailed(
            f"{len(differing)} reported values differ from the verified ones (first: {d['key']} {d['column']}: "
            f"reported {d['reported']}, verified {d['verified']})"
        )


def compare_reported(bundle: Bundle, scored: Scored, reported_version: int = SCORING_VERSION) -> pd.DataFrame:
    """Every reported metric, run value and robustness value beside its verified value.
    Localization metrics are compared only when the bundle carries the maps they need;
    metrics added after the bundle's scoring version are verified, not compared."""
    reported = pd.DataFrame(bundle.reported["metrics"])
    if bundle.maps is None and not reported.empty:
        reported = reported[~reported["metric"].isin(names("localization"))]
    key = ["condition", "severity", "slice", "metric"]
    verified = scored.metrics.copy()
    if bundle.maps is None:
        verified = verified[~verified["metric"].isin(names("localization"))]
    newer = [m for m, version in METRICS_ADDED.items() if version > reported_version]
    verified = verified[~verified["metric"].isin(newer)]
    rows = []
    mine = verified.set_index(key)
    theirs = reported.set_index(key) if not reported.empty else pd.DataFrame(columns=mine.columns)
    for k in mine.index.union(theirs.index):
        label = f"{k[0]} s{k[1]} {k[2]} {k[3]}"
        for column in ("value", "ci_low", "ci_high", "n", "n_pos", "flag"):
            a = theirs.at[k, column] if k in theirs.index else "(absent)"
            b = mine.at[k, column] if k in mine.index else "(absent)"
            rows.append({"key": label, "column": column, "reported": a, "verified": b})
    rows += _value_rows("run", scored.run_values, bundle.reported.get("run_values", {}), bundle.maps is not None)
    if bundle.submission.get("corruptions"):  # a run without the stress suite stores no robustness summary
        rows += _value_rows("robustness", scored.robustness, bundle.reported.get("robustness", {}), True)
    frame = pd.DataFrame(rows, columns=["key", "column", "reported", "verified"])
    frame["differs"] = [not _close(a, b) for a, b in zip(frame["reported"], frame["verified"], strict=True)]
    return frame


def _value_rows(key: str, verified: dict, reported: dict, with_maps: bool) -> list[dict]:
    """Rows comparing named values (run values fitted on validation, or the robustness summary)."""
    names = set(verified) | {k for k, x in reported.items() if x is not None}
    if key == "robustness":
        names &= set(ROBUSTNESS_KEYS)
    if not with_maps:
        names.discard("map_level")
    return [
        {"key": key, "column": n, "reported": reported.get(n, "(absent)"), "verified": verified.get(n, "(absent)")}
        for n in sorted(names)
    ]


def _close(a: object, b: object) -> bool:
    missing_a, missing_b = _missing(a), _missing(b)
    if missing_a or missing_b:
        return missing_a and missing_b
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=TOLERANCE)
    return str(a) == str(b)


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or (pd.api.types.is_scalar(x) and bool(pd.isna(x)))


def check_code(v: Verification, boards: dict[str, Path]) -> None:
    code = v.bundle.submission["code"]
    if "plugin" in code:
        dist, wanted = code["plugin"].get("distribution", ""), code["plugin"].get("version", "")
        try:
            installed = version(dist)
        except PackageNotFoundError:
            raise CheckFailed(
                f"the method's plugin {dist} is not installed here: pip install '{dist}=={wanted}'"
            ) from None
        if installed != wanted:
            raise CheckFailed(f"the bundle was made with plugin {dist} {wanted}; {installed} is installed here")
    for path, digest in code.get("files", {}).items():
        here = REPO_ROOT / path
        if Path(path).is_absolute() or not here.resolve().is_relative_to(REPO_ROOT):
            raise CheckFailed(f"code reference {path} is not a file of this repository")
        if here.is_file() and file_sha256(here) == digest:
            continue
        then = _file_at_commit(code["commit"], path)
        if then is not None and then == digest:
            v.notes.append(f"{path} changed since commit {code['commit'][:12]}, where it matches the bundle")
            continue
        now = file_sha256(here) if here.is_file() else "nothing (no such file)"
        raise CheckFailed(
            f"code reference {path}: the bundle records SHA-256 {digest[:12]}, the repository has {now[:12]}"
        )


def _file_at_commit(commit: str, path: str) -> str | None:
    """SHA-256 of a file as it was at a commit of this checkout (None without git or the commit)."""
    import hashlib

    try:
        out = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO_ROOT, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return hashlib.sha256(out.stdout).hexdigest() if out.returncode == 0 else None


def check_rerun(v: Verification, boards: dict[str, Path]) -> None:
    """Run the method again here and compare: first the inputs (the corrupted test set's hash),
    then the predictions, byte for byte where the bundle's CPU levels are this machine's."""
    from harness.results.store import ResultStore
    from harness.run.runner import run_bench
    from harness.run.spec import RunOptions, RunSpec

    s = v.bundle.submission
    options = RunOptions("cpu", "fp32", s["corruptions"], s.get("explain"))
    board = boards.get(s["board"]["name"], s["board"]["name"])
    spec = RunSpec.build(s["method"]["name"], board, s["seed"], dict(s["method"]["params"]), options)
    with tempfile.TemporaryDirectory(prefix="xrbench-rerun-") as tmp:
        db = Path(tmp) / "rerun.duckdb"
        result = run_bench(spec, db)
        with ResultStore(db) as store:
            again = store.predictions(result.run_id)
            rerun = store.run(result.run_id)
    theirs, mine = s["board"].get("stress_sha256"), rerun.get("stress_sha256")
    if isinstance(theirs, str) and isinstance(mine, str):
        if theirs != mine:
            raise CheckFailed(
                f"the inputs differ: the corrupted test set rendered here hashes to {mine}, the bundle's run read "
                f"{theirs}; its predictions cannot be compared"
            )
        v.notes.append(f"rerun inputs identical (corrupted test set {mine[:12]})")
    here = json.loads(rerun["cpu_features"]) if isinstance(rerun.get("cpu_features"), str) else None
    same_cpu = s.get("cpu") is not None and s.get("cpu") == here
    exact = s["device"].startswith("cpu") and s["precision"] == "fp32" and same_cpu
    why = "same CPU levels" if exact else _why_tolerant(s, here)
    compare_rerun(v, again, exact, why)


def _why_tolerant(submission: dict, here: dict | None) -> str:
    if not submission["device"].startswith("cpu") or submission["precision"] != "fp32":
        return f"the bundle ran on {submission['device']} at {submission['precision']}"
    if submission.get("cpu") is None:
        return "the bundle does not record its CPU levels"
    return f"the bundle's CPU levels {_levels(submission['cpu'])} are not this machine's {_levels(here)}"


def _levels(cpu: dict | None) -> str:
    return "unknown" if not cpu else f"(torch {cpu.get('torch')}, numpy {cpu.get('numpy')})"


def compare_rerun(v: Verification, again: pd.DataFrame, exact: bool, why: str = "") -> None:
    """Byte-identical predictions when `exact`; else within `RERUN_TOLERANCE` of the score range.
    Either way the note or the failure says how many rows differ, where and by how much."""
    column = "score" if v.board.task == "anomaly" else "scores"
    a = np.vstack(v.predictions[column].to_numpy()).astype(float).reshape(len(v.predictions), -1)
    b = np.vstack(again[column].to_numpy()).astype(float).reshape(len(again), -1)
    if a.shape != b.shape:
        raise CheckFailed(f"the method run again gives {len(b)} predictions, the bundle {len(a)}")
    gap = np.abs(a - b).max(axis=1)
    differing = gap > 0
    clean = (v.predictions["condition"] == "clean").to_numpy()
    where = (
        f"{int(differing.sum())} of {len(gap)} rows (clean {int((differing & clean).sum())}, "
        f"corrupted {int((differing & ~clean).sum())}), by up to {float(gap.max()):.3g}"
    )
    if exact:
        if predictions_sha256(again) != predictions_sha256(v.predictions):
            first = _first_difference(v.predictions, again)
            raise CheckFailed(
                f"the method run again gives other predictions on {where} (first: {first}); expected "
                f"byte-identical ({why})"
            )
        v.notes.append(f"rerun on CPU: byte-identical predictions ({why})")
        return
    allowed = RERUN_TOLERANCE * float(np.ptp(a))
    if float(gap.max()) > allowed:
        raise CheckFailed(f"the method run again on CPU differs on {where}; allowed {allowed:.3g} because {why}")
    v.notes.append(f"rerun on CPU: predictions differ on {where}, within the {allowed:.3g} allowed because {why}")


def _first_difference(a: pd.DataFrame, b: pd.DataFrame) -> str:
    column = "score" if "score" in a and a["score"].notna().any() else "scores"
    for x, y in zip(a.itertuples(), b.itertuples(), strict=False):
        if x.image_id != y.image_id or str(getattr(x, column)) != str(getattr(y, column)):
            return f"image {x.image_id} {x.split} {x.condition} s{x.severity}"
    return f"{len(a)} rows in the bundle, {len(b)} from the rerun"


def _group(group: tuple[str, str, int]) -> str:
    split, condition, severity = group
    return f"{split} {condition} s{severity}"


def _key(row: object) -> tuple[str, str, int]:
    return (row["split"], row["condition"], int(row["severity"]))  # type: ignore[index]


def _rows_of(rows: pd.DataFrame, group: tuple[str, str, int]) -> pd.DataFrame:
    split, condition, severity = group
    return rows[(rows["split"] == split) & (rows["condition"] == condition) & (rows["severity"] == severity)]


CHECKS: list[tuple[str, Callable[[Verification, dict[str, Path]], None]]] = [
    ("layout", check_layout),
    ("checksums", check_sums),
    ("board", check_board),
    ("size", check_size),
    ("image ids", check_ids),
    ("scores", check_scores),
    ("re-score", check_rescore),
    ("reported", check_reported),
    ("code", check_code),
]


def verify_bundle(
    path: Path,
    rerun: bool = False,
    boards: dict[str, Path] | None = None,
    upto: str | None = None,
    external: Path | None = None,
) -> Verification:
    """Run the checks in order (up to and including `upto`, when given); the first that fails
    ends the bundle's verification. A bundle with external files is verified whole from their
    local copies under `external` (`harness.submissions.external`)."""
    v = Verification(Path(path))
    start = time.perf_counter()
    checks = CHECKS + ([("rerun", check_rerun)] if rerun else [])
    if upto is not None:
        checks = checks[: [name for name, _ in checks].index(upto) + 1]
    try:
        with whole_bundle(v.path, external) as v.files:
            run_checks(v, checks, boards or {})
    except XRBenchError as exc:  # external files missing or not the named ones
        v.failed, v.message = "layout", str(exc)
    v.seconds = time.perf_counter() - start
    return v


def run_checks(v: Verification, checks: list, boards: dict[str, Path]) -> None:
    for name, check in checks:
        try:
            check(v, boards)
        except XRBenchError as exc:
            v.failed, v.message = name, str(exc)
            return
        except Exception as exc:  # a bundle that crashes a check fails it: it is input, not code
            v.failed, v.message = name, f"the check could not read the bundle: {type(exc).__name__}: {first_line(exc)}"
            return
        v.checks.append(name)


def bundle_folders(paths: list[Path]) -> list[Path]:
    """The bundles named or found under the paths given: a folder holding any bundle file is
    one (checked as such); other folders are searched, hidden ones (a bundle being written) not."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise XRBenchError(f"{path} does not exist")
        if path.is_file():
            path = path.parent
        if any((path / name).exists() for name in (*REQUIRED_FILES, MAPS)):
            found.append(path)
            continue
        for marker in sorted(path.rglob(SUMS)):
            if not any(part.startswith(".") for part in marker.relative_to(path).parts):
                found.append(marker.parent)
    return list(dict.fromkeys(found))
