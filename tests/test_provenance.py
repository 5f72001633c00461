"""What a run records about where it came from."""

import subprocess

import torch

from harness.core import provenance


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_and_dirty_flag(tmp_path, monkeypatch):
    repo = tmp_path / "checkout"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    monkeypatch.setattr(provenance, "REPO_ROOT", repo)
    assert provenance.git_state() == (_git(repo, "rev-parse", "HEAD"), False)
    (repo / "untracked.txt").write_text("not part of the code\n")
    assert provenance.git_state()[1] is False  # untracked files do not make a checkout dirty
    (repo / "a.py").write_text("x = 2\n")
    assert provenance.git_state()[1] is True
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path / "not-a-checkout")
    (tmp_path / "not-a-checkout").mkdir()
    assert provenance.git_state() == ("unknown", None)


def test_environment_names_versions_device_and_threads():
    env = provenance.environment(torch.device("cpu"))
    assert env["torch_version"] == torch.__version__ and env["threads"] == torch.get_num_threads()
    assert env["device"].startswith("cpu: ") and '"scikit-learn"' in env["versions"]
