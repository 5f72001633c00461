"""Submission bundles: written from a run, verified from their predictions against the frozen
labels, imported into a database the site is built from; and every way a bundle can be wrong."""

import json
import shutil
import tomllib

import duckdb
import numpy as np
import pandas as pd
import pytest

from harness.cli.main import main
from harness.core.errors import XRBenchError
from harness.results.leaderboard import assemble
from harness.results.rescore import rescore_run
from harness.results.store import ResultStore
from harness.run.runner import bench
from harness.site.builder import build_site
from harness.submissions import bundles as bundle_format
from harness.submissions.bundles import (
    PREDICTIONS,
    REPORTED,
    SUBMISSION,
    toml_text,
    write_bundle,
    write_parquet,
    write_sums,
)
from harness.submissions.importing import import_bundle, import_verified
from harness.submissions.verify import verify_bundle


@pytest.fixture(scope="module")
def runs(tiny_board, tiny_multilabel_board, tmp_path_factory):
    db = tmp_path_factory.mktemp("submit") / "runs.duckdb"
    anomaly = bench("intensity", tiny_board, db=db, device="cpu").run_id
    multilabel = bench("random", tiny_multilabel_board, db=db, device="cpu").run_id
    return db, anomaly, multilabel


@pytest.fixture(scope="module")
def boards(tiny_board, tiny_multilabel_board):
    return {"tiny-ad": tiny_board, "tiny-cls": tiny_multilabel_board}


@pytest.fixture(scope="module")
def bundle(runs, tmp_path_factory):
    db, anomaly, _ = runs
    with ResultStore(db) as store:
        return write_bundle(store, anomaly, tmp_path_factory.mktemp("bundles") / "intensity")


def copy_of(bundle, tmp_path):
    return shutil.copytree(bundle, tmp_path / "copy")


def edit_toml(path, change):
    data = tomllib.loads((path / SUBMISSION).read_text())
    change(data)
    (path / SUBMISSION).write_text(toml_text(data))
    write_sums(path)


def edit_predictions(path, change, rehash=True):
    """Change the bundle's predictions; the checksums are redone, as a tamperer would."""
    with duckdb.connect() as con:
        frame = con.execute(f"SELECT * FROM read_parquet('{path / PREDICTIONS}')").df()
        frame = change(frame)
        write_parquet(con, frame, path / PREDICTIONS)
    write_sums(path)


def test_a_bundle_verifies_and_its_reported_metrics_equal_the_verified_ones(bundle, boards, runs):
    v = verify_bundle(bundle, boards=boards)
    assert v.ok, v.summary()
    assert v.checks == ["layout", "checksums", "board", "size", "image ids", "scores", "re-score", "reported", "code"]
    assert not v.comparison["differs"].any()
    assert len(v.comparison) > 500  # every metric, condition and slice, not only the headline
    with ResultStore(runs[0]) as store:
        stored = store.query("SELECT value FROM metrics WHERE run_id = ? AND condition = 'clean' AND slice = 'all' "
                             "AND metric = 'auroc'", [runs[1]])["value"].iloc[0]  # fmt: skip
    verified = v.scored.metrics.query("condition == 'clean' and slice == 'all' and metric == 'auroc'")["value"]
    assert verified.iloc[0] == stored


def test_bundle_files_hold_no_labels_and_every_condition(bundle, runs):
    with duckdb.connect() as con:
        frame = con.execute(f"SELECT * FROM read_parquet('{bundle / PREDICTIONS}')").df()
    assert list(frame.columns) == ["image_id", "split", "condition", "severity", "score"]
    with ResultStore(runs[0]) as store:
        stored = store.predictions(runs[1])
    assert len(frame) == len(stored) and frame["condition"].nunique() > 1
    submission = tomllib.loads((bundle / SUBMISSION).read_text())
    files = submission["code"]["files"]
    assert "methods/intensity.py" in files and "harness/api/protocol.py" in files  # the method and what it imports
    assert not any(path.startswith("harness/run/") for path in files)
    assert submission["corruptions"] is True and submission["run_id"] == runs[1]


