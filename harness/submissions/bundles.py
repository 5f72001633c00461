"""Submission bundles: a stored run as files a pull request can carry, and reading them back.

A bundle is a folder:

    submission.toml      what was run: board edition, method, parameters, seed, code, weights
    predictions.parquet  every prediction (validation and each test condition), scores only
    maps.parquet         optional: the run's stored maps (needed to verify localization)
    reported.json        the run's metrics as it computed them
    SHA256SUMS           SHA-256 of each file above

Predictions carry no labels and no patient ids: those come from the board's frozen manifest
when the bundle is verified, so a bundle never redistributes a licensed dataset's labels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from harness.boards.spec import Board
from harness.core.errors import printable
from harness.core.fingerprints import PREDICTION_KEY, file_sha256, predictions_sha256
from harness.core.maps import MAX_SIDE
from harness.core.names import check_name
from harness.core.paths import under, workspace_root
from harness.results import queries
from harness.results.store import DUCKDB_CONFIG, ResultStore
from harness.submissions.schema import (
    REPORTED_SCHEMA,
    SUBMISSION_SCHEMA,
    BundleError,
    check_file,
    check_latency_row,
)

FORMAT = 1
SUBMISSION, PREDICTIONS, MAPS, REPORTED, SUMS = (
    "submission.toml",
    "predictions.parquet",
    "maps.parquet",
    "reported.json",
    "SHA256SUMS",
)
REQUIRED_FILES = (SUBMISSION, PREDICTIONS, REPORTED, SUMS)
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
"""A bundle larger than this on disk is refused before its board is known; each board's own
limit (`size_limit`, checked once the board is read) is usually far smaller."""
BYTES_PER_SCORE = 32
"""Budget per prediction row and score channel: a committed bundle takes 4.5 B per anomaly
score and 2 to 3 B per finding of a multi-label row (zstd parquet), 32 B leaves room for
variances and poorly compressing scores."""
BYTES_PER_MAP = 16 * 1024
"""Budget per kept map and channel: a committed PatchCore bundle takes 5.8 KB per map."""
BYTES_OVERHEAD = 1024 * 1024
"""submission.toml, reported.json, SHA256SUMS and the parquet files' own metadata."""
MAX_BUNDLE_ROWS = 5_000_000
"""The most rows a bundle's parquet file may hold (the largest board's test set under every
corruption is about 700,000); a board's exact count is checked against its manifest."""
MAX_DECODED_BYTES = 1024 * 1024 * 1024
"""The most bytes a bundle's parquet file may decode to (compressed, 1 MB can hold 100 million rows)."""
PREDICTION_COLUMNS = {"image_id": "VARCHAR", "split": "VARCHAR", "condition": "VARCHAR", "severity": "INTEGER"}
SCORE_COLUMNS = {"anomaly": ("score", "DOUBLE"), "multilabel": ("scores", "DOUBLE[]")}
VARIANCES = "variances"  # optional: the scores' variances, for methods that report them
ROBUSTNESS_KEYS = (
    "clean_auroc",
    "mean_corrupted_auroc",
    "worst_condition",
    "worst_severity",
    "worst_auroc",
    "auroc_drop",
)
METRIC_KEYS = ("condition", "severity", "slice", "metric", "value", "ci_low", "ci_high", "n", "n_pos", "flag")


def submissions_dir() -> Path:
    return workspace_root() / "leaderboards" / "submissions"


