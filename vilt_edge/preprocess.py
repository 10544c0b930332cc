"""Image loading and preprocessing with `ViltImageProcessor` semantics, without torch.

    from vilt_edge.bundle import load_bundle
    from vilt_edge.preprocess import preprocess_image

    pixels = preprocess_image("photo.jpg", load_bundle("bundle").preprocessing)  # (3, H, W)

The steps match transformers' `ViltImageProcessorPil` value for value: the shorter side goes to
`shortest_edge`, the longer side is capped at `longest_edge` (int(1333 / 800 * shortest_edge)),
both are rounded with `int(x + 0.5)` and floored to a multiple of `size_divisor`, the uint8 RGB
image is resized with PIL, rescaled in float64 then cast to float32, and normalized in float32.
There is no padding and no pixel mask: the exported model takes same-size images only, so
callers group images by size (see `vilt_edge.runtime.ViltRuntime.ask_batch`).

Bad input raises `InputError` with one line that names the image. Beyond what transformers does,
two kinds of image are refused rather than silently stretched:

- a side shorter than one patch (`size_divisor`): ViLT would upscale it to `shortest_edge`, and a
  sub-patch image holds nothing a patch embedding could see;
- a shape so elongated that a side floors to 0 pixels (e.g. 4000x40 -> 0x640).

EXIF orientation is not applied, as in transformers, so answers match the reference pipeline.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from vilt_edge.bundle import Preprocessing
from vilt_edge.errors import InputError, first_line

ImageSource = str | os.PathLike | Image.Image | np.ndarray

RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}

# Modes whose "A"/"a" band is transparency; LAB's "A" band is a colour axis, not alpha.
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")

# What PIL raises for unreadable, corrupt or truncated data across its decoders.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def _name(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return f"image ({source.mode} {source.width}x{source.height} PIL image)"
    if isinstance(source, np.ndarray):
        return f"image ({source.dtype} array of shape {tuple(source.shape)})"
    return f"image ({type(source).__name__})"


def _high_depth_to_uint8(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale to 8 bits by range, not by clipping.

    PIL's own convert clips at 255, which turns a typical 16-bit PNG almost white.
    """
    values = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    elif image.mode == "F" and np.nanmin(values) >= 0.0 and np.nanmax(values) <= 1.0:
        scaled = values * 255.0  # float images are usually normalized to [0, 1]
    elif image.mode == "I" and np.max(values) > 255:
        scaled = values / 257.0  # PIL opens 16-bit PNG/TIFF greyscale as "I"
    else:
        scaled = values
    scaled = np.nan_to_num(scaled, nan=0.0)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    if image.mode == "RGB":
        return image
    try:
        return _convert_to_rgb(image)
    except ValueError as error:  # PIL has no conversion path for a few exotic modes
        raise InputError(f"{name}: cannot convert {image.mode} image to RGB ({error})") from None


