"""Safe, fast image decoding shared by the indexer, the API and the zero-shot tools.

* EXIF orientation applied, so vectors and boxes match what a person sees;
* JPEG draft mode: the DCT decoder scales by 1/2, 1/4 or 1/8 while decoding, so a
  12 MP photo is decoded at a fraction of its size when the model needs 224 px;
* palette, alpha (composited on white), 16-bit, CMYK and float images become RGB;
* a pixel cap against decompression bombs, checked before any pixel is decoded;
* every failure is an :class:`ImageDecodeError` with a short reason.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

from clipfind.errors import FileChangedError, ImageDecodeError, NotFoundError

try:  # HEIC/HEIF through a well-kept plugin; AVIF is native in Pillow >= 11.3
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pass

# Corrupt-metadata and size warnings from Pillow's plugins would flood a run's output;
# what matters (the image failed, or was too big) is reported as a skip reason instead.
# A module-wide filter, because ``warnings.catch_warnings`` is not thread-safe and
# decoding runs in threads.
warnings.filterwarnings("ignore", module=r"PIL(\..*)?$")
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
     ".heic", ".heif", ".avif"}
)
DEFAULT_MAX_PIXELS = 150_000_000
# Draft decoding keeps at least this many times the model's input size on the short
# side, so the final bicubic resize still averages more than one source pixel per output.
# 1.5 lets a 4000x3000 photo decode at 1/8 (500x375) for a 224 px model: ~20 % less
# CPU than 1/4, and vectors within cosine 0.99994 of a full-resolution decode even on a
# mosaic of detailed photos (2 allowed only 1/4 there).
DRAFT_OVERSAMPLE = 1.5

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_DATETIME = 306
_MAKE = 271
_MODEL = 272
_ORIENTATION = 274
# EXIF orientation → the transpose that shows the picture upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class ImageInfo:
    """What the catalog keeps about an image besides its vector."""

    width: int
    height: int
    taken_at: datetime | None = None
    camera: str | None = None
    format: str | None = None


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image
    info: ImageInfo


def content_hash(data: bytes) -> str:
    """Hash of a file's bytes: finds moved and duplicate files without decoding them."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {path}: {exc.strerror or exc}") from exc


