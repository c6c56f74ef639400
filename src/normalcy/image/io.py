"""Reading images and defect masks from disk.

All readers go through Pillow and return plain numpy arrays:

* `read_image` -> ``(H, W, 3)`` uint8 RGB, whatever the file's mode was;
* `read_mask` -> ``(H, W)`` bool, True where the mask is nonzero (a defect).

Shapes are always ``(height, width)`` in numpy order, never Pillow's ``(width, height)``.

Safety: the pixel count is checked against an explicit limit from the file header *before*
any pixel data is decoded (`Image.open` only parses the header). Pillow's own
decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) still applies on top of ours: its
error is turned into a `DataError`, and its warning is silenced because our limit is the one
that decides. `Image.MAX_IMAGE_PIXELS` itself is left untouched, since it is process-wide.

Every failure to read a file (missing, not an image, corrupt, truncated, too large) raises
`normalcy.core.errors.DataError` with the path and the reason. Note that a truncated file is
only detected while `PIL.ImageFile.LOAD_TRUNCATED_IMAGES` is False (Pillow's default).
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from normalcy.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File suffixes treated as images, lower case; matching is case-insensitive."""

MAX_PIXELS = 40_000_000
"""Default limit on width * height of one image, checked before decoding."""

# What Pillow raises while parsing or decoding a broken file. UnidentifiedImageError is an
# OSError; truncated data is an OSError; broken PNG chunks are SyntaxError; bad EXIF or
# headers surface as ValueError, struct.error, IndexError, TypeError or EOFError.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    TypeError,
    Image.DecompressionBombError,
)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


class SkippedImageWarning(UserWarning):
    """`load_images(..., on_error="skip")` skipped a file it could not read."""


