"""Tests for normalcy.image.io: every file is generated in tmp_path."""

from __future__ import annotations

import io
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from normalcy.core.errors import DataError
from normalcy.image.io import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    WORKING_BYTES_PER_PIXEL,
    SkippedImageWarning,
    decode_image,
    list_images,
    load_images,
    read_image,
    read_mask,
    resize_mask,
)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG built by hand, for what Pillow cannot write (16-bit RGB, lying headers)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def _noise_png(path: Path, width: int = 64, height: int = 64) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


# --- conversions -----------------------------------------------------------------------


def test_rgb_png_round_trips_exactly(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(data).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, data)


def test_greyscale_l_becomes_rgb(tmp_path):
    grey = np.array([[0, 10], [128, 255]], dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (2, 2, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], grey)


def test_bilevel_1_becomes_rgb(tmp_path):
    img = Image.new("1", (3, 1), 0)
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "b.bmp")
    out = read_image(tmp_path / "b.bmp")
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 255, 0])


def test_rgba_is_composited_over_black(tmp_path):
    rgba = np.array(
        [[[200, 100, 50, 0], [200, 100, 50, 255], [200, 100, 50, 128]]], dtype=np.uint8
    )
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])  # transparent -> black
    np.testing.assert_array_equal(out[0, 1], [200, 100, 50])  # opaque unchanged
    np.testing.assert_array_equal(out[0, 2], [100, 50, 25])  # round(v * 128 / 255)


def test_la_is_composited_over_black(tmp_path):
    la = np.array([[[180, 0], [180, 255]]], dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [180, 180, 180]])


def test_palette_with_transparency_is_composited_over_black(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 255, 255, 10, 200, 30] + [0] * (254 * 3))
    img.putpixel((0, 0), 0)  # white but transparent
    img.putpixel((1, 0), 1)
    img.save(tmp_path / "p.png", transparency=0)
    with Image.open(tmp_path / "p.png") as check:
        assert check.mode == "P" and check.info.get("transparency") == 0
    out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [10, 200, 30]])


def test_palette_without_transparency_uses_palette_colours(tmp_path):
    img = Image.new("P", (1, 1))
    img.putpalette([1, 2, 3] + [0] * (255 * 3))
    img.save(tmp_path / "p.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "p.bmp")[0, 0], [1, 2, 3])


def test_16bit_greyscale_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 65535, 257 * 100, 257 * 100 + 128, 257 * 100 + 129]],
                      dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode.startswith("I")
    out = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[0, :, 0], [0, 255, 100, 100, 101])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_every_16bit_value_becomes_its_rounded_quotient_by_257(tmp_path):
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(values).save(tmp_path / "all16.png")
    out = read_image(tmp_path / "all16.png")[..., 0]
    np.testing.assert_array_equal(out, np.rint(values / 257.0).astype(np.uint8))