def open_indexed(path: Path, size: int, mtime_ns: int, name: str) -> io.BufferedReader:
    """Open an indexed file only if it is still the file the catalog describes: a
    regular file of the stored ``size`` and ``mtime_ns`` (what the indexer compares, so a
    file it would call unchanged opens). A file replaced since, or a link swapped in that
    leads elsewhere (``ln -sf /etc/passwd photo.jpg``), is :class:`FileChangedError`.
    The check is made on the opened descriptor, so what is checked is what is read;
    ``O_NONBLOCK`` keeps a FIFO put in the file's place from hanging the reader."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise NotFoundError(f"{name}'s file is gone from disk; re-index its folder") from exc
    except OSError as exc:
        raise FileChangedError(f"{name}'s file cannot be opened ({exc.strerror or exc}); "
                               "re-index its folder") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size or st.st_mtime_ns != mtime_ns:
            raise FileChangedError(f"{name}'s file has changed since it was indexed "
                                   "(it is not served until its folder is indexed again)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_indexed(path: Path, size: int, mtime_ns: int, name: str) -> bytes:
    """The bytes of an indexed file, checked as :func:`open_indexed` does."""
    with open_indexed(path, size, mtime_ns, name) as f:
        try:
            return f.read()
        except OSError as exc:
            raise FileChangedError(f"{name}'s file cannot be read ({exc.strerror or exc})") from exc


def decode_image(
    data: bytes,
    target_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "image",
) -> DecodedImage:
    """Decode bytes into an oriented RGB image.

    ``target_size`` (the model's input side) lets JPEGs decode in draft mode; ``None``
    decodes at full resolution (thumbnails of details, detection crops).
    """
    if not data:
        raise ImageDecodeError(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _decode_open(im, target_size, max_pixels, name)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"{name}: not an image or an unsupported format") from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{name}: too many pixels (decompression bomb?): {exc}") from exc
    except MemoryError as exc:
        raise ImageDecodeError(f"{name}: not enough memory to decode this image") from exc
    except Exception as exc:  # plugins raise OSError, ValueError, struct.error, ... on bad data
        raise ImageDecodeError(f"{name}: corrupt or truncated image ({exc})") from exc


def load_image(path: Path, target_size: int | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    return decode_image(read_bytes(path), target_size, max_pixels, name=str(path))


def _decode_open(im: Image.Image, target_size: int | None, max_pixels: int,
                 name: str) -> DecodedImage:
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{name}: image has no pixels")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{name}: {width}x{height} exceeds the {max_pixels:,}-pixel cap "
            "(raise --max-pixels if this image is genuine)"
        )
    info = _read_info(im)
    try:
        orientation = int(im.getexif().get(_ORIENTATION) or 1)
    except Exception:  # broken EXIF must never cost the image
        orientation = 1
    # MPO (phones' and cameras' multi-picture JPEGs) is a JPEG too, and drafts the same way
    box = _draft(im, target_size) if target_size and isinstance(im, JpegImageFile) else None
    im.load()
    if box is not None:
        im = im.resize((max(1, round(box[2])), max(1, round(box[3]))), Image.Resampling.BICUBIC,
                       box=box)
    if orientation in _TRANSPOSE:
        im = im.transpose(_TRANSPOSE[orientation])
    rgb = to_rgb(im)
    w, h = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return DecodedImage(rgb, ImageInfo(w, h, info.taken_at, info.camera, info.format))


def _draft(im: Image.Image, target_size: int) -> tuple[float, float, float, float] | None:
    """Ask the JPEG decoder to scale by 1/8, 1/4 or 1/2 while decoding, keeping the short
    side >= ``DRAFT_OVERSAMPLE * target_size``.

    The decoder rounds a scaled size up, so when the scale does not divide the image's
    size, the last row/column stands for a partial block and the picture is stretched
    by up to ``scale - 1`` source pixels; on small targets that moved vectors visibly
    (cosine 0.990 against the full decode on a 32 px model). So a scale that divides
    both sides exactly is preferred when it costs at most one halving; otherwise the
    returned box (the real picture inside the decoded one) is resampled to exact
    proportions after loading.
    """
    width, height = im.size
    want = target_size * DRAFT_OVERSAMPLE
    best = next((s for s in (8, 4, 2) if min(width, height) // s >= want), 1)
    exact = next(s for s in (8, 4, 2, 1) if s <= best and width % s == 0 and height % s == 0)
    scale = exact if best // exact <= 2 else best
    if scale == 1:
        return None
    result = im.draft("RGB", (width // scale, height // scale))
    if result is None or (width % scale == 0 and height % scale == 0):
        return None
    return result[1]


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB the way a viewer would show it."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # float32 scaled in place: a 40 Mpx 16-bit scan costs 160 MB here rather than
        # five float64 temporaries (1.3 GB), which bounds a server's memory per decode.
        arr = np.asarray(im).astype(np.float32)
        peak = float(arr.max())
        top = 65535.0 if mode.startswith("I;16") or peak > 255 else 255.0
        if mode == "F":
            top = max(peak, 1e-6) if peak > 1.0 else 1.0
        arr /= top
        arr *= 255.0
        arr += 0.5
        np.clip(arr, 0, 255, out=arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if (mode == "P" and "transparency" in im.info) or mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")  # one RGBA copy, not two
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def _read_info(im: Image.Image) -> ImageInfo:
    taken_at = camera = None
    try:
        exif = im.getexif()
        sub = exif.get_ifd(_EXIF_IFD)
        raw = sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
        taken_at = _parse_exif_time(raw)
        make = str(exif.get(_MAKE) or "").strip("\x00 ")
        model = str(exif.get(_MODEL) or "").strip("\x00 ")
        camera = (model if model.lower().startswith(make.lower()) else f"{make} {model}")
        camera = camera.strip() or None
    except Exception:  # broken EXIF must never cost the image
        pass
    width, height = im.size
    return ImageInfo(width, height, taken_at, camera, im.format)


def _parse_exif_time(raw: object) -> datetime | None:
    if not raw:
        return None
    text = str(raw).strip("\x00 ")
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d"):
        try:
            return datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
    return None