def toml_text(data: dict, prefix: str = "") -> str:
    """`data` as TOML (scalars, lists of scalars and nested tables; None values are left out)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if v is not None and not isinstance(v, dict)]
    for key, table in ((k, v) for k, v in data.items() if isinstance(v, dict)):
        name = f"{prefix}{_toml_key(key)}"
        lines += ["", f"[{name}]", toml_text(table, f"{name}.").strip("\n")]
    return "\n".join(line for line in lines) + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


# --- writing a bundle ---------------------------------------------------------------------


def submission_record(run: dict) -> dict:
    """submission.toml's content from a stored run."""
    code = json.loads(run["method_code"]) if isinstance(run.get("method_code"), str) else {}
    if not code:
        raise BundleError(f"run {run['run_id']} was stored before runs recorded their method's code; run it again")
    if None in code.get("files", {}).values():
        raise BundleError(
            f"run {run['run_id']}: its method was not defined in a file; only file or plugin methods can be submitted"
        )
    card = json.loads(run["method_card"] or "{}")
    env = {k: run[f"{k}_version"] for k in ("python", "torch", "timm", "xrbench")}
    return {
        "format": FORMAT,
        "run_id": run["run_id"],
        "seed": int(run["seed"]),
        "device": run["device"],
        "precision": run.get("precision") or "fp32",
        "corruptions": False,  # set by write_bundle from the predictions
        "finished_at": str(run["finished_at"]),
        "scoring_version": int(run.get("scoring_version") or 1),
        "predictions_sha256": "",  # set by write_bundle from the predictions
        "maps_sha256": None,
        "explain": run.get("explain") if isinstance(run.get("explain"), str) else None,
        "cpu": json.loads(run["cpu_features"]) if isinstance(run.get("cpu_features"), str) else None,
        "board": {
            "name": run["board"],
            "version": int(run["board_version"]),
            "task": run["task"],
            "split_sha256": run["split_sha256"],
            "dataset_sha256": _json_value(run["dataset_sha256"]) or None,
            "stress_sha256": _json_value(run.get("stress_sha256")) or None,
            "targets": json.loads(run["targets"]) if isinstance(run.get("targets"), str) else None,
        },
        "method": {"name": run["method"], "params": run["params"], "card": card},
        "code": {"commit": run["git_commit"], "dirty": _json_value(run.get("git_dirty")), **code},
        "weights": {
            "id": run["weights_id"],
            "sha256": _json_value(run.get("weights_sha256")) or None,
            "card": json.loads(run["weights_card"])["name"] if isinstance(run.get("weights_card"), str) else None,
        },
        "environment": {**env, "versions": json.loads(run.get("versions") or "{}")},
    }


def reported_record(store: ResultStore, run: dict) -> dict:
    """reported.json's content: every metric the run stored, its validation-fitted values, its
    robustness summary and what it measured of itself (timings, latency)."""
    run_id = run["run_id"]
    metrics = queries.run_table(store, "metrics", run_id, METRIC_KEYS)
    robustness = queries.run_table(store, "robustness", run_id, ROBUSTNESS_KEYS)
    latency = queries.run_table(store, "latency", run_id, exclude=("measured_at",))
    timings = ("fit_seconds", "predict_seconds", "fit_peak_memory_bytes", "decode_ips", "cache_read_ips")
    return {
        "scoring_version": int(run.get("scoring_version") or 1),
        "run_values": {k: _json_value(run.get(k)) for k in ("threshold", "temperature", "map_level")},
        "metrics": _records(metrics),
        "robustness": _records(robustness)[0] if not robustness.empty else {},
        "measured": {k: _json_value(run.get(k)) for k in timings},
        "latency": _records(latency),
        "diagnostics": json.loads(run["diagnostics"]) if isinstance(run.get("diagnostics"), str) else None,
    }


def json_lines(record: dict) -> str:
    """JSON with one line per key, and one line per item of a list: compact, and a changed
    metric shows as one changed line."""
    parts = []
    for key in sorted(record):
        value = record[key]
        if isinstance(value, list) and value:
            items = ",\n  ".join(json.dumps(item, sort_keys=True) for item in value)
            parts.append(f"{json.dumps(key)}: [\n  {items}\n ]")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value, sort_keys=True)}")
    return "{\n " + ",\n ".join(parts) + "\n}\n"


def _json_value(value: object) -> object:
    """JSON-safe: numpy scalars as Python ones, NaN and NA as null."""
    if hasattr(value, "item"):
        value = value.item()  # type: ignore[union-attr]
    if value is None or (isinstance(value, float) and value != value):
        return None
    try:
        if pd.isna(value):  # type: ignore[arg-type]
            return None
    except (TypeError, ValueError):
        pass
    return value


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: _json_value(v) for k, v in row.items()} for row in frame.to_dict("records")]