def _wide_range_images(h: int, w: int) -> dict:
    """Images in the modes whose conversion needs arithmetic, each as (encoded bytes, the
    expected RGB result computed on the whole image at once)."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:h, 0:w]
    grey16 = ((xx * 31 + yy * 7) % 65536).astype(np.uint16)
    wide = rng.integers(-5, 70_000, (h, w), dtype=np.int32)
    floats = rng.normal(size=(h, w)).astype(np.float32)
    floats[0, :3] = [np.nan, np.inf, -np.inf]
    rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)

    def encoded(img: Image.Image, fmt: str) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        return buf.getvalue()

    def grey(values):
        return np.repeat(values.astype(np.uint8)[..., None], 3, axis=2)

    finite = floats[np.isfinite(floats)]
    with np.errstate(invalid="ignore"):
        scaled = (floats.astype(np.float64) - finite.min()) / (finite.max() - finite.min()) * 255
    scaled[~np.isfinite(floats)] = 0
    return {
        "16-bit PNG": (encoded(Image.fromarray(grey16), "PNG"), grey((grey16.astype(np.int64) + 128) // 257)),
        "32-bit TIFF": (encoded(Image.fromarray(wide), "TIFF"),
                        grey(np.rint((wide - wide.min()) / (wide.max() - wide.min()) * 255))),
        "float TIFF": (encoded(Image.fromarray(floats, mode="F"), "TIFF"), grey(np.clip(np.rint(scaled), 0, 255))),
        "RGBA PNG": (encoded(Image.fromarray(rgba), "PNG"),
                     ((rgba[..., :3].astype(np.int64) * rgba[..., 3:] + 127) // 255).astype(np.uint8)),
    }


@pytest.mark.parametrize("mode", ["16-bit PNG", "32-bit TIFF", "float TIFF", "RGBA PNG"])
def test_decoding_stays_within_its_memory_bound(mode, monkeypatch):
    # Issue 12 item 6: a 16-bit 6000 x 6000 PNG took 790 MiB more memory to decode, in int64
    # temporaries of the whole image (16 to 41 bytes a pixel beyond the result, by mode; numpy's
    # allocations are what tracemalloc sees, Pillow's own are not). The bound: the 3-byte-per-pixel
    # result plus one strip's working set, whatever the image's size; strips of 2^14 pixels
    # here keep the test small while the image still spans four of them.
    monkeypatch.setattr("normalcy.image.io.STRIP_PIXELS", 1 << 14)
    data, expected = _wide_range_images(256, 256)[mode]
    tracemalloc.start()
    try:
        out = decode_image(data, mode)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, expected)  # strip by strip, the same as all at once
    assert out.shape[0] * out.shape[1] == 4 * (1 << 14)
    assert peak <= out.nbytes + WORKING_BYTES_PER_PIXEL * (1 << 14), f"{peak / 2**10:.0f} KiB"


def test_32bit_integer_tiff_in_16bit_range_is_scaled_by_16bit_range(tmp_path):
    values = np.array([[0, 65535, 25700]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "i.tif")
    with Image.open(tmp_path / "i.tif") as check:
        assert check.mode == "I"
    np.testing.assert_array_equal(read_image(tmp_path / "i.tif")[0, :, 1], [0, 255, 100])


def test_16bit_rgb_png_is_reduced_by_full_range(tmp_path):
    pixels = [(65535, 25700, 0), (0, 65535, 257)]
    row = b"\x00" + b"".join(struct.pack(">HHH", *p) for p in pixels)
    (tmp_path / "rgb16.png").write_bytes(_raw_png(2, 1, 16, 2, row))
    out = read_image(tmp_path / "rgb16.png")
    np.testing.assert_array_equal(out[0], [[255, 100, 0], [0, 255, 1]])


def test_float_image_is_scaled_min_to_max(tmp_path):
    values = np.array([[-1.0, 0.0, 3.0]], dtype=np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[0, :, 0], [0, 64, 255])


def test_constant_float_image_is_black(tmp_path):
    Image.fromarray(np.full((2, 2), 7.5, dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    assert not read_image(tmp_path / "f.tif").any()


def test_cmyk_becomes_rgb(tmp_path):
    Image.new("CMYK", (2, 2), (0, 255, 0, 0)).save(tmp_path / "c.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "c.tif")[1, 1], [255, 0, 255])


def test_exif_orientation_is_applied(tmp_path):
    # 40 wide, 20 high: left half red, right half blue.
    data = np.zeros((20, 40, 3), dtype=np.uint8)
    data[:, :20] = [255, 0, 0]
    data[:, 20:] = [0, 0, 255]
    img = Image.fromarray(data)
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "rot.jpg")
    assert out.shape == (40, 20, 3)
    # After a clockwise quarter turn the left (red) half is on top.
    top, bottom = out[5, 10].astype(int), out[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_uppercase_suffix_and_webp_are_read(tmp_path):
    Image.new("RGB", (3, 2), (9, 8, 7)).save(tmp_path / "UP.PNG")
    Image.new("RGB", (3, 2), (9, 8, 7)).save(tmp_path / "w.webp", lossless=True)
    assert read_image(tmp_path / "UP.PNG").shape == (2, 3, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "w.webp")[0, 0], [9, 8, 7])


# --- failures --------------------------------------------------------------------------


def test_truncated_png_raises_data_error_naming_file(tmp_path):
    path = _noise_png(tmp_path / "cut.png")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_decoded_bytes_equal_the_file_and_errors_name_the_given_name(tmp_path):
    path = _noise_png(tmp_path / "a.png")
    data = path.read_bytes()
    np.testing.assert_array_equal(decode_image(data, "cell 3"), read_image(path))
    with pytest.raises(DataError, match="cell 3"):
        decode_image(data[: len(data) // 2], "cell 3")
    with pytest.raises(DataError, match=r"cell 4 is 64x64 .*max_pixels=100"):
        decode_image(data, "cell 4", max_pixels=100)


def test_non_image_with_png_suffix_raises_data_error(tmp_path):
    path = tmp_path / "fake.png"
    path.write_bytes(b"this is not an image at all")
    with pytest.raises(DataError, match="fake.png"):
        read_image(path)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_size_limit_is_checked_before_decoding(tmp_path):
    # The pixel data is truncated: if the reader decoded before checking the size it would
    # report corruption; it must report the size limit instead.
    path = _noise_png(tmp_path / "big.png", 64, 64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        read_image(path, max_pixels=64 * 64 - 1)
    message = str(info.value)
    assert str(path) in message and "max_pixels=4095" in message
    assert "truncated" not in message


def test_size_limit_does_not_decode(tmp_path, monkeypatch):
    path = _noise_png(tmp_path / "big.png", 10, 10)

    def no_decode(self, *args, **kwargs):  # pragma: no cover - must not run
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(Image.Image, "load", no_decode)
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(DataError, match="over the limit"):
        read_image(path, max_pixels=99)


def test_exactly_max_pixels_is_allowed(tmp_path):
    path = _noise_png(tmp_path / "ok.png", 10, 10)
    assert read_image(path, max_pixels=100).shape == (10, 10, 3)


def test_default_limit_rejects_header_over_it_without_pillow_warning(tmp_path):
    # 10000 x 10000 = 1e8 pixels: above MAX_PIXELS and above Pillow's warning threshold.
    path = tmp_path / "huge.png"
    path.write_bytes(_raw_png(10_000, 10_000, 8, 0, b"\x00"))
    assert 10_000 * 10_000 > MAX_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked DecompressionBombWarning would fail here
        with pytest.raises(DataError, match="over the limit"):
            read_image(path)


def test_pillow_decompression_bomb_error_becomes_data_error(tmp_path):
    # 100000 x 100000 is over twice Pillow's MAX_IMAGE_PIXELS, so Image.open itself raises;
    # even with our own limit lifted, the caller must get a DataError, not a crash.
    path = tmp_path / "bomb.png"
    path.write_bytes(_raw_png(100_000, 100_000, 8, 0, b"\x00"))
    with pytest.raises(DataError) as info:
        read_image(path, max_pixels=10**11)
    assert str(path) in str(info.value) and "decompression-bomb" in str(info.value)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, None])
def test_invalid_max_pixels_rejected(tmp_path, bad):
    path = _noise_png(tmp_path / "a.png", 2, 2)
    with pytest.raises(DataError, match="max_pixels"):
        read_image(path, max_pixels=bad)


# --- masks -----------------------------------------------------------------------------


def test_read_mask_nonzero_is_defect(tmp_path):
    mask = np.array([[0, 255, 0], [0, 0, 1]], dtype=np.uint8)
    Image.fromarray(mask, mode="L").save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == bool and out.shape == (2, 3)
    np.testing.assert_array_equal(out, mask != 0)


def test_read_mask_16bit_small_values_count(tmp_path):
    Image.fromarray(np.array([[0, 1, 300]], dtype=np.uint16)).save(tmp_path / "m16.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m16.png")[0], [False, True, True])


def test_read_mask_rgb_any_channel(tmp_path):
    rgb = np.zeros((1, 3, 3), dtype=np.uint8)
    rgb[0, 1, 2] = 40
    Image.fromarray(rgb).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png")[0], [False, True, False])


def test_read_mask_resize_uses_height_width_order_and_stays_binary(tmp_path):
    mask = np.zeros((4, 8), dtype=np.uint8)  # 4 high, 8 wide
    mask[:, 4:] = 255  # right half
    Image.fromarray(mask, mode="L").save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png", shape=(2, 16))
    assert out.shape == (2, 16) and out.dtype == bool
    assert not out[:, :8].any() and out[:, 8:].all()


def test_resize_mask_rejects_bad_shape():
    with pytest.raises(DataError, match="shape"):
        resize_mask(np.zeros((2, 2), dtype=bool), (0, 3))


def test_read_mask_corrupt_raises_data_error(tmp_path):
    (tmp_path / "m.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError, match="m.png"):
        read_mask(tmp_path / "m.png")


# --- listing and batch loading ---------------------------------------------------------


def test_image_suffixes():
    assert set(IMAGE_SUFFIXES) == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def test_list_images_sorted_filtered_non_recursive(tmp_path):
    for name in ["b.png", "A.JPG", "c.Tiff", "d.webp", "e.bmp", "f.jpeg", "g.tif"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / "noext").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.png").write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()  # a folder with an image-like name
    names = [p.name for p in list_images(tmp_path)]
    assert names == sorted(["b.png", "A.JPG", "c.Tiff", "d.webp", "e.bmp", "f.jpeg", "g.tif"])


def test_list_images_missing_folder(tmp_path):
    with pytest.raises(DataError, match="missing"):
        list_images(tmp_path / "missing")


def test_load_images_skip_warns_and_skips(tmp_path):
    good1 = _noise_png(tmp_path / "1.png", 4, 4)
    bad = tmp_path / "2.png"
    bad.write_bytes(b"garbage")
    good2 = _noise_png(tmp_path / "3.png", 5, 5)
    with pytest.warns(SkippedImageWarning, match="2.png"):
        images, paths = load_images([good1, bad, good2], on_error="skip")
    assert paths == [good1, good2]
    assert [im.shape for im in images] == [(4, 4, 3), (5, 5, 3)]


def test_load_images_skip_applies_size_limit(tmp_path):
    small = _noise_png(tmp_path / "s.png", 2, 2)
    big = _noise_png(tmp_path / "b.png", 20, 20)
    with pytest.warns(SkippedImageWarning, match="b.png"):
        _, paths = load_images([small, big], on_error="skip", max_pixels=10)
    assert paths == [small]


def test_load_images_raise_stops_at_first_bad(tmp_path):
    good = _noise_png(tmp_path / "1.png", 4, 4)
    bad = tmp_path / "2.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="2.png"):
        load_images([good, bad])


def test_load_images_rejects_unknown_on_error(tmp_path):
    with pytest.raises(DataError, match="on_error"):
        load_images([], on_error="ignore")
