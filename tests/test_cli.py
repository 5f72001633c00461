import pytest

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
    assert "rank among the 1 ranked runs of r.duckdb" in " ".join(out.split())  # not "on the leaderboard"
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


def test_list_is_one_line_per_method_and_board_in_80_columns(monkeypatch, capsys):
    from harness.api.registry import method_index
    from harness.cli import common

    monkeypatch.setattr(common.console, "_width", 80)
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = set(method_index()["methods"])  # what the list reads (methods tests register on the fly are not in it)
    shown = [line.split()[0] for line in lines if line.startswith("  ") and line.split()[0] in names]
    assert sorted(shown) == sorted(names) and all(len(line) <= 80 for line in lines)


def test_list_groups_methods_by_family_and_says_what_runs_here(monkeypatch, capsys):
    from harness.api.registry import method_index
    from harness.cli import common

    monkeypatch.setattr(common.console, "_width", 200)
    assert main(["list", "methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cards = method_index()["methods"]
    rows, family, families = {}, None, []
    for line in lines:
        if line.startswith("  ") and line.split()[0] in cards:
            rows[line.split()[0]] = line
            assert cards[line.split()[0]]["card"]["family"] == family  # under its family's heading
        elif line and not line.startswith(("methods", "boards", " ")):
            family = line.strip()
            families.append(family)
    assert sorted(rows) == sorted(cards)
    assert families == sorted(set(families))  # each family one heading, in order
    refused = {name for name in rows if cards[name]["card"]["exceptions"].get("fits", "").startswith("cannot run")}
    assert refused and all(" no: needs " in rows[name] for name in refused)
    assert all(rows[name].rstrip().endswith("yes") for name in rows.keys() - refused)


def test_show_prints_the_card_and_every_parameter(capsys):
    from harness.api.registry import get_method

    assert main(["show", "padim"]) == 0
    out = capsys.readouterr().out
    assert "Defard et al." in out and "(--param KEY=VALUE)" in out
    for spec in get_method("padim").card.params.specs():
        assert spec.name in out and spec.help[:20] in out
    assert main(["show", "padimm"]) == 2 and "did you mean 'padim'" in capsys.readouterr().err


def test_options_are_never_abbreviated(capsys):
    with pytest.raises(SystemExit) as exited:  # argparse's own exit, as for any usage error
        main(["bench", "--method", "intensity", "--no-corrupt"])
    assert exited.value.code == 2 and "unrecognized arguments: --no-corrupt" in capsys.readouterr().err


def test_every_argument_is_explained_and_data_prepare_takes_every_dataset_with_a_reader():
    import argparse

    from harness.boards.datasets import preparable_datasets
    from harness.cli.main import build_parser

    def walk(parser, prefix=""):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{prefix}{name} ")
            elif not isinstance(action, argparse._HelpAction):
                yield prefix, action

    assert [(p, a.dest) for p, a in walk(build_parser()) if not a.help] == []
    prepare = dict(walk(build_parser()))
    assert {"rsna", "vindr", "dentex", "nih"} <= set(preparable_datasets())
    assert build_parser().parse_args(["data", "prepare", "dentex", "--root", "x"]).name == "dentex"
    assert prepare


def test_runs_shows_whole_aurocs_in_80_columns(tiny_board, tmp_path, monkeypatch, capsys):
    from harness.cli import common
    from harness.run.runner import bench

    db = tmp_path / "r.duckdb"
    bench("intensity", tiny_board, db=db, device="cpu", corruptions=False)
    monkeypatch.setattr(common.console, "_width", 80)
    assert main(["runs", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "0.…" not in out and any(token.count(".") == 1 and len(token) == 5 for token in out.split())


def test_a_warning_when_the_code_is_not_the_checkout_you_are_in(tmp_path, monkeypatch, capsys):
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "__init__.py").write_text("")
    (tmp_path / "leaderboards").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XRBENCH_ROOT", raising=False)
    assert main(["list", "boards"]) == 0
    assert f"not the checkout {tmp_path}" in capsys.readouterr().err