def default_bundle_dir(run: dict, root: Path | None = None) -> Path:
    """`<root>/<board>/<method>/<finished date>-<end of the run id>` (root: the committed
    submissions folder)."""
    finished = pd.Timestamp(run["finished_at"])
    for what in ("board", "method"):
        check_name(run[what], what, f"run {run['run_id']}")
    return under(root or submissions_dir(), run["board"], run["method"], f"{finished:%Y%m%d}-{run['run_id'][-6:]}")


def write_missing_bundles(store: ResultStore, run_ids: list[str], root: Path) -> list[Path]:
    """A bundle under `root` for each run that has none there yet, with its maps when it kept
    them (what `xrbench grid --bundles` does after its cells, so a grid run again over several
    sittings bundles what it finished). Returns the bundles written."""
    written = []
    for run_id in run_ids:
        run = store.run(run_id)
        out = default_bundle_dir(run, root)
        if out.exists():
            continue
        written.append(write_bundle(store, run_id, out, maps=isinstance(run.get("maps_sha256"), str)))
    return written


def write_bundle(store: ResultStore, run_id: str, out: Path | None = None, maps: bool = False) -> Path:
    """Write a run's bundle to `out` (default: `default_bundle_dir`), whole or not at all."""
    run = store.run(run_id)
    if run["status"] != "ok":
        raise BundleError(f"run {run_id} has status {run['status']}; only completed runs can be submitted")
    if isinstance(run.get("excluded_images"), str):
        raise BundleError(f"run {run_id} left out images of the frozen manifest; a submission must cover every image")
    out = Path(out) if out else default_bundle_dir(run)
    if out.exists():
        raise BundleError(f"{out} already exists; remove it or choose another --out")
    if maps and not isinstance(run.get("maps_sha256"), str):
        raise BundleError(f"run {run_id} kept no maps; submit it without --maps")
    predictions = store.predictions(run_id)  # verified against the run's hash
    record = submission_record(run)
    record["corruptions"] = bool((predictions["condition"] != "clean").any())
    record["predictions_sha256"] = predictions_sha256(predictions)  # the current scheme, whatever the run's
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    try:
        score = SCORE_COLUMNS[record["board"]["task"]][0]
        uncertain = [VARIANCES] if predictions[VARIANCES].notna().any() else []
        write_parquet(store.con, predictions[[*PREDICTION_COLUMNS, score, *uncertain]], tmp / PREDICTIONS)
        if maps:
            write_parquet(store.con, store.maps(run_id), tmp / MAPS)
            record["maps_sha256"] = run["maps_sha256"]
        (tmp / SUBMISSION).write_text(toml_text(record))
        (tmp / REPORTED).write_text(json_lines(reported_record(store, run)))
        write_sums(tmp)
        tmp.chmod(0o755)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def size_limit(board: Board, manifest: pd.DataFrame, corruptions: bool, kept_maps: int) -> int:
    """The most bytes a bundle of this board may take: its predictions (validation and test
    images, every corrupted copy when it has them) and `kept_maps` maps, per score channel
    (one per finding on a multi-label board), at `BYTES_PER_SCORE` and `BYTES_PER_MAP`, and
    never above `MAX_BUNDLE_BYTES`."""
    channels = max(1, len(board.targets))
    levels = sum(len(v) for v in board.corruptions.values()) if corruptions else 0
    counts = manifest["split"].value_counts()
    rows = int(counts.get("val", 0)) + int(counts.get("test", 0)) * (1 + levels)
    return min(MAX_BUNDLE_BYTES, BYTES_OVERHEAD + channels * (rows * BYTES_PER_SCORE + kept_maps * BYTES_PER_MAP))


def write_parquet(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, path: Path) -> None:
    con.register("bundle_rows", frame)
    try:
        con.execute(f"COPY (SELECT * FROM bundle_rows) TO {_sql_path(path)} (FORMAT parquet, COMPRESSION zstd)")
    finally:
        con.unregister("bundle_rows")


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def write_sums(folder: Path) -> None:
    """SHA256SUMS over every other file of the folder, in `sha256sum` format."""
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != SUMS)
    (folder / SUMS).write_text("".join(f"{file_sha256(folder / name)}  {name}\n" for name in files))


