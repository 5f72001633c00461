"""Bundles whose large files live outside the repository.

A bundle on a board of tens of thousands of images can outgrow what a git repository should
hold (`GIT_BUNDLE_BYTES`). Its parquet files may then live in an external dataset repository
(a Hugging Face dataset, for example): the committed folder keeps `submission.toml`,
`reported.json` and `SHA256SUMS`, which still lists every file, plus `external.toml` naming
each moved file with its SHA-256, size and where to download it. Nothing is ever downloaded:
`xrbench verify --external DIR` reads the files from a local copy (`DIR/<bundle folder
name>/<file>`), checks their size and hash, and verifies the bundle as if it were whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.core.fingerprints import file_sha256
from harness.submissions.bundles import MAPS, PREDICTIONS, read_text, toml_text
from harness.submissions.schema import BundleError, check_file, integer, list_of, sha256, table, text

EXTERNAL = "external.toml"
GIT_BUNDLE_BYTES = 25 * 1024 * 1024
"""The most a committed bundle folder may hold; larger bundles keep their parquet files outside."""
MOVABLE = (PREDICTIONS, MAPS)


def source(value: Any, where: str) -> None:
    text(2000)(value, where)
    if not value.startswith("https://"):
        raise BundleError(f"{where.partition(':')[0]}: {where.partition(':')[2]} must be an https:// URL")


def moved_file(value: Any, where: str) -> None:
    if value not in MOVABLE:
        raise BundleError(f"{where.partition(':')[0]}: {value!r} cannot live outside; only {', '.join(MOVABLE)}")


EXTERNAL_SCHEMA = {
    "files": list_of(table({"name": moved_file, "sha256": sha256, "bytes": integer(0, 2**62), "source": source}), 2)
}


def external_files(bundle: Path) -> list[dict]:
    """The files `external.toml` names (none when the bundle is whole), schema-checked."""
    if not (bundle / EXTERNAL).exists():
        return []
    try:
        data = tomllib.loads(read_text(bundle / EXTERNAL))
    except tomllib.TOMLDecodeError as exc:
        raise BundleError(f"{EXTERNAL} is not valid TOML: {exc}") from None
    check_file(data, EXTERNAL_SCHEMA, EXTERNAL)
    for entry in data["files"]:
        if (bundle / entry["name"]).exists():
            raise BundleError(f"{entry['name']} is both in the folder and named in {EXTERNAL}")
    return data["files"]


@contextlib.contextmanager
def whole_bundle(bundle: Path, external: Path | None) -> Iterator[Path]:
    """The folder to verify: `bundle` itself, or for a bundle with external files a temporary
    folder holding its own files and the local copies of the others, each checked against
    `external.toml` first (removed afterwards)."""
    moved = external_files(bundle)
    if not moved:
        yield bundle
        return
    if external is None:
        first = moved[0]
        raise BundleError(
            f"{first['name']} lives outside the repository ({first['source']}); download the bundle's external "
            f"files into DIR/{bundle.name}/ and pass --external DIR (nothing is downloaded)"
        )
    folder = Path(tempfile.mkdtemp(prefix=".whole-bundle-"))
    try:
        for entry in os.scandir(bundle):
            if entry.name != EXTERNAL and entry.is_file(follow_symlinks=False):
                shutil.copyfile(entry.path, folder / entry.name)
        for f in moved:
            shutil.copyfile(checked_copy(external / bundle.name / f["name"], f), folder / f["name"])
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def checked_copy(path: Path, entry: dict) -> Path:
    """The local copy of an external file, refused unless its size and SHA-256 are the named ones."""
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"no local copy of {entry['name']} at {path} (download it from {entry['source']})")
    if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
        raise BundleError(f"{path} is not the {entry['name']} that {EXTERNAL} names (size or SHA-256 differ)")
    return path


def externalize(bundle: Path, out: Path, base_url: str) -> list[Path]:
    """Move a written bundle's parquet files to `out/<bundle folder name>/` and name them in its
    `external.toml` with their download address `base_url/<bundle folder name>/<file>` (upload
    them there). SHA256SUMS is unchanged: it still covers every file."""
    if not base_url.startswith("https://"):
        raise BundleError(f"--external-url {base_url!r} must be an https:// URL")
    target = out / bundle.name
    if target.exists():
        raise BundleError(f"{target} already exists")
    target.mkdir(parents=True)
    entries = []
    for name in MOVABLE:
        if (bundle / name).exists():
            entries.append({"name": name, "sha256": file_sha256(bundle / name), "bytes": (bundle / name).stat().st_size,
                            "source": f"{base_url.rstrip('/')}/{bundle.name}/{name}"})  # fmt: skip
            shutil.move(bundle / name, target / name)
    (bundle / EXTERNAL).write_text(
        "# Files of this bundle kept outside the repository; `xrbench verify --external DIR` reads a local copy.\n"
        + "".join(f"\n[[files]]\n{toml_text(e)}" for e in entries)
    )
    return [target / e["name"] for e in entries]