def is_image_file(path: str | Path) -> bool:
    """True when `path` has one of `IMAGE_SUFFIXES` (any case). Does not touch the disk."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _check_max_pixels(max_pixels: int) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise DataError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if max_pixels <= 0:
        raise DataError(f"max_pixels must be a positive integer, got {max_pixels}")


@contextlib.contextmanager
def _open_decoded(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """Open `path`, check its size from the header, decode it, apply EXIF orientation.

    Yields the decoded, upright image; the file is closed on exit. Any Pillow failure
    becomes a DataError naming `path`.
    """
    _check_max_pixels(max_pixels)
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check below is the authority on size; Pillow's warning
            # would otherwise fire for images we accept (max_pixels > MAX_IMAGE_PIXELS).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DataError(
            f"cannot read image {path}: larger than Pillow's decompression-bomb limit "
            f"(PIL.Image.MAX_IMAGE_PIXELS): {exc}"
        ) from exc
    except FileNotFoundError as exc:
        raise DataError(f"cannot read image {path}: file not found") from exc
    except UnidentifiedImageError as exc:
        raise DataError(f"cannot read image {path}: not a recognised image file") from exc
    except _DECODE_ERRORS as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc

    with img:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise DataError(f"cannot read image {path}: empty image ({width}x{height})")
        if width * height > max_pixels:
            raise DataError(
                f"image {path} is {width}x{height} = {width * height} pixels, over the "
                f"limit of max_pixels={max_pixels}; not decoded"
            )
        try:
            # Force the full decode here so corrupt or truncated data fails inside the try.
            img.load()
            upright = ImageOps.exif_transpose(img)
            upright.load()
        except Image.DecompressionBombError as exc:
            raise DataError(
                f"cannot read image {path}: larger than Pillow's decompression-bomb limit "
                f"(PIL.Image.MAX_IMAGE_PIXELS): {exc}"
            ) from exc
        except _DECODE_ERRORS as exc:
            raise DataError(f"cannot read image {path}: corrupt or truncated ({exc})") from exc
        yield upright


def _composite_over_black(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W, 3) uint8, colour * alpha / 255, rounded."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    # Integer rounding of rgb * alpha / 255.
    return ((rgb * alpha + 127) // 255).astype(np.uint8)


def _sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale the full 0..65535 range onto 0..255: round(v / 257), so 65535 -> 255."""
    v = values.astype(np.int64)
    return ((v + 128) // 257).astype(np.uint8)


def _min_max_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale the finite min..max of `values` onto 0..255; non-finite values become 0."""
    v = values.astype(np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros(v.shape, dtype=np.uint8)
    lo = float(v[finite].min())
    hi = float(v[finite].max())
    out = np.zeros(v.shape, dtype=np.float64)
    if hi > lo:
        out[finite] = (v[finite] - lo) / (hi - lo) * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def _to_rgb_uint8(img: Image.Image, path: Path) -> np.ndarray:
    mode = img.mode
    has_transparency = img.info.get("transparency") is not None

    if mode in _SIXTEEN_BIT_MODES:
        return _grey_to_rgb(_sixteen_bit_to_uint8(np.asarray(img)))
    if mode == "I":
        # 32-bit integer. Usually 16-bit data widened by Pillow (PNG/TIFF): scale by the
        # 16-bit range. Values outside 0..65535 mean genuinely wider data: use min..max.
        values = np.asarray(img)
        if values.size and values.min() >= 0 and values.max() <= 65535:
            return _grey_to_rgb(_sixteen_bit_to_uint8(values))
        return _grey_to_rgb(_min_max_to_uint8(values))
    if mode == "F":
        return _grey_to_rgb(_min_max_to_uint8(np.asarray(img)))
    if mode in _ALPHA_MODES or has_transparency:
        # Composite over black rather than dropping alpha: the colour stored under
        # transparent pixels is undefined (encoders leave anything there, often stale
        # content), so dropping alpha would feed the detector arbitrary pixels that differ
        # from image to image. A fixed black background makes transparent regions identical
        # in every image, so they are neither mistaken for defects nor able to hide one
        # behind whatever colour happened to be stored there.
        rgba = np.asarray(img.convert("RGBA"))
        return _composite_over_black(rgba)
    if mode == "RGB":
        return np.array(img, dtype=np.uint8)
    if mode == "L":
        return _grey_to_rgb(np.asarray(img, dtype=np.uint8))
    # '1', 'P' without transparency, 'CMYK', 'YCbCr', 'LAB', 'HSV', ...: Pillow's own
    # conversion is correct for these (CMYK uses Pillow's naive inversion, no ICC profile).
    try:
        return np.array(img.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read image {path}: unsupported mode {mode!r} ({exc})") from exc


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read one image as an ``(H, W, 3)`` uint8 RGB array, upright per its EXIF orientation.

    Conversions: greyscale ('L', '1') is repeated to RGB; images with alpha or a
    transparency key ('LA', 'RGBA', 'P' with transparency, ...) are composited over black;
    16-bit greyscale ('I;16', 'I;16B', 'I' within 0..65535) is scaled by the full 16-bit
    range (round(v / 257): 65535 -> 255, 25700 -> 100), never clipped; 16-bit RGB PNGs are
    reduced to 8 bits by Pillow (high byte); float ('F') images are scaled from their min..max;
    CMYK and other modes go through Pillow's RGB conversion.

    Raises DataError naming `path` when the file is missing, not an image, corrupt,
    truncated, or has more than `max_pixels` pixels (checked before decoding).
    """
    path = Path(path)
    with _open_decoded(path, max_pixels) as img:
        array = _to_rgb_uint8(img, path)
    return np.ascontiguousarray(array)


def decode_image(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, ...) -> H x W x 3 uint8, with `read_image`'s checks and
    conversions; `name` (a request field, a table cell) stands for the file in its errors."""
    with _open_decoded(_NamedBytes(data, name), max_pixels) as img:
        return np.ascontiguousarray(_to_rgb_uint8(img, name))


class _NamedBytes(io.BytesIO):
    """Bytes that Pillow reads as a file and errors name as `name`."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.label = name

    def __str__(self) -> str:
        return self.label


def _mask_nonzero(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("1", "L", "I", "F") or mode in _SIXTEEN_BIT_MODES:
        # Single channel: test the stored values themselves (before any 8-bit scaling).
        values = np.asarray(img)
        if mode == "F":
            values = np.nan_to_num(values, nan=0.0)
        return values != 0
    if mode in _ALPHA_MODES or mode == "P" or img.info.get("transparency") is not None:
        # Transparent pixels count as background (composited over black); for palette
        # masks the palette colour decides, not the index.
        rgb = _composite_over_black(np.asarray(img.convert("RGBA")))
        return rgb.any(axis=2)
    return np.asarray(img.convert("RGB")).any(axis=2)


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in shape)
    except (TypeError, ValueError) as exc:
        raise DataError(f"shape must be (height, width), got {shape!r}") from exc
    if height <= 0 or width <= 0:
        raise DataError(f"shape must be positive (height, width), got {shape!r}")
    return height, width


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a bool ``(H, W)`` mask to ``shape=(height, width)`` by nearest neighbour."""
    height, width = _check_shape(shape)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == (height, width):
        return mask.copy()
    small = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    resized = small.resize((width, height), Image.Resampling.NEAREST)  # Pillow: (w, h)
    return np.asarray(resized) != 0


def read_mask(
    path: str | Path,
    shape: tuple[int, int] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read a defect mask as an ``(H, W)`` bool array: True where the mask is nonzero.

    `shape` is ``(height, width)`` in numpy order (NOT Pillow's (width, height)); when given,
    the mask is resized to it by nearest neighbour, so it stays binary. The mask goes through
    the same EXIF orientation as `read_image`, so a mask and its image stay aligned.
    Transparent pixels count as background; for RGB or palette masks a pixel is a defect
    when any colour channel is nonzero. 16-bit masks are tested for nonzero before any
    scaling, so a value of 1 still counts.

    Raises DataError naming `path` on any read failure or when over `max_pixels`.
    """
    path = Path(path)
    with _open_decoded(path, max_pixels) as img:
        try:
            mask = _mask_nonzero(img)
        except (ValueError, OSError) as exc:
            raise DataError(f"cannot read mask {path}: unsupported mode {img.mode!r}") from exc
    mask = np.ascontiguousarray(mask, dtype=bool)
    if shape is not None:
        mask = resize_mask(mask, shape)
    return mask


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder` (not recursive), sorted by name.

    Only names ending in one of `IMAGE_SUFFIXES` (any case) count; hidden files (name
    starting with '.') and sub-folders are skipped. Raises DataError when `folder` is not an
    existing directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a directory")
    return sorted(
        entry
        for entry in folder.iterdir()
        if not entry.name.startswith(".") and is_image_file(entry) and entry.is_file()
    )


def load_images(
    paths: Iterable[str | Path],
    on_error: str = "raise",
    max_pixels: int = MAX_PIXELS,
) -> tuple[list[np.ndarray], list[Path]]:
    """Read every path with `read_image`; returns ``(images, paths_read)`` in input order.

    ``on_error="raise"``: the first unreadable file raises its DataError.
    ``on_error="skip"``: an unreadable file is left out of both returned lists and a
    `SkippedImageWarning` naming it and the reason is issued. The result may then be empty;
    callers that need images must check.
    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    _check_max_pixels(max_pixels)
    images: list[np.ndarray] = []
    read: list[Path] = []
    for raw in paths:
        path = Path(raw)
        try:
            image = read_image(path, max_pixels=max_pixels)
        except DataError as exc:
            if on_error == "raise":
                raise
            warnings.warn(f"skipping unreadable image {path}: {exc}", SkippedImageWarning,
                          stacklevel=2)
            continue
        images.append(image)
        read.append(path)
    return images, read