def _convert_to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return _high_depth_to_uint8(image).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # Transparent areas are usually background (icons, diagrams, cut-outs); white keeps them
        # background, where black would draw dark shapes. transformers' convert_to_rgb does the
        # same, so pipelines trained through it saw the same pixels.
        if image.mode == "La":
            image = image.convert("LA")
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    if array.dtype != np.uint8:
        raise InputError(f"{name}: numpy images must be uint8 (H, W, 3); got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise InputError(f"{name}: numpy images must have shape (H, W, 3); got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{name}: the image is empty")
    return Image.fromarray(np.ascontiguousarray(array))


def _open_file(path: Path) -> Image.Image:
    if not path.exists():
        raise InputError(f"{path}: image file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    return _decode(path, str(path))


def load_image_bytes(data: bytes, name: str = "image") -> Image.Image:
    """An encoded image (a file's bytes, e.g. an upload) -> a fully decoded RGB PIL image, with
    the checks `load_image` makes for files (corrupt, truncated, decompression bomb)."""
    if not data:
        raise InputError(f"{name}: the image is empty")
    return _decode(io.BytesIO(data), name)


def _decode(source: Path | io.BytesIO, name: str) -> Image.Image:
    try:
        # catch_warnings is process-global state; the cost is that a warning raised by another
        # thread during this window may also become an error there.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                # Image.open only reads the header; load() decodes every pixel, so a truncated
                # JPEG or PNG fails here and not halfway through inference.
                image.load()
                loaded = image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(
            f"{name}: image too large, refused as a possible decompression bomb "
            f"({first_line(error)})"
        ) from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{name}: not an image file (or a format PIL cannot read)") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except _DECODE_ERRORS as error:
        raise InputError(f"{name}: corrupt or truncated image ({first_line(error)})") from None
    return _to_rgb(loaded, name)


def load_image(source: ImageSource) -> Image.Image:
    """`load_image("photo.png")` -> a fully decoded RGB PIL image.

    `source` is a file path, a PIL image or a uint8 numpy array (H, W, 3), (H, W) or (H, W, 4).
    Every PIL mode becomes RGB; transparency is composited on white, 16-bit and float images are
    scaled to 8 bits by their range. Unreadable input raises `InputError` naming the image.
    """
    if isinstance(source, (str, os.PathLike)):
        return _open_file(Path(source))
    name = _name(source)
    if isinstance(source, np.ndarray):
        return _to_rgb(_from_array(source, name), name)
    if isinstance(source, Image.Image):
        try:
            source.load()  # an image opened lazily by the caller may still be truncated
        except _DECODE_ERRORS as error:
            raise InputError(f"{name}: corrupt or truncated image ({first_line(error)})") from None
        return _to_rgb(source, name)
    raise InputError(f"{name}: expected a file path, a PIL image or a uint8 numpy array")


def output_size(height: int, width: int, settings: Preprocessing) -> tuple[int, int]:
    """`output_size(480, 640, settings)` -> (384, 512): the (height, width) ViLT resizes to.

    Exactly transformers' `get_resize_output_image_size`; either side may come out 0 for very
    elongated images, which `preprocess_image` rejects.
    """
    shorter, longer = settings.shortest_edge, settings.longest_edge
    scale = shorter / min(height, width)
    if height < width:
        new_height, new_width = shorter, scale * width
    else:
        new_height, new_width = scale * height, shorter
    if max(new_height, new_width) > longer:
        scale = longer / max(new_height, new_width)
        new_height, new_width = scale * new_height, scale * new_width
    new_height, new_width = int(new_height + 0.5), int(new_width + 0.5)
    divisor = settings.size_divisor
    return new_height // divisor * divisor, new_width // divisor * divisor


def _check_size(image: Image.Image, name: str, settings: Preprocessing) -> tuple[int, int]:
    patch = settings.size_divisor
    if image.width < patch or image.height < patch:
        raise InputError(
            f"{name}: image is {image.width}x{image.height}; each side must be at least "
            f"{patch} pixels (one patch)"
        )
    height, width = output_size(image.height, image.width, settings)
    if height == 0 or width == 0:
        raise InputError(
            f"{name}: image is {image.width}x{image.height}, too elongated: it would resize to "
            f"{width}x{height} pixels"
        )
    return height, width


def preprocess_image(
    image: ImageSource, settings: Preprocessing, size: tuple[int, int] | None = None
) -> np.ndarray:
    """`preprocess_image("photo.jpg", bundle.preprocessing)` -> float32 (3, H, W) model input.

    `size=(height, width)` resizes to that size instead of ViLT's rule (the runtime uses it to
    bring the right image of an NLVR2 pair to the left one's size); the image must still pass the
    size checks on its own.
    """
    name = _name(image)
    rgb = load_image(image)
    height, width = _check_size(rgb, name, settings)
    if size is not None:
        height, width = size
    resized = rgb.resize((width, height), resample=RESAMPLE[settings.resample])
    # The order and dtypes follow transformers: rescale in float64, cast to float32, then
    # normalize in float32, so the result is bit-identical to ViltImageProcessorPil.
    pixels = (np.asarray(resized).astype(np.float64) * settings.rescale_factor).astype(np.float32)
    mean = np.asarray(settings.image_mean, dtype=np.float32)
    std = np.asarray(settings.image_std, dtype=np.float32)
    pixels = (pixels - mean) / std
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def preprocess_batch(images: list[ImageSource], settings: Preprocessing) -> np.ndarray:
    """`preprocess_batch([a, b], settings)` -> float32 (B, 3, H, W) for images of one output size.

    Images that preprocess to different sizes raise `InputError`; group them by size first
    (`ViltRuntime.ask_batch` does).
    """
    if not images:
        raise InputError("no images given")
    arrays = [preprocess_image(image, settings) for image in images]
    shapes = {array.shape[1:] for array in arrays}
    if len(shapes) > 1:
        sizes = ", ".join(f"{w}x{h}" for h, w in sorted(shapes))
        raise InputError(f"images preprocess to different sizes ({sizes}); batch them by size")
    return np.stack(arrays)