def test_a_multilabel_bundle_verifies(runs, boards, tmp_path):
    db, _, multilabel = runs
    with ResultStore(db) as store:
        path = write_bundle(store, multilabel, tmp_path / "random")
    v = verify_bundle(path, boards=boards)
    assert v.ok, v.summary()


def test_imported_bundle_rescores_identically_and_is_ranked(bundle, boards, tmp_path):
    db = tmp_path / "imported.duckdb"
    with ResultStore(db) as store:
        outcome = import_verified(store, verify_bundle(bundle, boards=boards))
        assert outcome.status == "verified"
        assert import_verified(store, verify_bundle(bundle, boards=boards)).status == "unchanged"
        assert rescore_run(store, outcome.run_id, boards["tiny-ad"]).identical
        board = assemble(store, "tiny-ad")
        assert board["rank"].tolist() == [1] and board["flag"].isna().all()
        reported = store.query("SELECT count(*) AS n FROM reported_metrics WHERE run_id = ?", [outcome.run_id])
        assert reported["n"].iloc[0] == store.query("SELECT count(*) AS n FROM metrics")["n"].iloc[0]
    index = build_site(db, tmp_path / "site")
    board_page = (index.parent / "boards").glob("tiny-ad*.html").__next__().read_text()
    assert "verified" in board_page and "methods/intensity.py" in board_page
    run_page = next((index.parent / "runs").glob("*.html")).read_text()
    assert "reported-vs-verified" in run_page and "failed verification" not in run_page


def _set(frame, column, row, value):
    frame = frame.copy()
    frame.loc[row, column] = value
    return frame


def _first_test_row(frame):
    return frame.index[(frame["split"] == "test") & (frame["condition"] == "clean")][0]