# --- reading a bundle ---------------------------------------------------------------------


@dataclass
class Bundle:
    path: Path
    submission: dict
    reported: dict
    predictions: pd.DataFrame
    maps: pd.DataFrame | None

    @property
    def board(self) -> str:
        return self.submission["board"]["name"]

    @property
    def method(self) -> str:
        return self.submission["method"]["name"]

    @property
    def run_id(self) -> str:
        return self.submission["run_id"]

    def sums_sha256(self) -> str:
        """Identifies the bundle's content (its checksum file covers every other file)."""
        return file_sha256(self.path / SUMS)


def read_layout(path: Path) -> Bundle:
    """Check 1, layout and schema: regular files only, their size on disk and decoded, every
    field of submission.toml and reported.json, the parquet files' columns and row counts."""
    sizes = bundle_files(path)
    missing = [f for f in REQUIRED_FILES if f not in sizes]
    if missing:
        raise BundleError(f"missing file {missing[0]}")
    unexpected = sorted(set(sizes) - {*REQUIRED_FILES, MAPS})
    if unexpected:
        raise BundleError(f"unexpected file {unexpected[0]} (a bundle holds {', '.join(REQUIRED_FILES)} and {MAPS})")
    if sum(sizes.values()) > MAX_BUNDLE_BYTES:
        total = sum(sizes.values())
        raise BundleError(f"the bundle is {total / 2**20:.1f} MiB, over the {MAX_BUNDLE_BYTES / 2**20:.0f} MiB limit")
    submission = _read_submission(path / SUBMISSION)
    reported = _read_reported(path / REPORTED)
    task = submission["board"]["task"]
    columns = {**PREDICTION_COLUMNS, SCORE_COLUMNS[task][0]: SCORE_COLUMNS[task][1]}
    predictions = _read_parquet(path / PREDICTIONS, columns, optional={VARIANCES: "DOUBLE[]"})
    maps = _read_parquet(path / MAPS, MAP_COLUMNS, checks=MAP_CHECKS) if MAPS in sizes else None
    return Bundle(path, submission, reported, predictions, maps)


