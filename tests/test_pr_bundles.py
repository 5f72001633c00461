"""The submissions workflow's logic (.github/scripts/pr_bundles.py): a pull request's bundles
are verified by the base branch's code, never by code the pull request brings."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".github" / "scripts" / "pr_bundles.py"
spec = importlib.util.spec_from_file_location("pr_bundles", SCRIPT)
pr_bundles = importlib.util.module_from_spec(spec)
sys.modules["pr_bundles"] = pr_bundles  # its dataclasses look their module up
spec.loader.exec_module(pr_bundles)

BUNDLE = "leaderboards/submissions/tiny-ad/intensity"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def write(repo: Path, path: str, text: str) -> None:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)


@pytest.fixture
def repo(tmp_path):
    """A base commit with a verifier and one bundle; `pr` is a branch the tests change."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(repo, "harness/verify.py", "STRICT = True\n")
    write(repo, f"{BUNDLE}/old/SHA256SUMS", "old sums\n")
    write(repo, f"{BUNDLE}/old/submission.toml", "old\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    git(repo, "checkout", "-qb", "pr")
    return repo


def commit(repo: Path) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pr")
    git(repo, "checkout", "-q", "main")  # the workflow runs from the base checkout


def fake_verifier(tmp_path: Path, status: int = 0) -> str:
    """A verify command that records the folders it was given and what the code says."""
    record = tmp_path / "verified.txt"
    code = (
        "import sys, pathlib; r = pathlib.Path(sys.argv[1]); "
        "r.write_text(pathlib.Path('harness/verify.py').read_text() + '\\n'.join(sys.argv[2:])); "
        f"sys.exit({status})"
    )
    return f"{sys.executable} -c {code!r} {record}"


def test_a_new_bundle_is_verified_with_the_base_code_and_a_code_change_is_flagged(repo, tmp_path, capsys):
    write(repo, f"{BUNDLE}/new/SHA256SUMS", "new sums\n")
    write(repo, f"{BUNDLE}/new/reported.json", "{}\n")
    write(repo, "harness/verify.py", "STRICT = False  # the PR loosens the verifier\n")
    commit(repo)
    found = pr_bundles.changes(repo, "main", "pr")
    assert [str(b) for b in found.bundles] == [f"{BUNDLE}/new"] and found.other == ["harness/verify.py"]
    assert "maintainer must review" in found.flags[0]
    code = pr_bundles.main(
        ["--base", "main", "--head", "pr", "--repo", str(repo), "--verifier", fake_verifier(tmp_path)]
    )
    assert code == 0
    assert "::warning title=needs a maintainer's review::" in capsys.readouterr().out
    recorded = (tmp_path / "verified.txt").read_text().splitlines()
    assert recorded[0] == "STRICT = True"  # the base's verifier ran, not the PR's
    assert recorded[1:] == [str(repo / BUNDLE / "new")]
    assert (repo / BUNDLE / "new" / "reported.json").read_text() == "{}\n"


def test_a_bundle_only_pr_is_not_flagged_and_a_failing_bundle_fails(repo, tmp_path, capsys):
    write(repo, f"{BUNDLE}/old/submission.toml", "changed\n")
    commit(repo)
    found = pr_bundles.changes(repo, "main", "pr")
    assert [str(b) for b in found.bundles] == [f"{BUNDLE}/old"] and not found.flags
    verifier = fake_verifier(tmp_path, status=3)
    assert pr_bundles.main(["--base", "main", "--head", "pr", "--repo", str(repo), "--verifier", verifier]) == 1
    assert "::warning" not in capsys.readouterr().out


def test_a_deleted_bundle_is_flagged(repo, tmp_path):
    git(repo, "rm", "-rq", f"{BUNDLE}/old")
    commit(repo)
    found = pr_bundles.changes(repo, "main", "pr")
    assert not found.bundles and "deletes bundles" in found.flags[0]


def test_a_link_in_a_pr_bundle_is_refused_before_anything_runs(repo, tmp_path, capsys):
    (repo / BUNDLE / "new").mkdir(parents=True)
    (repo / BUNDLE / "new" / "SHA256SUMS").symlink_to("/etc/passwd")
    commit(repo)
    verifier = fake_verifier(tmp_path)
    assert pr_bundles.main(["--base", "main", "--head", "pr", "--repo", str(repo), "--verifier", verifier]) == 2
    assert "is not a regular file (git mode 120000" in capsys.readouterr().err
    assert not (tmp_path / "verified.txt").exists()


def test_files_outside_a_bundle_folder_are_code_not_bundles():
    assert pr_bundles.bundle_folder(f"{BUNDLE}/x/SHA256SUMS") is not None
    assert pr_bundles.bundle_folder(f"{BUNDLE}/SHA256SUMS") is None
    assert pr_bundles.bundle_folder(f"{BUNDLE}/x/deeper/SHA256SUMS") is None
    assert pr_bundles.bundle_folder("leaderboards/synth-cxr-ad.toml") is None
