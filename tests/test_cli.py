from harness.cli.main import main


def test_list_shows_methods_and_boards(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "patchcore" in out and "synth-cxr-ad" in out


def test_unknown_method_is_a_one_line_error(capsys):
    assert main(["bench", "--method", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'nope'" in err and "Traceback" not in err


def test_bench_prints_a_summary(tiny_board, tmp_path, capsys):
    assert main(["bench", "--method", "intensity", "--board", str(tiny_board), "--db", str(tmp_path / "r.duckdb")]) == 0
    out = capsys.readouterr().out
    assert "auroc" in out and "95% CI" in out and "stored in" in out
    assert main(["runs", "--db", str(tmp_path / "r.duckdb")]) == 0
    assert "intensity" in capsys.readouterr().out


def test_compare_two_runs(tiny_board, tmp_path, capsys):
    from harness.run.runner import bench

    db = tmp_path / "r.duckdb"
    a = bench("intensity", tiny_board, db=db, device="cpu", corruptions=False)
    b = bench("random", tiny_board, db=db, device="cpu", corruptions=False)
    assert main(["compare", a.run_id, b.run_id, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "DeLong p" in out and "bootstrap p" in out
    assert main(["compare", a.run_id, a.run_id, "--db", str(db)]) == 0
    assert "not distinguishable" in capsys.readouterr().out
    assert main(["compare", a.run_id, "missing-run", "--db", str(db)]) == 2
