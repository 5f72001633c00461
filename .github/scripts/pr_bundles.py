"""Verify the submission bundles a pull request adds or changes with the base branch's code.

A pull request cannot vouch for itself: if CI ran `make verify` from the pull request's own
checkout, a PR that edits the verifier, the Makefile or the metric code alongside its bundle
would be verified by its own edits. This script runs from a checkout of the base commit. It
lists what the PR changes (`git diff base...head`), copies only the changed bundle folders'
files out of the head commit into that checkout (regular files only: a link, a submodule or a
path outside `leaderboards/submissions/` is refused), and runs the base's `xrbench verify` on
them. A PR that changes code and bundles together, or deletes a bundle, is flagged for a
maintainer's review.

    python .github/scripts/pr_bundles.py --base BASE_SHA --head HEAD_SHA [--verifier CMD]

Exit status: 0 when every changed bundle verifies, 1 when one fails, 2 when the PR's bundle
files cannot be staged. Flags are printed as GitHub warnings and written to the step summary.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

SUBMISSIONS = PurePosixPath("leaderboards/submissions")
BUNDLE_DEPTH = 3  # leaderboards/submissions/<board>/<method>/<bundle>/<file>
REGULAR_MODES = ("100644", "100755")


class StagingError(Exception):
    """A file of the PR's bundles that cannot be copied as a plain bundle file."""


@dataclass
class Changes:
    bundles: list[PurePosixPath] = field(default_factory=list)  # bundle folders added or changed
    deleted_bundles: list[PurePosixPath] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # every changed path outside the bundles

    @property
    def flags(self) -> list[str]:
        found = []
        if self.bundles and self.other:
            shown = ", ".join(self.other[:5]) + (" ..." if len(self.other) > 5 else "")
            found.append(f"this pull request changes code or other files ({shown}) as well as bundles: a "
                         "maintainer must review that the code change does not alter verification")  # fmt: skip
        if self.deleted_bundles:
            found.append(f"this pull request deletes bundles: {', '.join(map(str, self.deleted_bundles))}")
        return found


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        raise StagingError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def bundle_folder(path: str) -> PurePosixPath | None:
    """The bundle folder a changed path belongs to, or None when it is not under a bundle."""
    parts = PurePosixPath(path).parts
    prefix = SUBMISSIONS.parts
    if parts[: len(prefix)] != prefix or len(parts) != len(prefix) + BUNDLE_DEPTH + 1:
        return None
    return PurePosixPath(*parts[: len(prefix) + BUNDLE_DEPTH])


def changes(repo: Path, base: str, head: str) -> Changes:
    """What the PR changes, from the merge base of `base` and `head` to `head`."""
    found = Changes()
    lines = git(repo, "diff", "--name-status", "--no-renames", "-z", f"{base}...{head}").split("\0")
    pairs = zip(lines[0::2], lines[1::2], strict=False)
    for status, path in pairs:
        if not status:
            continue
        folder = bundle_folder(path)
        if folder is None:
            found.other.append(path)
        elif status == "D" and not git(repo, "ls-tree", head, f"{folder}/"):
            if folder not in found.deleted_bundles:
                found.deleted_bundles.append(folder)
        elif folder not in found.bundles:
            found.bundles.append(folder)
    return found


def stage(repo: Path, head: str, folder: PurePosixPath, into: Path) -> Path:
    """Copy a bundle folder's files from the `head` commit into `into` (the base checkout),
    replacing what the base has there; refuses anything but regular files."""
    target = (into / folder).resolve()
    if not target.is_relative_to((into / SUBMISSIONS).resolve()):
        raise StagingError(f"{folder} lies outside {SUBMISSIONS}")
    entries = git(repo, "ls-tree", "-z", head, f"{folder}/").split("\0")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for entry in filter(None, entries):
        meta, _, path = entry.partition("\t")
        mode, kind, obj = meta.split()
        name = PurePosixPath(path).name
        if kind != "blob" or mode not in REGULAR_MODES:
            raise StagingError(f"{path} is not a regular file (git mode {mode}, {kind}); a bundle holds files only")
        if name in ("", ".", "..") or "/" in name:
            raise StagingError(f"{path}: not a plain file name")
        data = subprocess.run(["git", "cat-file", "blob", obj], cwd=repo, capture_output=True, check=True).stdout
        (target / name).write_bytes(data)
    return target


def report(flags: list[str]) -> None:
    for flag in flags:
        print(f"::warning title=needs a maintainer's review::{flag}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary and flags:
        with open(summary, "a") as f:
            f.write("## Submission bundles: needs a maintainer's review\n\n" + "".join(f"- {x}\n" for x in flags))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the base commit (its code verifies)")
    parser.add_argument("--head", required=True, help="the pull request's head commit")
    parser.add_argument("--repo", default=".", help="the base checkout (default: the current folder)")
    parser.add_argument("--verifier", default="xrbench verify", help="the verify command (default: xrbench verify)")
    args = parser.parse_args(argv)
    repo = Path(args.repo).resolve()
    try:
        found = changes(repo, args.base, args.head)
        report(found.flags)
        if not found.bundles:
            print("no bundle added or changed")
            return 0
        staged = [stage(repo, args.head, folder, repo) for folder in found.bundles]
    except StagingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"verifying {len(staged)} bundles with the base's code: {', '.join(map(str, found.bundles))}")
    done = subprocess.run([*shlex.split(args.verifier), *map(str, staged)], cwd=repo)
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
