"""Safe, fast decoding on real files of every awkward kind, generated here."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, features

from clipfind.errors import ImageDecodeError
from clipfind.imageio import DRAFT_OVERSAMPLE, decode_image, load_image


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: shows any rotation or flip."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2] = (255, 0, 0)
    arr[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def _exif(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    if orientation:
        exif[274] = orientation
    exif[271] = "Canon"
    exif[272] = "Canon EOS 5D"
    exif.get_ifd(0x8769)[36867] = "2019:07:04 12:34:56"
    return exif.tobytes()


def _is_red(px: tuple[int, ...]) -> bool:
    return px[0] > 200 and px[2] < 60


def _is_blue(px: tuple[int, ...]) -> bool:
    return px[2] > 200 and px[0] < 60


def _png(width: int, height: int, depth: int, colour: int, rows: bytes) -> bytes:
    """A hand-written PNG (Pillow cannot write 16-bit RGB, nor lie about its size)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


# -- orientation, EXIF ------------------------------------------------------------------
@pytest.mark.parametrize(("orientation", "top", "bottom"), [(6, _is_red, _is_blue),
                                                            (8, _is_blue, _is_red)])
def test_exif_rotation_applied_to_size_and_pixels(tmp_path, orientation, top, bottom):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_encode(_halves(60, 40), "JPEG", exif=_exif(orientation), quality=95))
    decoded = load_image(path)
    assert decoded.image.size == (40, 60)  # stored landscape, shown portrait
    assert (decoded.info.width, decoded.info.height) == (40, 60)
    assert top(decoded.image.getpixel((20, 5)))
    assert bottom(decoded.image.getpixel((20, 55)))


def test_exif_capture_time_and_camera():
    decoded = decode_image(_encode(_halves(16, 16), "JPEG", exif=_exif()))
    assert decoded.info.taken_at == datetime(2019, 7, 4, 12, 34, 56)
    assert decoded.info.camera == "Canon EOS 5D"  # the make is not repeated
    plain = decode_image(_encode(_halves(16, 16), "JPEG"))
    assert plain.info.taken_at is None and plain.info.camera is None


