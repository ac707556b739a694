"""Decode any image file to an 8-bit RGB array, by content, with one-line errors.

`decode_image` is the single entry point used by the extractors. It reads the
bytes, lets Pillow identify the format from the content (the file extension is
never looked at), checks the pixel count from the header before decoding, and
normalises every mode to ``uint8`` RGB:

* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``).
* Grayscale, palette, CMYK, LA, ... are converted to RGB by Pillow.
* An alpha channel is DROPPED, not composited: the RGB values stored under
  transparent pixels are returned unchanged (compositing onto a background
  colour would invent content that is not in the file).
* 16-bit data (modes ``I;16*``, ``I`` and 16-bit-per-channel colour) is scaled
  to 8 bits as ``round(v / 257)`` (``I`` is first clipped to 0..65535).
  Pillow keeps only the high byte of 16-bit colour, so those files are
  re-decoded with OpenCV at full depth and rounded here.
* Floating-point images (Pillow mode ``F``, float TIFF via OpenCV) are assumed
  to lie in [0, 1]: ``round(clip(v, 0, 1) * 255)``.
* Multi-frame files (animated GIF/WebP, multi-page TIFF): the first frame.
* Files Pillow cannot read but OpenCV can (some TIFF variants, formats Pillow
  has no plugin for) are decoded with ``cv2.imdecode`` as a fallback; OpenCV
  applies EXIF orientation itself. Truncated data never falls back, because a
  partial decode would silently return a damaged image.
* A JPEG whose coded data stops early (an early EOI: decoders pad the rest in
  grey) is refused, from libjpeg-turbo's warning; see `_check_jpeg_ends_in_place`.

Pillow's decompression-bomb check is switched off while we decode, in favour
of our own ``max_pixels`` check (done on the header, before decoding); see
`_pillow_bomb_check_off`. Truncated files raise because Pillow's
``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default (False).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DecodeError
from ..files import UnreadableFileError, display_path, read_regular
from .formats import decode_raw, plugin_hint, sniff

__all__ = ["ImageDecodeError", "decode_image"]

_16BIT_GRAY_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageDecodeError(DecodeError):
    """An image that cannot be decoded; ``str()`` is one line: ``name: cause``."""

    def __init__(self, name: str, cause: str):
        super().__init__(name, cause)  # args kept so that the error pickles
        self.name = name
        self.cause = cause

    def __str__(self) -> str:
        return " ".join(f"{self.name}: {self.cause}".splitlines())


_bomb_lock = threading.Lock()
_bomb_users = 0
_bomb_saved: int | None = None


@contextlib.contextmanager
def _pillow_bomb_check_off():
    """Set ``Image.MAX_IMAGE_PIXELS = None`` while at least one decode runs.

    Pillow's limit is a module global, so it cannot be changed per call; a
    thread-safe reference count restores the caller's value once the last
    concurrent decode finishes. Other Pillow users in other threads are
    unprotected meanwhile (our own ``max_pixels`` check replaces it here).
    """
    global _bomb_users, _bomb_saved
    with _bomb_lock:
        if _bomb_users == 0:
            _bomb_saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _bomb_users += 1
    try:
        yield
    finally:
        with _bomb_lock:
            _bomb_users -= 1
            if _bomb_users == 0:
                Image.MAX_IMAGE_PIXELS = _bomb_saved


def _mp(pixels: float) -> str:
    return f"{pixels / 1e6:.4f}".rstrip("0").rstrip(".")


def _check_size(name: str, width: int, height: int, max_pixels: int) -> None:
    n = width * height
    if n > max_pixels:
        raise ImageDecodeError(
            name,
            f"image too large: {width} x {height} = {_mp(n)} megapixels, "
            f"above the limit of {_mp(max_pixels)} megapixels",
        )


def _read_bytes(source: str | os.PathLike | bytes, name: str | None,
                max_pixels: int) -> tuple[str, bytes]:
    """Return (name for messages, file content): a regular file only (a FIFO or a device
    would block or never end), at most what ``max_pixels`` can need (8 bytes a pixel,
    16-bit RGBA uncompressed, plus 64 MB of metadata)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return name or "<bytes>", bytes(source)
    name = name or display_path(source)
    try:
        return name, read_regular(source, 8 * max_pixels + (64 << 20), "image file", name)
    except UnreadableFileError as err:
        raise ImageDecodeError(name, err.cause) from None