def bundle_files(path: Path) -> dict[str, int]:
    """name -> size of each file of a bundle folder, refusing anything that is not a regular
    file: a link could make the verifier read (and the site publish) any file of the machine,
    and a device has no size."""
    if path.is_symlink() or not path.is_dir():
        raise BundleError(f"{path} is not a bundle folder" + (" (it is a symbolic link)" if path.is_symlink() else ""))
    sizes = {}
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        info = entry.stat(follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            kind = "a symbolic link" if entry.is_symlink() else "a folder" if entry.is_dir() else "not a regular file"
            raise BundleError(f"{printable(entry.name)} is {kind}; a bundle holds regular files only")
        sizes[entry.name] = info.st_size
    return sizes


def read_text(path: Path) -> str:
    """A bundle's text file, opened without following a link, as UTF-8 (at most the bundle limit)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BundleError(f"{path.name} is not a regular file")
        data = f.read(MAX_BUNDLE_BYTES + 1)
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path.name} is over the {MAX_BUNDLE_BYTES / 2**20:.0f} MiB limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path.name} is not UTF-8 text: {exc}") from None


def _read_submission(path: Path) -> dict:
    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise BundleError(f"{SUBMISSION} is not valid TOML: {exc}") from exc
    check_file(data, SUBMISSION_SCHEMA, SUBMISSION)
    if data["format"] != FORMAT:
        raise BundleError(f"{SUBMISSION}: format {data['format']} is not one this xrbench reads ({FORMAT})")
    if data["method"]["card"]["name"] != data["method"]["name"]:
        raise BundleError(f"{SUBMISSION}: method.card.name is not the method's name {data['method']['name']!r}")
    if ("files" in data["code"]) == ("plugin" in data["code"]):
        raise BundleError(f"{SUBMISSION}: code needs exactly one of files (a method module) or plugin")
    return data


def _read_reported(path: Path) -> dict:
    try:
        data = json.loads(read_text(path), parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{REPORTED} is not valid JSON: {exc}") from exc
    check_file(data, REPORTED_SCHEMA, REPORTED)
    for k, row in enumerate(data.get("latency") or []):
        check_latency_row(row, f"{REPORTED}:latency[{k}]")
    return data


def _no_constant(name: str) -> None:
    raise BundleError(f"{REPORTED}: holds {name}, which is not a JSON number (write null for a missing value)")


MAP_COLUMNS = {
    "image_id": "VARCHAR",
    "split": "VARCHAR",
    "condition": "VARCHAR",
    "severity": "INTEGER",
    "channels": "INTEGER",
    "height": "INTEGER",
    "width": "INTEGER",
    "scale": "DOUBLE",
    "data": "BLOB",
}
MAP_CHECKS = (
    ("a map's channels, height or width is out of range",
     f"NOT (channels BETWEEN 1 AND 1000 AND height BETWEEN 1 AND {MAX_SIDE} AND width BETWEEN 1 AND {MAX_SIDE})"),
    ("a map's data is not channels x height x width float16 values",
     "octet_length(data) != 2 * channels * height * width"),
    ("a map's scale is not a finite positive number", "NOT (isfinite(scale) AND scale > 0)"),
)  # fmt: skip
"""(problem, SQL condition of a bad row): checked in the parquet file before it is loaded."""


def _read_parquet(
    path: Path, columns: dict[str, str], optional: dict[str, str] | None = None, checks: tuple = ()
) -> pd.DataFrame:
    """A parquet file's rows, refusing other column names or types, NULL keys, more rows or
    decoded bytes than any board needs (read from the file's metadata before loading), and
    rows that fail `checks`."""
    source = f"read_parquet({_sql_path(path)})"
    with duckdb.connect(config=DUCKDB_CONFIG) as con:
        try:
            _check_decoded_size(con, path)
            types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
            columns = {**columns, **{n: kind for n, kind in (optional or {}).items() if n in types}}
            _check_columns(path, types, columns)
            nulls = " OR ".join(f"{k} IS NULL" for k in PREDICTION_KEY)
            bad = [("a row has a NULL image_id, split, condition or severity", nulls),
                   ("an image id is longer than 500 characters", "length(image_id) > 500"), *checks]  # fmt: skip
            for problem, condition in bad:
                if con.execute(f"SELECT count(*) FROM {source} WHERE {condition}").fetchone()[0]:
                    raise BundleError(f"{path.name}: {problem}")
            order = ", ".join(PREDICTION_KEY)
            return con.execute(f"SELECT * FROM {source} ORDER BY {order} LIMIT {MAX_BUNDLE_ROWS}").df()
        except duckdb.Error as exc:
            raise BundleError(f"{path.name} is not a readable parquet file: {exc}") from exc


def _check_decoded_size(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a parquet file whose metadata declares more rows or decoded bytes than the limits."""
    rows, decoded = con.execute(
        f"SELECT (SELECT sum(num_rows) FROM parquet_file_metadata({_sql_path(path)})), "
        f"(SELECT sum(total_uncompressed_size) FROM parquet_metadata({_sql_path(path)}))"
    ).fetchone()
    if (rows or 0) > MAX_BUNDLE_ROWS or (decoded or 0) > MAX_DECODED_BYTES:
        raise BundleError(
            f"{path.name} holds {rows} rows and {(decoded or 0) / 2**20:.0f} MiB decoded, over the limits "
            f"({MAX_BUNDLE_ROWS} rows, {MAX_DECODED_BYTES / 2**20:.0f} MiB)"
        )


def _check_columns(path: Path, types: dict[str, str], columns: dict[str, str]) -> None:
    for name, kind in columns.items():
        if name not in types:
            raise BundleError(f"{path.name}: missing column {name}")
        if types[name] != kind and not (kind == "INTEGER" and types[name] in ("BIGINT", "SMALLINT")):
            raise BundleError(f"{path.name}: column {name} is {types[name]}, not {kind}")
    extra = sorted(set(types) - set(columns))
    if extra:
        raise BundleError(f"{path.name}: unexpected column {printable(extra[0])}")