BAD = {
    # name: (change the bundle, the check that must fail, words of the message)
    "missing image": (
        lambda p: edit_predictions(p, lambda f: f.drop(index=_first_test_row(f))),
        "image ids",
        "1 missing (first:",
    ),
    "duplicated image": (
        lambda p: edit_predictions(p, lambda f: pd.concat([f, f.loc[[_first_test_row(f)]]])),
        "image ids",
        "1 duplicated",
    ),
    "extra image": (
        lambda p: edit_predictions(
            p, lambda f: pd.concat([f, _set(f.loc[[_first_test_row(f)]], "image_id", _first_test_row(f), "ghost")])
        ),
        "image ids",
        "1 not in the manifest (first: ghost)",
    ),
    "NaN score": (
        lambda p: edit_predictions(p, lambda f: _set(f, "score", _first_test_row(f), np.nan)),
        "scores",
        "not finite",
    ),
    "altered score, hash not redone": (
        lambda p: edit_predictions(p, lambda f: _set(f, "score", _first_test_row(f), 1e6)),
        "re-score",
        "not to the",
    ),
    "other board version": (lambda p: edit_toml(p, lambda d: d["board"].update(version=2)), "board", "version 2"),
    "unknown board": (
        lambda p: edit_toml(p, lambda d: d["board"].update(name="no-such-board")),
        "board",
        "no-such-board",
    ),
    "other code": (
        lambda p: edit_toml(p, lambda d: d["code"]["files"].update({"methods/intensity.py": "0" * 64})),
        "code",
        "methods/intensity.py",
    ),
    "code outside the repository": (
        lambda p: edit_toml(p, lambda d: d["code"].update(files={"/tmp/mine.py": "0" * 64})),
        "code",
        "not a file of this repository",
    ),
    "HTML in the method name": (
        lambda p: edit_toml(p, lambda d: d["method"].update(name="<b>x</b>")),
        "layout",
        "lower-case letters",
    ),
    "unknown key": (lambda p: edit_toml(p, lambda d: d.update(surprise=1)), "layout", "unknown key surprise"),
    "wrong type": (lambda p: edit_toml(p, lambda d: d.update(seed="zero")), "layout", "seed must be a whole number"),
    "missing key": (lambda p: edit_toml(p, lambda d: d["weights"].pop("id")), "layout", "weights.id is missing"),
    "missing file": (lambda p: (p / REPORTED).unlink(), "layout", "missing file reported.json"),
    "stray file": (lambda p: (p / "notes.txt").write_text("hi"), "layout", "unexpected file notes.txt"),
    "file changed after checksums": (
        lambda p: (p / REPORTED).write_text('{"metrics": []}'),
        "checksums",
        "reported.json",
    ),
    "malformed checksums": (lambda p: (p / "SHA256SUMS").write_text("nonsense\n"), "checksums", "line 1"),
    # A hostile submitter's bundles: each refused at layout, before anything reads or stores it.
    "checksums linked to a system file": (
        lambda p: _link(p / "SHA256SUMS", "/etc/passwd"),
        "layout",
        "SHA256SUMS is a symbolic link",
    ),
    "reported linked to an endless device": (
        lambda p: _link(p / REPORTED, "/dev/zero"),
        "layout",
        "reported.json is a symbolic link",
    ),
    "a pipe as a file": (lambda p: _fifo(p / REPORTED), "layout", "reported.json is not a regular file"),
    "a folder as a file": (lambda p: _folder(p / REPORTED), "layout", "reported.json is a folder"),
    "run id leading out of its folder": (
        lambda p: edit_toml(p, lambda d: d.update(run_id="../../x")),
        "layout",
        "run_id '../../x' is not lower-case",
    ),
    "NaN parameter": (
        lambda p: edit_toml(p, lambda d: d["method"]["params"].update(smoothing=float("nan"))),
        "layout",
        "method.params.smoothing = nan is not finite",
    ),
    "seed beyond 32 bits": (
        lambda p: edit_toml(p, lambda d: d.update(seed=2**40)),
        "layout",
        "seed = 1099511627776 is out of range",
    ),
    "board version beyond 32 bits": (
        lambda p: edit_toml(p, lambda d: d["board"].update(version=2**31)),
        "layout",
        "board.version = 2147483648",
    ),
    "malformed date": (
        lambda p: edit_toml(p, lambda d: d.update(finished_at="yesterday")),
        "layout",
        "'yesterday' is not a date",
    ),
    "unknown precision": (
        lambda p: edit_toml(p, lambda d: d.update(precision="fp4")),
        "layout",
        "precision must be one of",
    ),
    "NaN in reported.json": (
        lambda p: _edit_reported(p, lambda d: d["metrics"][0].update(value=float("nan"))),
        "layout",
        "holds NaN, which is not a JSON number",
    ),
    "extra key in a latency row": (
        lambda p: _edit_reported(p, lambda d: d["latency"][0].update(surprise=1)),
        "layout",
        "unknown key latency[0].surprise",
    ),
    "non-numeric timing": (
        lambda p: _edit_reported(p, lambda d: d["latency"][0].update(p50_ms="fast")),
        "layout",
        "latency[0].p50_ms must be a number",
    ),
    "negative latency": (
        lambda p: _edit_reported(p, lambda d: d["latency"][0].update(p50_ms=-5.0)),
        "layout",
        "latency[0].p50_ms = -5.0 is out of range",
    ),
    "impossible throughput": (
        lambda p: _edit_reported(p, lambda d: d["latency"][0].update(throughput_ips=1e300)),
        "layout",
        "latency[0].throughput_ips = 1e+300 is out of range",
    ),
    "throughput the timings do not give": (
        lambda p: _edit_reported(p, lambda d: d["latency"][0].update(throughput_ips=1e6)),
        "layout",
        "claims 1e+06 images/s",
    ),
    "negative fit time": (
        lambda p: _edit_reported(p, lambda d: d["measured"].update(fit_seconds=-1.0)),
        "layout",
        "measured.fit_seconds = -1.0 is out of range",
    ),
    "NULL severity": (
        lambda p: edit_predictions(
            p, lambda f: f.astype({"severity": "Int64"}).pipe(_set, "severity", _first_test_row(f), pd.NA)
        ),
        "layout",
        "a row has a NULL image_id, split, condition or severity",
    ),
    "maps with the wrong columns": (
        lambda p: _write(p, "maps.parquet", pd.DataFrame({"image_id": ["a"], "picture": [b"x"]})),
        "layout",
        "maps.parquet: missing column split",
    ),
    "maps whose data is not their shape": (
        lambda p: _write(
            p,
            "maps.parquet",
            pd.DataFrame(
                {
                    "image_id": ["a"],
                    "split": ["test"],
                    "condition": ["clean"],
                    "severity": [0],
                    "channels": [1],
                    "height": [4],
                    "width": [4],
                    "scale": [1.0],
                    "data": [b"xx"],
                }
            )
            .astype({"severity": "int32"})
            .astype({c: "int32" for c in ("channels", "height", "width")}),
        ),
        "layout",
        "a map's data is not channels x height x width",
    ),
    "terminal escapes in a key": (
        lambda p: edit_toml(p, lambda d: d.update({"\x1b[2J:skull:": 1})),
        "layout",
        "unknown key",
    ),
}