# -- JPEG draft mode ------------------------------------------------------------------------
def test_draft_mode_decodes_a_large_jpeg_at_a_fraction_of_its_size():
    data = _encode(_halves(4000, 3000), "JPEG", exif=_exif(6))
    decoded = decode_image(data, target_size=224)
    w, h = decoded.image.size
    assert min(w, h) >= 224 * DRAFT_OVERSAMPLE  # enough pixels for the model's resize
    assert (w, h) == (375, 500)  # 1/8, rotated upright
    assert (decoded.info.width, decoded.info.height) == (3000, 4000)  # the file's real size
    assert _is_red(decoded.image.getpixel((w // 2, 10)))
    full = decode_image(data)
    assert full.image.size == (3000, 4000)


@pytest.mark.parametrize(("short", "scale"), [(2688, 8), (2680, 4), (1344, 4), (1336, 2),
                                              (672, 2), (664, 1)])
def test_draft_scale_is_the_smallest_that_keeps_the_oversampled_input_size(short, scale):
    # 224 * 1.5 = 336 px must survive on the short side: 2688 / 8 = 336 may go to 1/8,
    # 2680 (335 at 1/8) only to 1/4. Sides divisible by 8, so the scale is exact.
    data = _encode(Image.new("RGB", (short * 4 // 3 // 8 * 8, short), (0, 128, 0)), "JPEG")
    decoded = decode_image(data, target_size=224)
    assert decoded.image.size[1] == short // scale
    assert decoded.info.height == short


def test_multi_picture_jpegs_draft_too():
    first, second = Image.new("RGB", (2000, 1500), (255, 0, 0)), Image.new("RGB", (2000, 1500))
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[second])
    decoded = decode_image(buf.getvalue(), target_size=224)
    assert decoded.info.format == "MPO" and decoded.image.size == (500, 375)  # 1/4
    assert _is_red(decoded.image.getpixel((5, 5)))  # the first picture


def test_draft_keeps_exact_proportions_when_the_scale_does_not_divide_the_size():
    # 333 rows: a 1/4 draft decodes 84 rows that stand for 336; an edge at row 300 must
    # stay at 300/333 of the height, not drift to 300/336.
    arr = np.zeros((333, 1001, 3), np.uint8)
    arr[300:] = 255
    data = _encode(Image.fromarray(arr), "JPEG", quality=95)
    for target, drafted in ((32, True), (40, True), (64, False)):
        img = decode_image(data, target_size=target).image
        assert (img.size[0] < 1001) == drafted  # 64: a 1/2 draft would cost exactness
        column = np.asarray(img.convert("L"), np.float32)[:, img.size[0] // 2] / 255.0
        edge = float(column.sum())  # rows of white, fractional
        assert edge / img.size[1] == pytest.approx(33 / 333, abs=0.25 / img.size[1])
        assert img.size[0] / img.size[1] == pytest.approx(1001 / 333, rel=0.02)


# -- colour modes -------------------------------------------------------------------------
def test_palette_png_with_transparency_is_composited_on_white():
    im = Image.new("P", (10, 10), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((0, 0), 1)
    decoded = decode_image(_encode(im, "PNG", transparency=0))
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255)  # transparent red → white
    assert decoded.image.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(mode):
    colour = (0, 0, 0, 128) if mode == "RGBA" else (0, 128)
    decoded = decode_image(_encode(Image.new(mode, (8, 8), colour), "PNG"))
    assert decoded.image.mode == "RGB"
    assert all(abs(c - 127) <= 2 for c in decoded.image.getpixel((4, 4)))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_is_scaled_not_blown_to_white(fmt):
    ramp = np.linspace(0, 65535, 256 * 4).reshape(4, 256).astype(np.uint16)
    decoded = decode_image(_encode(Image.fromarray(ramp), fmt))
    grey = np.asarray(decoded.image)[..., 0].astype(int)
    assert grey[0, 0] == 0 and grey[-1, -1] == 255
    assert abs(int(np.median(grey)) - 128) <= 2
    dark = decode_image(_encode(Image.fromarray(np.full((4, 4), 200, np.uint16)), fmt))
    assert max(dark.image.getpixel((1, 1))) <= 2  # 200/65535 is nearly black


def test_16_bit_rgb_png():
    rows = np.zeros((4, 4, 3), np.uint16)
    rows[..., 0], rows[..., 2] = 40000, 10000
    data = _png(4, 4, 16, 2, b"".join(b"\x00" + r.astype(">u2").tobytes() for r in rows))
    r, g, b = decode_image(data).image.getpixel((1, 1))
    assert (abs(r - 156), g, abs(b - 39)) <= (1, 0, 1)


def test_float_tiff_and_cmyk_jpeg():
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    grey = np.asarray(decode_image(_encode(Image.fromarray(ramp), "TIFF")).image)[..., 0]
    assert grey[0, 0] == 0 and grey[-1, -1] == 255
    red = decode_image(_encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"))
    assert _is_red(red.image.getpixel((8, 8)))
    # Adobe CMYK JPEGs are stored inverted; a large one still drafts correctly
    big = decode_image(_encode(Image.new("CMYK", (1600, 1200), (0, 255, 255, 0)), "JPEG"), 64)
    assert big.image.mode == "RGB" and big.image.size[0] < 1600
    assert _is_red(big.image.getpixel((10, 10)))


def test_gif_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buf.getvalue()).image.getpixel((2, 2)) == (255, 0, 0)


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF", "AVIF", "HEIF"])
def test_other_formats(fmt, tmp_path):
    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF")
    if fmt == "HEIF":
        pytest.importorskip("pillow_heif")
    data = _encode(Image.new("RGB", (64, 48), (0, 0, 255)), fmt)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    decoded = load_image(path, target_size=32)
    assert decoded.image.size == (64, 48)
    assert _is_blue(decoded.image.getpixel((30, 20)))
    assert decoded.info.format in (fmt, "HEIF", "HEIC")


# -- bad input: a reason, never a crash -----------------------------------------------------
def test_bad_files_raise_decode_error_with_a_reason(tmp_path):
    good = _encode(Image.effect_noise((800, 600), 64).convert("RGB"), "JPEG")
    cases = {
        "empty.jpg": (b"", "empty file"),
        "notes.jpg": (b"shopping list: eggs, milk\n" * 20, "not an image"),
        "truncated.jpg": (good[: len(good) // 2], "truncated"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageDecodeError, match=reason) as err:
            load_image(tmp_path / name, target_size=224)
        assert name in str(err.value)


def test_pixel_cap_refuses_before_decoding():
    header_only = _png(20_000, 15_000, 8, 2, b"\x00" * 10)  # 300 MP declared, no pixels
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_image(header_only, 224, name="bomb.png")
    small = _encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageDecodeError, match="exceeds the 5,000-pixel cap"):
        decode_image(small, 224, max_pixels=5_000, name="big.png")
    assert decode_image(small, 224, max_pixels=10_000).image.size == (100, 100)


_SEEDS = {fmt: _encode(Image.effect_noise((48, 40), 80).convert("RGB"), fmt)
          for fmt in ("JPEG", "PNG", "TIFF", "GIF", "WEBP")}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(_SEEDS)),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                      max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_damaged_files_never_raise_anything_else(fmt, edits, cut):
    data = bytearray(_SEEDS[fmt])
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    try:
        decoded = decode_image(bytes(data), target_size=32)
    except ImageDecodeError:
        return
    assert decoded.image.mode == "RGB"
