"""`xrbench import`: verified bundles into a results database, so that the leaderboard and the
site can be rebuilt from the bundles committed in the repository, with no run at all.

What is stored is xrbench's own scoring of the bundle (the verified metrics); the submitter's
numbers are kept beside them (`reported_metrics`) for the site to show side by side. A bundle
that fails verification is refused, or with `unverified=True` stored flagged: the leaderboard
lists it and never ranks it. Each bundle is written in one transaction or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.boards.spec import board_edition
from harness.core.errors import XRBenchError, first_line
from harness.core.fingerprints import PREDICTIONS_HASH_SCHEME, file_sha256
from harness.core.ledger import stored_card
from harness.core.paths import REPO_ROOT
from harness.results import queries
from harness.results.store import RUN_TABLES, ResultStore, now
from harness.scoring.score import SCORING_VERSION
from harness.submissions.bundles import METRIC_KEYS, SUMS, Bundle
from harness.submissions.verify import Verification, verify_bundle


@dataclass(frozen=True)
class Imported:
    run_id: str
    status: str  # verified | failed | unchanged (this bundle was imported before)


def shown_path(path: Path) -> str:
    path = path.resolve()
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


def import_bundle(
    store: ResultStore,
    path: Path,
    boards: dict[str, Path] | None = None,
    unverified: bool = False,
    external: Path | None = None,
) -> tuple[Imported, Verification]:
    """Verify and import one bundle. A bundle imported before, byte for byte (the same
    SHA256SUMS, still matching its files) on the same board edition, is not scored again. A
    run id stored from another bundle folder is refused unless the bundles are byte-identical;
    the same folder, changed (its pull request updated it), replaces its earlier import."""
    sums = path / SUMS
    if sums.is_file():
        seen = queries.submissions_with_bundle(store, file_sha256(sums))
        if not seen.empty:
            quick = verify_bundle(path, boards=boards, upto="board", external=external)
            if quick.ok:
                return Imported(seen["run_id"].iloc[0], "unchanged"), quick
    v = verify_bundle(path, boards=boards, external=external)
    return import_verified(store, v, unverified), v


def import_verified(store: ResultStore, v: Verification, unverified: bool = False) -> Imported:
    """Store a verified bundle (or, with `unverified`, a failed one, flagged)."""
    if v.bundle is None:
        raise XRBenchError(f"{v.path}: cannot be imported, even unverified: {v.message}")
    if not v.ok and not unverified:
        raise XRBenchError(f"{v.summary()}; not imported (--unverified imports it flagged, never ranked)")
    bundle = v.bundle
    sums = bundle.sums_sha256()
    previous = queries.submission_bundle(store, bundle.run_id)
    if not previous.empty and previous["bundle_sha256"].iloc[0] == sums:
        return Imported(bundle.run_id, "unchanged")
    if not previous.empty and previous["bundle"].iloc[0] != shown_path(v.path):
        raise XRBenchError(
            f"{v.path}: run {bundle.run_id} is already stored from the bundle {previous['bundle'].iloc[0]}, "
            "with other content; a bundle may not replace another's run (nothing was imported)"
        )
    local = queries.local_predictions_hash(store, bundle.run_id)  # a run of this database keeps its own rows
    if local is not None and local != bundle.submission["predictions_sha256"]:
        raise XRBenchError(f"{v.path}: run {bundle.run_id} is already in {store.path} with other predictions")
    tables = {
        "runs": pd.DataFrame([run_row(v)]),
        **{table: frame.assign(run_id=bundle.run_id) for table, frame in run_tables(v).items()},
        "reported_metrics": reported_metrics(bundle),
        "submissions": pd.DataFrame([{**submission_row(v, sums), "imported_rows": local is None}]),
    }
    queries.replace_submission(store, bundle.run_id, tables, own_rows=local is not None, run_tables=RUN_TABLES)
    if v.board is not None:
        store.record_board(board_edition(v.board))
    return Imported(bundle.run_id, "verified" if v.ok else "failed")


def run_row(v: Verification) -> dict:
    """The `runs` row of a submitted run, from submission.toml and the verified scoring."""
    s, reported = v.bundle.submission, v.bundle.reported
    board, method, code, env = s["board"], s["method"], s["code"], s["environment"]
    origin = {k: code[k] for k in ("plugin", "files") if k in code}
    measured = reported.get("measured", {}) if isinstance(reported.get("measured"), dict) else {}
    row = {
        "run_id": s["run_id"],
        "board": board["name"],
        "board_version": board["version"],
        "task": board["task"],
        "method": method["name"],
        "params": json.dumps(method["params"], sort_keys=True),
        "targets": json.dumps(board["targets"]) if board.get("targets") else None,
        "seed": s["seed"],
        "git_commit": code["commit"],
        "git_dirty": code.get("dirty"),
        "split_sha256": board["split_sha256"],
        "dataset_sha256": board.get("dataset_sha256"),
        "stress_sha256": board.get("stress_sha256"),
        "cpu_features": json.dumps(s["cpu"], sort_keys=True) if s.get("cpu") else None,
        "weights_id": s["weights"]["id"],
        "weights_sha256": s["weights"].get("sha256"),
        "weights_card": json.dumps(stored_card(s["weights"].get("card"), s["weights"]["id"]), sort_keys=True),
        "python_version": env["python"],
        "torch_version": env["torch"],
        "timm_version": env["timm"],
        "xrbench_version": env["xrbench"],
        "versions": json.dumps(env["versions"], sort_keys=True),
        "device": s["device"],
        "finished_at": pd.Timestamp(s["finished_at"]),
        "status": "ok",
        "precision": s["precision"],
        "explain": s.get("explain"),
        "method_card": json.dumps(method["card"]),
        "method_code": json.dumps(origin),
        "predictions_sha256": s["predictions_sha256"],
        "predictions_hash_scheme": PREDICTIONS_HASH_SCHEME,
        "maps_sha256": s.get("maps_sha256") if v.bundle.maps is not None else None,
        "scoring_version": SCORING_VERSION,
        "diagnostics": json.dumps(reported["diagnostics"], sort_keys=True) if reported.get("diagnostics") else None,
        **{k: measured.get(k) for k in ("fit_seconds", "predict_seconds", "fit_peak_memory_bytes")},
        **{k: measured.get(k) for k in ("decode_ips", "cache_read_ips")},
    }
    if v.scored is not None:
        row.update(v.scored.run_values)
    return row


def run_tables(v: Verification) -> dict[str, pd.DataFrame]:
    """What verification computed (predictions rebuilt from the manifest, verified metrics),
    and the latency the submitter measured on their device."""
    tables: dict[str, pd.DataFrame] = {}
    if v.predictions is not None:
        tables["predictions"] = v.predictions
    if v.bundle.maps is not None and v.scored is not None:
        tables["maps"] = v.bundle.maps
    if v.scored is not None:
        tables.update(v.scored.tables())
        tables["metrics"] = tables["metrics"].assign(board=v.bundle.board, method=v.bundle.method)
    gallery = bundle_gallery(v) if v.ok else None
    if gallery is not None and not gallery.empty:
        tables["gallery"] = gallery
    latency = pd.DataFrame(v.bundle.reported.get("latency") or [])
    if not latency.empty:
        tables["latency"] = latency.assign(board=v.bundle.board, method=v.bundle.method)
    return tables


def bundle_gallery(v: Verification) -> pd.DataFrame | None:
    """The gallery the bundle's run stored where it ran, rebuilt from its verified predictions
    and the board's images on this machine (the selection depends on nothing else); None, with
    a note, when the images are not here."""
    from harness.data.loading import load_board_data
    from harness.run.stages import board_conditions, gallery_of

    try:
        data = load_board_data(v.board)
        corrupted = bool((v.predictions["condition"] != "clean").any())
        return gallery_of(data, board_conditions(data, corrupted), v.predictions, v.scored)
    except XRBenchError as exc:
        v.notes.append(f"no gallery: the board's images could not be read here ({first_line(exc)})")
        return None


def reported_metrics(bundle: Bundle) -> pd.DataFrame:
    frame = pd.DataFrame(bundle.reported["metrics"], columns=list(METRIC_KEYS))
    return frame.astype({"value": float, "ci_low": float, "ci_high": float}).assign(run_id=bundle.run_id)


def submission_row(v: Verification, sums: str) -> dict:
    s = v.bundle.submission
    return {
        "run_id": s["run_id"],
        "bundle": shown_path(v.path),
        "bundle_sha256": sums,
        "status": "verified" if v.ok else "failed",
        "failed_check": v.failed,
        "message": v.message,
        "notes": json.dumps(v.notes),
        "verified_at": now(),
        "verify_seconds": v.seconds,
        "reported_scoring_version": v.bundle.reported.get("scoring_version", s["scoring_version"]),
        "code": json.dumps(s["code"], sort_keys=True),
    }