def _link(path, target):
    path.unlink()
    path.symlink_to(target)


def _fifo(path):
    import os

    path.unlink()
    os.mkfifo(path)


def _folder(path):
    path.unlink()
    path.mkdir()


def _edit_reported(path, change):
    data = json.loads((path / REPORTED).read_text())
    change(data)
    (path / REPORTED).write_text(json.dumps(data))
    write_sums(path)


def _write(path, name, frame):
    with duckdb.connect() as con:
        write_parquet(con, frame, path / name)
    write_sums(path)


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_bundle_fails_at_its_check_with_a_message_naming_it(case, bundle, boards, tmp_path):
    change, check, words = BAD[case]
    path = copy_of(bundle, tmp_path)
    change(path)
    v = verify_bundle(path, boards=boards)
    assert (v.failed, v.ok) == (check, False), v.summary()
    assert words in v.message
    assert str(path) in v.summary() and check in v.summary()


def test_a_bundle_over_the_size_limit_is_refused(bundle, boards, tmp_path, monkeypatch):
    monkeypatch.setattr(bundle_format, "MAX_BUNDLE_BYTES", 10_000)
    v = verify_bundle(copy_of(bundle, tmp_path), boards=boards)
    assert v.failed == "layout" and "MiB limit" in v.message


def test_a_bundle_over_its_boards_limit_is_refused_naming_both_sizes(bundle, boards, tmp_path, monkeypatch):
    from harness.submissions.bundles import size_limit

    path = copy_of(bundle, tmp_path)
    v = verify_bundle(path, boards=boards, upto="size")
    size = sum(p.stat().st_size for p in path.iterdir())
    limit = size_limit(v.board, v.manifest, True, 0)
    assert v.ok and size < limit  # this board's limit scales with its images and conditions
    monkeypatch.setattr(bundle_format, "BYTES_PER_SCORE", 1)
    monkeypatch.setattr(bundle_format, "BYTES_OVERHEAD", 0)
    v = verify_bundle(path, boards=boards)
    assert v.failed == "size" and f"over board {v.board.name}'s limit" in v.message and "MiB" in v.message


def tampered(bundle, boards, tmp_path):
    """One score changed and everything that hashes it redone: only re-scoring can tell."""
    path = copy_of(bundle, tmp_path)
    edit_predictions(path, lambda f: _set(f, "score", _first_test_row(f), -1e6))
    v = verify_bundle(path, boards=boards)
    edit_toml(path, lambda d: d.update(predictions_sha256=v.predictions.pipe(_hash)))
    return path


def _hash(frame):
    from harness.core.fingerprints import predictions_sha256

    return predictions_sha256(frame)


def test_altered_predictions_are_caught_by_rescoring_even_with_every_hash_redone(bundle, boards, tmp_path):
    v = verify_bundle(tampered(bundle, boards, tmp_path), boards=boards)
    assert v.failed == "reported" and "reported values differ from the verified ones" in v.message
    assert v.comparison["differs"].sum() > 0


def test_import_refuses_a_failed_bundle_and_flags_it_when_asked(bundle, boards, tmp_path):
    path = tampered(bundle, boards, tmp_path)
    db = tmp_path / "flagged.duckdb"
    with ResultStore(db) as store:
        v = verify_bundle(path, boards=boards)
        with pytest.raises(XRBenchError, match="not imported"):
            import_verified(store, v)
        assert store.query("SELECT count(*) AS n FROM runs")["n"].iloc[0] == 0
        import_verified(store, v, unverified=True)
        board = assemble(store, "tiny-ad")
        assert board["rank"].isna().all() and "failed verification (check 'reported')" in board["flag"].iloc[0]
    page = next((build_site(db, tmp_path / "site").parent / "boards").glob("tiny-ad*.html")).read_text()
    assert "Not ranked" in page and "reported" in page and "verified" in page


