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

Memory: an image of P pixels is decoded by Pillow into its own frame (1 to 4 bytes per
pixel by mode: 2 for 16-bit greyscale, 4 for RGB, 32-bit integer and float) and converted
into the 3P-byte result a strip of STRIP_PIXELS pixels at a time, so the conversion's
temporaries stay under WORKING_BYTES_PER_PIXEL x STRIP_PIXELS bytes (16 MiB) whatever the
image's size or mode: in all, at most 7P bytes plus 16 MiB (about 280 MiB at the 40-megapixel
limit; a 16-bit 6000 x 6000 PNG takes 69 MiB in Pillow plus the 103 MiB result).

Every failure to read a file (missing, not an image, corrupt, truncated, too large) raises
`normalcy.core.errors.DataError` with the path and the reason. Note that a truncated file is
only detected while `PIL.ImageFile.LOAD_TRUNCATED_IMAGES` is False (Pillow's default).
"""

from __future__ import annotations

import contextlib
import functools
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

STRIP_PIXELS = 1 << 19
"""Pixels converted to 8-bit RGB at a time (at least one row): bounds decoding's working memory."""

WORKING_BYTES_PER_PIXEL = 32
"""Upper bound on the conversion's temporaries per pixel of a strip, in any mode (measured:
at most 22, for RGBA)."""

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
            # In place: a transposed copy would hold a second decoded frame.
            ImageOps.exif_transpose(img, in_place=True)
        except Image.DecompressionBombError as exc:
            raise DataError(
                f"cannot read image {path}: larger than Pillow's decompression-bomb limit "
                f"(PIL.Image.MAX_IMAGE_PIXELS): {exc}"
            ) from exc
        except _DECODE_ERRORS as exc:
            raise DataError(f"cannot read image {path}: corrupt or truncated ({exc})") from exc
        yield img


def _composite_over_black(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W, 3) uint8, colour * alpha / 255, rounded."""
    rgb = rgba[..., :3].astype(np.uint32)
    # Integer rounding of rgb * alpha / 255, in place.
    rgb *= rgba[..., 3:4]
    rgb += 127
    rgb //= 255
    return rgb.astype(np.uint8)


def _sixteen_bit_to_uint8(strip: Image.Image) -> np.ndarray:
    """Scale the full 0..65535 range onto 0..255: round(v / 257), so 65535 -> 255. uint32
    arithmetic in place: (v + 128) // 257 never exceeds 65663."""
    v = np.asarray(strip).astype(np.uint32)
    v += 128
    v //= 257
    return v.astype(np.uint8)


def _value_range(img: Image.Image) -> tuple[float, float] | None:
    """The finite min and max of a single-channel image, read a strip at a time; None if no
    value is finite."""
    lo = hi = None
    for _, _, strip in _strips(img):
        v = np.asarray(strip)
        finite = v[np.isfinite(v)]
        if finite.size:
            lo = float(finite.min()) if lo is None else min(lo, float(finite.min()))
            hi = float(finite.max()) if hi is None else max(hi, float(finite.max()))
    return None if lo is None else (lo, hi)


def _min_max_to_uint8(strip: Image.Image, value_range: tuple[float, float] | None) -> np.ndarray:
    """Scale the image's finite min..max (`value_range`) onto 0..255; non-finite values become 0."""
    v = np.asarray(strip, dtype=np.float64)
    if value_range is None or value_range[1] <= value_range[0]:
        return np.zeros(v.shape, dtype=np.uint8)
    lo, hi = value_range
    with np.errstate(invalid="ignore"):
        scaled = (v - lo) / (hi - lo) * 255.0
    scaled[~np.isfinite(v)] = 0.0
    del v
    np.rint(scaled, out=scaled)
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)


def _strips(img: Image.Image) -> Iterator[tuple[int, int, Image.Image]]:
    """(top, bottom, rows top..bottom as an image) of about STRIP_PIXELS pixels each (at least
    one row)."""
    width, height = img.size
    rows = max(1, STRIP_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        yield top, bottom, img.crop((0, top, width, bottom))


def _to_rgb_uint8(img: Image.Image, path) -> np.ndarray:
    """The decoded image as (H, W, 3) uint8, converted a strip at a time into the result, so
    no conversion holds more than one strip's temporaries (see `read_image` for the bound)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        convert = _sixteen_bit_to_uint8
    elif mode in ("I", "F"):
        # 'I' is 32-bit integer, usually 16-bit data widened by Pillow (PNG/TIFF): scale it by
        # the 16-bit range. Values outside 0..65535 mean genuinely wider data: use min..max,
        # as for float ('F') images.
        value_range = _value_range(img)
        if mode == "I" and (value_range is None or (value_range[0] >= 0 and value_range[1] <= 65535)):
            convert = _sixteen_bit_to_uint8
        else:
            convert = functools.partial(_min_max_to_uint8, value_range=value_range)
    elif mode in _ALPHA_MODES or img.info.get("transparency") is not None:
        # Composite over black rather than dropping alpha: the colour stored under
        # transparent pixels is undefined (encoders leave anything there, often stale
        # content), so dropping alpha would feed the detector arbitrary pixels that differ
        # from image to image. A fixed black background makes transparent regions identical
        # in every image, so they are neither mistaken for defects nor able to hide one
        # behind whatever colour happened to be stored there.
        def convert(strip):
            return _composite_over_black(np.asarray(strip.convert("RGBA")))
    elif mode in ("RGB", "L"):
        convert = np.asarray
    else:
        # '1', 'P' without transparency, 'CMYK', 'YCbCr', 'LAB', 'HSV', ...: Pillow's own
        # conversion is correct for these (CMYK uses Pillow's naive inversion, no ICC profile).
        def convert(strip):
            try:
                return np.asarray(strip.convert("RGB"))
            except (ValueError, OSError) as exc:
                raise DataError(f"cannot read image {path}: unsupported mode {mode!r} ({exc})") from exc
    width, height = img.size
    out = np.empty((height, width, 3), dtype=np.uint8)
    for top, bottom, strip in _strips(img):
        values = convert(strip)
        out[top:bottom] = values if values.ndim == 3 else values[..., None]
    return out


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read one image as an ``(H, W, 3)`` uint8 RGB array, upright per its EXIF orientation.

    Conversions: greyscale ('L', '1') is repeated to RGB; images with alpha or a
    transparency key ('LA', 'RGBA', 'P' with transparency, ...) are composited over black;
    16-bit greyscale ('I;16', 'I;16B', 'I' within 0..65535) is scaled by the full 16-bit
    range (round(v / 257): 65535 -> 255, 25700 -> 100), never clipped; 16-bit RGB PNGs are
    reduced to 8 bits by Pillow (high byte); float ('F') images are scaled from their min..max;
    CMYK and other modes go through Pillow's RGB conversion. Memory: see the module's notes.

    Raises DataError naming `path` when the file is missing, not an image, corrupt,
    truncated, or has more than `max_pixels` pixels (checked before decoding).
    """
    path = Path(path)
    with _open_decoded(path, max_pixels) as img:
        return _to_rgb_uint8(img, path)


def decode_image(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, ...) -> H x W x 3 uint8, with `read_image`'s checks and
    conversions; `name` (a request field, a table cell) stands for the file in its errors."""
    with _open_decoded(_NamedBytes(data, name), max_pixels) as img:
        return _to_rgb_uint8(img, name)


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
