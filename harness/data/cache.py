"""Board images as tensors: decoded once, resized to the board resolution, cached, verified.

The cache key holds everything that changes the pixels a method sees: dataset content hash
(or, for a user's copy, where it lives), manifest hash, resolution and resampling filter. A cache entry carries
the SHA-256 of its array and the size and modification time of every source file; both are
checked on every load, so a damaged cache, or one whose source images changed on disk since,
is rebuilt with a notice, never silently reused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.progress import Progress

from harness.core.cachefiles import load_verified, save_verified
from harness.core.errors import DataIntegrityError
from harness.core.fingerprints import image_digest
from harness.core.paths import cache_root
from harness.data.adapters.base import DatasetSource
from harness.data.dicom import is_dicom, read_dicom, to_uint8

log = logging.getLogger("xrbench")


@dataclass(frozen=True)
class SplitData:
    """One split of a board: images (N, 1, H, W) uint8 plus labels and metadata."""

    images: torch.Tensor
    meta: pd.DataFrame  # manifest rows in image order

    def __len__(self) -> int:
        return len(self.meta)


# Part of every cache key: how images become pixels. 2: JPEGs decoded in Pillow's draft mode.
# 3: 16-bit PNGs (PadChest) scaled from their own range, not clipped at 255.
DECODING = 3
# A board's `resample` filter: bilinear by default; a board reproducing a published protocol
# names the filter that protocol resized with.
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}


def read_pixels(path: Path, at_least: int | None = None) -> np.ndarray:
    """8-bit grayscale: DICOM (found by its preamble) through `harness.data.dicom`, anything else
    through Pillow (16-bit images scaled from their own range), at native size; except that
    with `at_least`, a JPEG is decoded at the smallest DCT scale (1/2, 1/4 or 1/8, Pillow's
    draft mode) that keeps both sides at least that large: several times faster for full-size
    radiographs (CheXpert, MIMIC-CXR-JPG)."""
    if is_dicom(path):
        return to_uint8(read_dicom(path))
    with Image.open(path) as im:
        if at_least and im.format == "JPEG":
            im.draft("L", (at_least, at_least))
        if im.mode.startswith("I"):  # 16-bit grayscale: Pillow's conversion to L would clip at 255
            return full_range_uint8(np.asarray(im))
        return np.asarray(im.convert("L"))


def full_range_uint8(values: np.ndarray) -> np.ndarray:
    """An image of more than 8 bits as 8-bit grayscale, its darkest pixel 0 and brightest 255
    (as a DICOM without a window is shown)."""
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    return to_uint8((values - low) / (high - low) if high > low else np.zeros_like(values))


def _decode(
    path: Path,
    resolution: int,
    expected_digest: str | None,
    image_id: str,
    crop: tuple | None = None,
    resample: str = "bilinear",
) -> np.ndarray:
    """Decode, check the recorded digest, cut the entry's crop if it has one, resize to the
    square board resolution (non-square images such as panoramics are stretched, not cropped:
    every method sees the whole image or the whole crop). A recorded digest is of the native
    pixels, so those images (and crops) are decoded at native size; so are images of a board
    that names its own filter, as the protocol it reproduces resized from the full image."""
    native = expected_digest or crop or resample != "bilinear"
    pixels = read_pixels(path, at_least=None if native else resolution)
    if expected_digest is not None and image_digest(image_id, pixels).hex() != expected_digest:
        raise DataIntegrityError(f"{path}: pixels differ from the dataset's recorded digest")
    if crop is not None:
        pixels = cut(pixels, crop)
    if pixels.shape != (resolution, resolution):
        pixels = np.asarray(Image.fromarray(pixels).resize((resolution, resolution), RESAMPLING[resample]))
    return pixels


def cut(pixels: np.ndarray, crop: tuple) -> np.ndarray:
    """The part of an image given by (left, top, right, bottom) fractions, rounded to pixels."""
    height, width = pixels.shape
    left, top, right, bottom = crop
    return pixels[round(top * height) : round(bottom * height), round(left * width) : round(right * width)]


Failure = tuple[str, str]  # (image id, what went wrong, starting with the file's path)
Chunk = tuple[list[Path], list[str], list[str | None], int, list[tuple | None], str]


def _decode_chunk(args: Chunk) -> tuple[np.ndarray, list[Failure]]:
    paths, image_ids, digests, resolution, crops, resample = args
    out = np.zeros((len(paths), resolution, resolution), dtype=np.uint8)
    failures: list[Failure] = []
    for i, (path, image_id, digest, crop) in enumerate(zip(paths, image_ids, digests, crops, strict=True)):
        try:
            out[i] = _decode(path, resolution, digest, image_id, crop, resample)
        except FileNotFoundError:
            failures.append((image_id, f"{path}: missing"))
        except DataIntegrityError as exc:
            failures.append((image_id, str(exc)))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            failures.append((image_id, f"{path}: unreadable ({exc})"))
    return out, failures


def decode_all(
    source: DatasetSource, image_ids: list[str], resolution: int, workers: int = 0, resample: str = "bilinear"
) -> tuple[np.ndarray, list[Failure]]:
    """Decode every image (in worker processes when there are many); failed images stay zero
    and are listed with what went wrong."""
    digests = source.image_digests or {}
    chunk = 64
    jobs = [
        (
            [source.image_path(i) for i in image_ids[start : start + chunk]],
            image_ids[start : start + chunk],
            [digests.get(i) for i in image_ids[start : start + chunk]],
            resolution,
            [source.crop(i) for i in image_ids[start : start + chunk]],
            resample,
        )
        for start in range(0, len(image_ids), chunk)
    ]
    workers = workers or (min(4, os.cpu_count() or 1) if len(image_ids) >= 4 * chunk else 1)
    started = time.perf_counter()
    parts: list[np.ndarray] = []
    failures: list[Failure] = []
    with ExitStack() as stack:
        progress = stack.enter_context(Progress(transient=True, console=Console(stderr=True)))
        task = progress.add_task("decoding images", total=len(image_ids))
        if workers > 1:
            results = stack.enter_context(ProcessPoolExecutor(workers)).map(_decode_chunk, jobs)
        else:
            results = map(_decode_chunk, jobs)
        for array, failed in results:
            parts.append(array)
            failures.extend(failed)
            progress.advance(task, len(array))
    seconds = max(time.perf_counter() - started, 1e-9)
    log.info("decoded %d images in %.1f s (%.0f images/s)", len(image_ids), seconds, len(image_ids) / seconds)
    return (np.concatenate(parts) if parts else np.empty((0, resolution, resolution), np.uint8)), failures


def decode_images(
    source: DatasetSource, image_ids: list[str], resolution: int, workers: int = 0, resample: str = "bilinear"
) -> np.ndarray:
    """Decode every image, collecting all failures before raising one error that lists them."""
    array, failures = decode_all(source, image_ids, resolution, workers, resample)
    if failures:
        shown = "\n  ".join(message for _, message in failures[:5])
        raise DataIntegrityError(
            f"{len(failures)} of {len(image_ids)} images could not be used:\n  {shown}"
            + (f"\n  ... and {len(failures) - 5} more" if len(failures) > 5 else "")
            + ("\nRun `xrbench data prepare` to record them as exclusions." if source.paths is not None else "")
        )
    return array


def _cache_folder(source: DatasetSource, manifest_sha256: str, resolution: int, resample: str = "bilinear") -> Path:
    # Generated datasets are identified by their pixel hash; a user's copy by where it lives.
    content = source.content_sha256 or "root-" + hashlib.sha256(str(source.root.resolve()).encode()).hexdigest()
    key = f"{source.name}-{content[:17]}-{manifest_sha256[:12]}-r{resolution}-d{DECODING}"
    if resample != "bilinear":
        key += f"-{resample}"
    if source.crops:  # entries cut from images: the cut is part of their pixels
        key += "-c" + hashlib.sha256(repr(sorted(source.crops.items())).encode()).hexdigest()[:12]
    return cache_root() / "tensors" / key


def source_stats(source: DatasetSource, image_ids: list[str]) -> np.ndarray:
    """(N, 2) int64: size and modification time (ns) of each image's file; -1, -1 when missing.
    Paths are joined as strings (pathlib costs more than the stat call itself)."""
    stats = np.full((len(image_ids), 2), -1, dtype=np.int64)
    folder, paths = str(source.image_dir), source.paths or {}
    for i, image_id in enumerate(image_ids):
        try:
            st = os.stat(os.path.join(folder, paths.get(image_id, image_id)))
        except OSError:
            continue
        stats[i] = (st.st_size, st.st_mtime_ns)
    return stats


def write_cache(
    source: DatasetSource,
    manifest_sha256: str,
    resolution: int,
    array: np.ndarray,
    image_ids: list[str],
    resample: str = "bilinear",
) -> None:
    """Store decoded images (N, H, W) uint8 with their SHA-256, and the sizes and modification
    times of their source files: what every later load checks."""
    folder = _cache_folder(source, manifest_sha256, resolution, resample)
    folder.mkdir(parents=True, exist_ok=True)
    save_verified(folder / "sources.npy", source_stats(source, image_ids))
    save_verified(
        folder / "images.npy",
        array,
        resolution=resolution,
        manifest_sha256=manifest_sha256,
        content_sha256=source.content_sha256,
        root=str(source.root),
    )


def _reusable(folder: Path, source: DatasetSource, image_ids: list[str]) -> np.ndarray | None:
    """The cached images in `folder` when they are intact and no source file changed since they
    were written; None otherwise, with a notice saying why."""
    with ThreadPoolExecutor(2) as pool:  # hashing the images and stat-ing their files overlap
        checked = pool.submit(load_verified, folder / "images.npy", mmap=True)
        current = pool.submit(source_stats, source, image_ids)
        images, stats = checked.result(), load_verified(folder / "sources.npy")
    problem = next((x for x in (images, stats) if isinstance(x, str)), None)
    if problem is None and len(images[0]) != len(image_ids):
        problem = f"images.npy holds {len(images[0])} images, not {len(image_ids)}"
    if problem is not None:
        if problem != "missing":
            log.warning("the image cache %s is stale: %s; decoding the images again", folder, problem)
        return None
    changed = np.flatnonzero((current.result() != stats[0]).any(axis=1))
    if len(changed):
        log.warning(
            "%d images of %s changed on disk since they were cached (first: %s); decoding them all again",
            len(changed),
            source.name,
            source.image_path(image_ids[changed[0]]),
        )
        return None
    return images[0]


def cached_images(
    source: DatasetSource, manifest: pd.DataFrame, manifest_sha256: str, resolution: int, resample: str = "bilinear"
) -> np.ndarray:
    """All manifest images at `resolution`, as (N, H, W) uint8 in manifest order, memory-mapped
    from the cache when it is intact and as new as its source files; else decoded and cached."""
    folder = _cache_folder(source, manifest_sha256, resolution, resample)
    ids = manifest["image_id"].tolist()
    array = _reusable(folder, source, ids)
    if array is None:
        array = decode_images(source, ids, resolution, resample=resample)
        write_cache(source, manifest_sha256, resolution, array, ids, resample)
    return array


def board_splits(
    source: DatasetSource, manifest: pd.DataFrame, manifest_sha256: str, resolution: int, resample: str = "bilinear"
) -> dict[str, SplitData]:
    known = set(source.entries["image_id"])
    unknown = [i for i in manifest["image_id"] if i not in known]
    if unknown:
        raise DataIntegrityError(
            f"{len(unknown)} manifest images are not in dataset {source.name} at {source.root} (first: {unknown[0]})"
        )
    array = cached_images(source, manifest, manifest_sha256, resolution, resample)
    splits = {}
    for split in ("train", "val", "test"):
        mask = (manifest["split"] == split).to_numpy()
        splits[split] = SplitData(torch.from_numpy(array[mask]).unsqueeze(1), manifest[mask].reset_index(drop=True))
    return splits