def test_an_import_that_fails_halfway_writes_nothing(bundle, boards, tmp_path, monkeypatch):
    from harness.results import queries

    real = queries.insert_rows

    def broken(con, table, frame):
        if table == "metrics":
            raise RuntimeError("disk full")
        real(con, table, frame)

    monkeypatch.setattr(queries, "insert_rows", broken)
    with ResultStore(tmp_path / "half.duckdb") as store:
        with pytest.raises(RuntimeError):
            import_verified(store, verify_bundle(bundle, boards=boards))
        for table in ("runs", "predictions", "metrics", "submissions", "reported_metrics"):
            assert store.query(f"SELECT count(*) AS n FROM {table}")["n"].iloc[0] == 0, table


def test_html_in_a_card_is_escaped_on_the_site(bundle, boards, tmp_path):
    path = copy_of(bundle, tmp_path)
    edit_toml(path, lambda d: d["method"]["card"].update(description="<script>alert(1)</script>"))
    db = tmp_path / "escaped.duckdb"
    with ResultStore(db) as store:
        import_verified(store, verify_bundle(path, boards=boards))
    out = build_site(db, tmp_path / "site").parent
    pages = "".join(p.read_text() for p in out.rglob("*.html"))
    assert "&lt;script&gt;alert(1)" in pages and "<script>alert(1)" not in pages


def test_rerun_reproduces_a_cpu_bundle_byte_for_byte_and_catches_one_its_code_did_not_make(bundle, boards, tmp_path):
    v = verify_bundle(bundle, rerun=True, boards=boards)
    assert v.ok and v.checks[-1] == "rerun" and "byte-identical" in " ".join(v.notes), v.summary()
    # A bundle whose predictions and reported metrics agree, but that the code does not produce.
    path = tampered(bundle, boards, tmp_path)
    scored = verify_bundle(path, boards=boards).scored
    reported = json.loads((path / REPORTED).read_text())
    reported["metrics"] = bundle_format._records(scored.metrics[list(bundle_format.METRIC_KEYS)])
    reported["run_values"].update(scored.run_values)
    reported["robustness"] = {k: scored.robustness[k] for k in bundle_format.ROBUSTNESS_KEYS}
    (path / REPORTED).write_text(json.dumps(reported))
    write_sums(path)
    assert verify_bundle(path, boards=boards).ok
    v = verify_bundle(path, rerun=True, boards=boards)
    assert v.failed == "rerun" and "other predictions" in v.message