def _u16_to_u8(a: np.ndarray) -> np.ndarray:
    """Scale 0..65535 integers to uint8 as round(v / 257) (v/257 never ends in .5)."""
    a = np.clip(a, 0, 65535).astype(np.uint32)
    return ((a + 128) // 257).astype(np.uint8)


def _float_to_u8(a: np.ndarray) -> np.ndarray:
    """Scale floating-point data assumed to lie in [0, 1] (clipped) to uint8."""
    return np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)


def _cv2_decode(data: bytes) -> np.ndarray | None:
    """OpenCV decode to RGB uint8 (16-bit rounded as above); None on failure."""
    import cv2

    buf = np.frombuffer(data, np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        if img is not None and img.dtype == np.uint16:
            img = _u16_to_u8(img)
        elif img is not None and img.dtype.kind == "f":
            img = _float_to_u8(img)
        elif img is not None and img.dtype != np.uint8:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        return None
    return np.ascontiguousarray(img[:, :, ::-1])


def _is_16bit_colour(im: Image.Image) -> bool:
    """True when Pillow reduces 16-bit-per-channel colour to its high byte."""
    if im.mode not in ("RGB", "RGBA") or not im.tile:
        return False
    args = im.tile[0].args
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return isinstance(rawmode, str) and ";16" in rawmode


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> C-contiguous uint8 H x W x 3 RGB (alpha dropped)."""
    if im.mode in _16BIT_GRAY_MODES or im.mode == "F":
        a = np.asarray(im)
        gray = _float_to_u8(a) if im.mode == "F" else _u16_to_u8(a)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # avoids Pillow's warning; alpha dropped below
    return np.array(im.convert("RGB"), dtype=np.uint8, order="C")


#: zlib's largest possible compression ratio (a long run of one byte): deflate data
#: shorter than raw / 1032 cannot hold the raw bytes.
_DEFLATE_MAX_RATIO = 1032


def _jpeg_min_coded_bytes(data: bytes) -> tuple[int, int] | None:
    """(bytes of coded data after the first scan header, the least a complete file needs).

    Huffman-coded JPEG (every SOF but the arithmetic ones) spends at least one bit
    per 8x8 block and component: its DC code in the first scan is never shorter.
    None when the header cannot be walked (Pillow then judges the file).
    """
    pos, sof = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        seg = data[pos + 4:pos + 2 + length]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7) and len(seg) >= 6:
            sof = seg
        elif marker in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return None  # arithmetic coding can spend less than a bit per block
        elif marker == 0xDA:
            if sof is None:
                return None
            height, width, n = (int.from_bytes(sof[1:3], "big"),
                                int.from_bytes(sof[3:5], "big"), sof[5])
            comps = [(sof[6 + 3 * k + 1] >> 4, sof[6 + 3 * k + 1] & 15) for k in range(n)
                     if 6 + 3 * k + 2 < len(sof)]
            if not comps or not height or not width:
                return None
            hmax, vmax = max(h for h, _ in comps) or 1, max(v for _, v in comps) or 1
            blocks = sum(-(-(-(-width * h // hmax)) // 8) * -(-(-(-height * v // vmax)) // 8)
                         for h, v in comps)
            return len(data) - (pos + 2 + length), -(-blocks // 8)
        pos += 2 + length
    return None


def _png_min_idat_bytes(data: bytes, im: Image.Image) -> tuple[int, int] | None:
    """(bytes of IDAT data, the least deflate needs for the pixels the header promises)."""
    if im.info.get("interlace"):
        return None
    bits = {"1": 1, "L": 8, "P": 8, "RGB": 24, "RGBA": 32, "LA": 16, "I": 16,
            "I;16": 16, "I;16B": 16}.get(im.mode)
    if bits is None:
        return None
    pos, idat = 8, 0
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += min(length, len(data) - pos - 8)
        elif kind == b"IEND":
            break
        pos += 12 + length
    raw = im.height * (1 + -(-im.width * bits // 8))
    return idat, -(-raw // _DEFLATE_MAX_RATIO)


def _check_data_suffices(name: str, data: bytes, im: Image.Image) -> None:
    """Refuse, from the header, a file too short to hold the pixels it claims.

    A decoder fills what is missing with grey (libjpeg, on an early end of data), so
    a 2.7 KB file claiming 14000 x 14000 would decode as 196 megapixels of padding
    after allocating gigabytes.  That is a truncated file: fail it, never pad it."""
    check = {"JPEG": lambda: _jpeg_min_coded_bytes(data),
             "MPO": lambda: _jpeg_min_coded_bytes(data),
             "PNG": lambda: _png_min_idat_bytes(data, im)}.get(im.format)
    got = check() if check else None
    if got is not None and got[0] < got[1]:
        raise ImageDecodeError(
            name, f"truncated image data: the header promises {im.width} x {im.height} "
                  f"pixels, which need at least {got[1]:,} bytes of coded data; the file "
                  f"has {got[0]:,}")


#: libjpeg's warnings for coded data that stops before the last block (JWRN_JPEG_EOF,
#: JWRN_HIT_MARKER): the decoder then fills the rest with grey and reports success.
_JPEG_EARLY_END = ("premature end of jpeg file", "premature end of data segment")


def _check_jpeg_ends_in_place(name: str, data: bytes) -> None:
    """Refuse a JPEG whose coded data ends before its last block (an early EOI).

    Pillow and OpenCV return such a file with the missing blocks padded in grey; the
    header check (:func:`_check_data_suffices`) cannot see it when the file is long
    enough.  libjpeg-turbo, through simplejpeg's strict mode, reports the early end as a
    warning; entropy decoding at 1/8 scale costs ~1-2 ms for a 0.2 MP photo.  Other
    warnings (extraneous bytes before a marker, common in camera files) and files the
    TurboJPEG API cannot read (some chroma subsamplings) are left to Pillow's decode."""
    import simplejpeg

    try:
        simplejpeg.decode_jpeg(data, "gray", min_height=1, min_width=1, min_factor=8)
    except ValueError as e:
        msg = str(e)
        if any(k in msg.lower() for k in _JPEG_EARLY_END):
            raise ImageDecodeError(name, f"truncated image data: the JPEG data ends before "
                                         f"its last block (libjpeg: {msg})") from None


def _pillow_decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode with Pillow; size and data length checked on the header before ``load()``."""
    with Image.open(io.BytesIO(data)) as im:
        _check_size(name, im.width, im.height, max_pixels)
        _check_data_suffices(name, data, im)
        deep_colour = _is_16bit_colour(im)  # before load(), which clears im.tile
        im.load()
        if im.format in ("JPEG", "MPO"):
            _check_jpeg_ends_in_place(name, data)
        if deep_colour:
            img = _cv2_decode(data)
            if img is not None:
                return img
        try:
            oriented = ImageOps.exif_transpose(im)
        except Exception:  # broken EXIF must not lose the image: keep it as stored
            oriented = im
        return _to_rgb8(oriented)


def _raw_decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    try:
        return decode_raw(data, name, max_pixels, _check_size)
    except ImageDecodeError:
        raise
    except Exception as e:  # LibRaw's errors: unsupported camera, damaged data
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ImageDecodeError(name, f"corrupt or unsupported camera RAW data (LibRaw: "
                                     f"{msg})") from None


def decode_image(
    source: str | os.PathLike | bytes,
    name: str | None = None,
    max_pixels: int = 200_000_000,
) -> np.ndarray:
    """Decode an image file (path or bytes) to a uint8 H x W x 3 RGB array.

    The format is detected from the content. ``name`` is used in error messages
    (default: the path, or ``<bytes>``). Images with more than ``max_pixels``
    pixels are refused from their header, before decoding. Every failure raises
    `ImageDecodeError` (a ``ValueError``) with a one-line message.
    """
    name, data = _read_bytes(source, name, max_pixels)
    if not data:
        raise ImageDecodeError(name, "empty file (0 bytes)")
    kind = sniff(data, name)  # HEIC, JPEG XL, camera RAW: optional extras
    if kind is not None:
        hint = plugin_hint(kind)
        if hint is not None:
            raise ImageDecodeError(name, hint)
        if kind == "RAW":
            return _raw_decode(data, name, max_pixels)
    with _pillow_bomb_check_off():
        try:
            return _pillow_decode(data, name, max_pixels)
        except (ImageDecodeError, MemoryError):
            raise
        except UnidentifiedImageError:
            cause = f"not a recognised image format (first bytes: {data[:16]!r})"
        except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
            msg = str(e) or type(e).__name__
            if "truncated" in msg.lower() or isinstance(e, EOFError):
                raise ImageDecodeError(name, f"truncated image data (Pillow: {msg})") from None
            cause = (
                f"corrupt or unsupported image data (Pillow: {msg}; "
                "OpenCV could not decode it either)"
            )
    img = _cv2_decode(data)  # fallback; see module docstring
    if img is None:
        raise ImageDecodeError(name, cause)
    _check_size(name, img.shape[1], img.shape[0], max_pixels)
    return img
