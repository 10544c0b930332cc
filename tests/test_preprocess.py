"""Preprocessing: value-for-value parity with transformers' ViLT image processor, every image
mode, and one-line errors for every bad input.

The reference is `ViltImageProcessorPil`: the default `ViltImageProcessor` class is the
torchvision backend, and torchvision is not installed here (nor needed by vilt-edge).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image, ImageFile

from vilt_edge.bundle import Preprocessing
from vilt_edge.errors import InputError
from vilt_edge.preprocess import load_image, output_size, preprocess_batch, preprocess_image

COCO_IMAGES = sorted((SHARED_DATA / "vqav2-mini" / "images").glob("*/*.jpg"))
VILT = Preprocessing.for_shortest_edge(384, 32)
EASY_VQA = Preprocessing.for_shortest_edge(64, 8)
# Bit-identical in practice (same PIL resize, same float64 -> float32 order); the bound leaves
# room only for float noise, far below one 8-bit level (2 / 255 after normalization).
TOLERANCE = 1e-6


def reference(image: Image.Image, settings: Preprocessing) -> np.ndarray:
    from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil

    processor = ViltImageProcessorPil(
        size={"shortest_edge": settings.shortest_edge},
        size_divisor=settings.size_divisor,
        image_mean=list(settings.image_mean),
        image_std=list(settings.image_std),
        rescale_factor=settings.rescale_factor,
    )
    return processor(image, return_tensors="np")["pixel_values"][0]


def assert_matches_reference(source, rgb: Image.Image, settings: Preprocessing, label: str):
    ours = preprocess_image(source, settings)
    theirs = reference(rgb, settings)
    assert ours.dtype == np.float32
    assert ours.shape == theirs.shape
    max_abs = float(np.abs(ours - theirs).max())
    print(f"{label}: {ours.shape} max-abs difference vs ViltImageProcessorPil = {max_abs:.3g}")
    assert max_abs <= TOLERANCE


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.name) for p in COCO_IMAGES]
    or [pytest.param(None, marks=pytest.mark.skip(reason=f"no COCO images under {SHARED_DATA}"))],
)
def test_coco_images_match_transformers(path: Path):
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    assert_matches_reference(path, rgb, VILT, path.name)


@pytest.mark.parametrize("width, height", [(300, 700), (641, 383), (1000, 200), (33, 97)])
def test_odd_sizes_match_transformers(width: int, height: int):
    rng = np.random.default_rng(width * height)
    # Noise plus a gradient: noise stresses the filter taps, the gradient the rounding.
    gradient = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    noise = rng.normal(0, 40, (height, width, 3))
    array = np.clip(gradient + noise, 0, 255).astype(np.uint8)
    assert_matches_reference(array, Image.fromarray(array), VILT, f"{width}x{height}")


def test_easy_vqa_image_matches_transformers():
    import easy_vqa  # part of the test install (the easyvqa extra): never skipped

    path = Path(next(iter(easy_vqa.get_test_image_paths().values())))
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    assert rgb.size == (64, 64)
    assert_matches_reference(path, rgb, EASY_VQA, f"easy-VQA {path.name}")


def test_output_size_matches_transformers():
    from transformers.models.vilt.image_processing_pil_vilt import get_resize_output_image_size

    rng = np.random.default_rng(0)
    sizes = [tuple(int(v) for v in rng.integers(32, 3000, 2)) for _ in range(300)]
    sizes += [(480, 640), (640, 480), (384, 384), (32, 32), (799, 1333), (41, 4000)]
    for height, width in sizes:
        for settings in (VILT, EASY_VQA):
            expected = get_resize_output_image_size(
                np.zeros((3, height, width), np.uint8),
                shorter=settings.shortest_edge,
                longer=settings.longest_edge,
                size_divisor=settings.size_divisor,
                input_data_format="channels_first",
            )
            assert output_size(height, width, settings) == expected, (height, width)


def test_path_pil_and_array_give_the_same_pixels(tmp_path: Path):
    array = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    by_path = preprocess_image(tmp_path / "a.png", VILT)
    assert np.array_equal(by_path, preprocess_image(str(tmp_path / "a.png"), VILT))
    assert np.array_equal(by_path, preprocess_image(Image.fromarray(array), VILT))
    assert np.array_equal(by_path, preprocess_image(array, VILT))
    assert by_path.shape == (3, 384, 512)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(mode: str):
    image = Image.new(mode, (48, 40))
    result = load_image(image)
    assert result.mode == "RGB" and result.size == (48, 40)
    assert preprocess_image(image, VILT).shape[0] == 3


def test_transparency_is_composited_on_white():
    clear = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    assert load_image(clear).getpixel((0, 0)) == (255, 255, 255)
    solid = Image.new("RGBA", (40, 40), (255, 0, 0, 255))
    assert load_image(solid).getpixel((0, 0)) == (255, 0, 0)


def test_high_depth_images_scale_by_range_not_clip():
    # PIL's own I;16 -> RGB clips at 255, which would make this mid-grey image white.
    mid = Image.fromarray(np.full((40, 40), 32768, dtype=np.uint16))
    assert mid.mode == "I;16"
    assert load_image(mid).getpixel((0, 0)) == (128, 128, 128)
    unit = Image.fromarray(np.full((40, 40), 0.5, dtype=np.float32))
    assert load_image(unit).getpixel((0, 0)) == (128, 128, 128)


def test_sixteen_bit_png_file(tmp_path: Path):
    Image.fromarray(np.full((40, 40), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert load_image(tmp_path / "deep.png").getpixel((0, 0)) == (255, 255, 255)


def assert_one_line_naming(error: pytest.ExceptionInfo, name: str):
    message = str(error.value)
    assert "\n" not in message
    assert name in message


def test_missing_file(tmp_path: Path):
    with pytest.raises(InputError, match="not found") as error:
        load_image(tmp_path / "nope.jpg")
    assert_one_line_naming(error, "nope.jpg")


def test_directory_is_not_an_image(tmp_path: Path):
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path)


def test_random_bytes_are_not_an_image(tmp_path: Path):
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(InputError, match="not an image") as error:
        preprocess_image(path, VILT)
    assert_one_line_naming(error, "noise.jpg")


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("PNG", "png")])
def test_truncated_file(fmt: str, suffix: str, tmp_path: Path):
    array = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    path = tmp_path / f"half.{suffix}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputError, match="truncated") as error:
        preprocess_image(path, VILT)
    assert_one_line_naming(error, f"half.{suffix}")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("limit_fraction", [0.9, 0.3], ids=["warning", "error"])
def test_decompression_bomb(limit_fraction: float, tmp_path: Path, monkeypatch):
    # Over MAX_IMAGE_PIXELS PIL only warns; over twice that it raises. Both must refuse.
    path = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(200 * 100 * limit_fraction))
    with pytest.raises(InputError, match="decompression bomb") as error:
        preprocess_image(path, VILT)
    assert_one_line_naming(error, "big.png")


def test_image_smaller_than_one_patch_is_refused():
    # ViLT semantics would upscale 10x10 to 384x384; a sub-patch image carries nothing to see.
    with pytest.raises(InputError, match="at least 32 pixels"):
        preprocess_image(Image.new("RGB", (10, 10)), VILT)
    with pytest.raises(InputError, match="at least 32 pixels"):
        preprocess_image(Image.new("RGB", (1000, 5)), VILT)
    assert preprocess_image(Image.new("RGB", (32, 32)), VILT).shape == (3, 384, 384)


def test_too_elongated_image_is_refused():
    with pytest.raises(InputError, match="too elongated"):
        preprocess_image(Image.new("RGB", (4000, 40)), VILT)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((40, 40, 3), np.float32), np.zeros((40, 40, 2), np.uint8), 42],
    ids=["float", "two-channel", "int"],
)
def test_unsupported_sources(bad):
    with pytest.raises(InputError):
        load_image(bad)


def test_explicit_size():
    pixels = preprocess_image(Image.new("RGB", (100, 50)), VILT, size=(384, 384))
    assert pixels.shape == (3, 384, 384)


def test_preprocess_batch():
    same = [Image.new("RGB", (640, 480), c) for c in ("red", "blue")]
    assert preprocess_batch(same, VILT).shape == (2, 3, 384, 512)
    with pytest.raises(InputError, match="different sizes"):
        preprocess_batch([*same, Image.new("RGB", (480, 640))], VILT)