def test_submit_refuses_an_existing_folder_and_leaves_no_half_bundle(runs, tmp_path, monkeypatch):
    db, anomaly, _ = runs
    with ResultStore(db) as store:
        out = write_bundle(store, anomaly, tmp_path / "b")
        with pytest.raises(XRBenchError, match="already exists"):
            write_bundle(store, anomaly, out)
        with pytest.raises(XRBenchError, match="kept no maps; submit it without --maps"):
            write_bundle(store, anomaly, tmp_path / "m", maps=True)
        monkeypatch.setattr(bundle_format, "reported_record", lambda *a: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            write_bundle(store, anomaly, tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_cli_verify_exit_codes(bundle, boards, tmp_path, capsys):
    board = ["--board", str(boards["tiny-ad"])]
    assert main(["verify", str(bundle), *board]) == 0
    assert "reported vs verified" in capsys.readouterr().out
    bad = copy_of(bundle, tmp_path)
    (bad / REPORTED).unlink()
    assert main(["verify", str(bundle), str(bad), *board, "--quiet"]) == 2
    out = capsys.readouterr()
    assert "FAILED" in out.out and "1 of 2 bundles failed verification" in out.err


def test_cli_import_finds_bundles_under_a_folder_and_skips_unchanged_ones(bundle, boards, tmp_path, capsys):
    folder = tmp_path / "submissions" / "tiny-ad" / "intensity"
    shutil.copytree(bundle, folder / "b1")
    args = [
        "import",
        str(tmp_path / "submissions"),
        "--db",
        str(tmp_path / "i.duckdb"),
        "--board",
        str(boards["tiny-ad"]),
    ]
    assert main(args) == 0
    assert "1 bundles: 1 verified" in capsys.readouterr().out
    assert main(args) == 0
    assert "1 bundles: 1 unchanged" in capsys.readouterr().out
    (folder / "b1" / REPORTED).write_text("{}")  # damaged after import: verified again, and refused
    assert main(args) == 2


def test_submit_refuses_a_run_without_a_code_reference(runs, tmp_path):
    db = tmp_path / "old.duckdb"
    shutil.copy(runs[0], db)
    with ResultStore(db) as store:
        store.con.execute("UPDATE runs SET method_code = NULL WHERE run_id = ?", [runs[1]])
        with pytest.raises(XRBenchError, match="before runs recorded their method's code"):
            write_bundle(store, runs[1], tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_a_parquet_of_millions_of_rows_in_a_small_file_is_refused_from_its_metadata(bundle, boards, tmp_path):
    path = copy_of(bundle, tmp_path)
    rows = bundle_format.MAX_BUNDLE_ROWS + 1
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT 'a' AS image_id, 'test' AS split, 'clean' AS condition, 0 AS severity, 0.5 AS score "
            f"FROM range({rows})) TO '{path / PREDICTIONS}' (FORMAT parquet, COMPRESSION zstd)"
        )
    write_sums(path)
    assert (path / PREDICTIONS).stat().st_size < bundle_format.MAX_BUNDLE_BYTES
    v = verify_bundle(path, boards=boards)
    assert v.failed == "layout" and f"holds {rows} rows" in v.message and v.bundle is None


def test_a_bundle_reusing_another_bundles_run_id_is_refused(bundle, boards, tmp_path):
    other = shutil.copytree(bundle, tmp_path / "other")
    edit_toml(other, lambda d: d["method"]["card"].update(description="mine now"))
    with ResultStore(tmp_path / "db.duckdb") as store:
        import_verified(store, verify_bundle(bundle, boards=boards))
        with pytest.raises(XRBenchError, match=r"is already stored from the bundle .* a bundle may not replace"):
            import_verified(store, verify_bundle(other, boards=boards))
        same = shutil.copytree(bundle, tmp_path / "identical")
        assert import_verified(store, verify_bundle(same, boards=boards)).status == "unchanged"
        card = store.query("SELECT method_card FROM runs")["method_card"].iloc[0]
    assert "mine now" not in card


def test_import_unverified_skips_a_bundle_linking_a_system_file_and_publishes_nothing_of_it(
    bundle, boards, tmp_path, capsys
):
    folder = tmp_path / "submissions" / "tiny-ad" / "intensity"
    shutil.copytree(bundle, folder / "good")
    hostile = shutil.copytree(bundle, folder / "hostile")
    _link(hostile / "SHA256SUMS", "/etc/passwd")
    db = tmp_path / "db.duckdb"
    args = ["import", str(tmp_path / "submissions"), "--db", str(db), "--board", str(boards["tiny-ad"])]
    assert main([*args, "--unverified"]) == 0
    out = capsys.readouterr()
    assert "SHA256SUMS is a symbolic link" in out.err and "1 not imported" in out.out
    assert main(args) == 2  # without --unverified the refusal is the command's outcome
    first_line = open("/etc/passwd").readline().strip()
    with ResultStore(db) as store:
        assert store.query("SELECT count(*) AS n FROM submissions")["n"].item() == 1
        stored = " ".join(str(v) for v in store.query("SELECT * FROM submissions").iloc[0].tolist())
    site = build_site(db, tmp_path / "site").parent
    pages = "".join(p.read_text() for p in site.rglob("*.html"))
    assert first_line not in stored and first_line not in pages


def test_a_bundle_at_every_bound_the_schema_allows_imports(bundle, boards, tmp_path):
    """What verify accepts, import stores: the schema's bounds are the store's."""
    path = copy_of(bundle, tmp_path)
    edit_toml(path, lambda d: d.update(seed=2**31 - 1, finished_at="2026-12-31T23:59:59.999999"))

    def extremes(data):
        row = data["latency"][0]
        row.update(p50_ms=1e9, p95_ms=1e9, p99_ms=1e9, mean_ms=1e9, host_p50_ms=1e9, warmup=2**31 - 1,
                   iterations=2**31 - 1, peak_memory_bytes=2**63 - 1, param_count=2**63 - 1, bank_bytes=0)  # fmt: skip
        row["throughput_ips"] = row["batch_size"] / (row["mean_ms"] / 1000.0)
        data["measured"].update(fit_seconds=0.0, fit_peak_memory_bytes=2**63 - 1)

    _edit_reported(path, extremes)
    v = verify_bundle(path, boards=boards)
    assert v.ok, v.summary()
    with ResultStore(tmp_path / "db.duckdb") as store:
        assert import_verified(store, v).status == "verified"
        row = store.query("SELECT seed, fit_peak_memory_bytes FROM runs").iloc[0]
        assert row["seed"] == 2**31 - 1 and row["fit_peak_memory_bytes"] == 2**63 - 1


def test_verify_says_when_localization_is_not_verified_for_want_of_maps(tiny_board, boards, tmp_path):
    from harness.api.registry import get_method

    db = tmp_path / "r.duckdb"
    smoke = get_method("padim").card.smoke_params
    run_id = bench("padim", tiny_board, db=db, device="cpu", corruptions=False, params=smoke).run_id
    with ResultStore(db) as store:
        bare = write_bundle(store, run_id, tmp_path / "bare")
        mapped = write_bundle(store, run_id, tmp_path / "mapped", maps=True)
    without = verify_bundle(bare, boards=boards)
    assert without.ok and any("localization metrics not verified: the bundle has no maps" in n for n in without.notes)
    with_maps = verify_bundle(mapped, boards=boards)
    assert with_maps.ok and not any("localization" in n for n in with_maps.notes)


def test_an_imported_bundle_gets_the_gallery_its_local_run_stored(bundle, boards, runs, tmp_path):
    db, anomaly, _ = runs
    with ResultStore(db) as store:
        local = store.query("SELECT * EXCLUDE (run_id) FROM gallery WHERE run_id = ? ORDER BY ALL", [anomaly])
    with ResultStore(tmp_path / "site.duckdb") as store:
        imported, v = import_bundle(store, bundle, boards=boards)
        rebuilt = store.query("SELECT * EXCLUDE (run_id) FROM gallery WHERE run_id = ? ORDER BY ALL", [anomaly])
    assert v.ok and imported.status == "verified"
    kinds = set(local["kind"])
    assert {"case study"} <= kinds and len(local) >= 4 and local["condition"].nunique() == 2  # clean and worst
    pd.testing.assert_frame_equal(rebuilt, local)


def test_a_bundle_with_external_files_verifies_only_from_their_checked_local_copy(bundle, boards, tmp_path):
    from harness.submissions.external import EXTERNAL, externalize

    path = copy_of(bundle, tmp_path)
    moved = externalize(path, tmp_path / "ext", "https://example.org/datasets/xr")
    assert [p.name for p in moved] == [PREDICTIONS] and not (path / PREDICTIONS).exists()
    assert f"https://example.org/datasets/xr/{path.name}/{PREDICTIONS}" in (path / EXTERNAL).read_text()
    alone = verify_bundle(path, boards=boards)
    assert alone.failed == "layout" and "lives outside the repository" in alone.message
    assert "--external DIR" in alone.message and "nothing is downloaded" in alone.message
    whole = verify_bundle(path, boards=boards, external=tmp_path / "ext")
    assert whole.ok and whole.checks == verify_bundle(bundle, boards=boards).checks
    assert whole.bundle.path == path and not (tmp_path / "ext" / path.name / EXTERNAL).exists()
    with open(moved[0], "ab") as f:
        f.write(b"\0")
    changed = verify_bundle(path, boards=boards, external=tmp_path / "ext")
    assert changed.failed == "layout" and f"is not the {PREDICTIONS} that {EXTERNAL} names" in changed.message
    (path / EXTERNAL).write_text(
        (path / EXTERNAL).read_text().replace(f'name = "{PREDICTIONS}"', f'name = "{SUBMISSION}"')
    )
    assert "cannot live outside" in verify_bundle(path, boards=boards, external=tmp_path / "ext").message
