"""Data preparation speed: decode + resize + cache write (what `cached_images` does on a
first run), and reading the verified cache back. Images per second = n_images / mean time."""

import numpy as np
import pytest

from harness.boards.spec import DatasetSpec
from harness.core.paths import cache_root
from harness.data import cache as data
from harness.data.adapters import synthetic, synthetic_dental
from harness.data.cache import cached_images

DATASETS = {
    "chest-png-256": (synthetic, DatasetSpec("synth-cxr", {"seed": 11, "n_patients": 250, "image_size": 256})),
    "dental-dicom-384x192": (
        synthetic_dental,
        DatasetSpec("synth-dental", {"seed": 11, "n_patients": 250, "image_height": 192}),
    ),
}


@pytest.fixture(scope="module", autouse=True)
def isolated(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("data-speed")
        patch.setenv("XRBENCH_CACHE", str(root / "cache"))
        patch.setenv("XRBENCH_DATA", str(root / "data"))
        yield


@pytest.fixture(scope="module", params=sorted(DATASETS))
def source(request, isolated):
    module, spec = DATASETS[request.param]
    return module.prepare(spec)


def _clear_cache():
    import shutil

    shutil.rmtree(cache_root() / "tensors", ignore_errors=True)


def test_prepare_decode_resize_and_cache_write(benchmark, source):
    manifest = source.entries[["image_id"]]
    benchmark.extra_info["images"] = len(manifest)
    array = benchmark.pedantic(cached_images, args=(source, manifest, "bench", 128), setup=_clear_cache, rounds=2)
    assert array.shape == (len(manifest), 128, 128) and array.std() > 10  # decoded images, not zeros
    assert next((cache_root() / "tensors").glob("*/images.npy")).stat().st_size > array.nbytes


def test_read_the_verified_cache(benchmark, source, monkeypatch):
    manifest = source.entries[["image_id"]]
    written = cached_images(source, manifest, "bench", 128)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache was missed: images were decoded again")

    monkeypatch.setattr(data, "decode_images", no_decoding)
    benchmark.extra_info["images"] = len(manifest)
    read = benchmark(cached_images, source, manifest, "bench", 128)
    assert isinstance(read, np.memmap) and np.array_equal(read, written)


@pytest.fixture(scope="module")
def large_jpegs(tmp_path_factory):
    """16 full-size radiograph-like JPEGs, 2,048 x 1,664 (MIMIC-CXR-JPG and CheXpert's originals
    are of this order)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:1664, 0:2048]
    for i in range(16):
        pixels = 127 + 60 * np.sin(x / (100 + 10 * i)) * np.cos(y / 110) + rng.normal(0, 8, x.shape)
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
    return sorted(folder.glob("*.jpg"))


@pytest.mark.parametrize("mode", ["draft", "full"])
def test_decode_and_resize_large_jpegs_to_224(benchmark, large_jpegs, mode):
    """What `data prepare` does per JPEG: draft mode (the harness) against a full decode."""
    at_least = 224 if mode == "draft" else None

    def decode_all():
        for path in large_jpegs:
            pixels = data.read_pixels(path, at_least)
            np.asarray(data.Image.fromarray(pixels).resize((224, 224), data.Image.Resampling.BILINEAR))

    benchmark.extra_info["images"] = len(large_jpegs)
    benchmark.pedantic(decode_all, rounds=3, iterations=1)
