"""Formats Pillow reads only through a plugin: HEIC/HEIF, JPEG XL, camera RAW.

Each is recognised from its content (HEIF: an ISO-BMFF ``ftyp`` box with a HEIF brand; JPEG
XL: its codestream or container signature; RAW: the signatures of ORF, RW2, RAF and CR3, and
for the TIFF-based RAW formats, which share TIFF's signature, the file extension, because
Pillow would otherwise return their small embedded preview as if it were the photo).  When
the optional extra is installed the file is decoded (``pip install 'mlsp[heif]'``: pillow-heif,
``'mlsp[jxl]'``: pillow-jxl-plugin, ``'mlsp[raw]'``: rawpy); when it is not, the failure names
the format and the command that fixes it, instead of "not a recognised image format".
"""
from __future__ import annotations

import importlib
import io
import os

import numpy as np

__all__ = ["sniff", "plugin_hint", "decode_raw", "RAW_SUFFIXES", "EXTRAS"]

#: format -> (what it is called, module that decodes it, the extra that installs it)
EXTRAS = {"HEIF": ("HEIC/HEIF image", "pillow_heif", "heif"),
          "JXL": ("JPEG XL image", "pillow_jxl", "jxl"),
          "RAW": ("camera RAW file", "rawpy", "raw")}

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
                b"mif1", b"msf1"}
#: TIFF-based RAW formats (their content starts like any TIFF)
RAW_SUFFIXES = frozenset({".dng", ".nef", ".nrw", ".cr2", ".arw", ".srf", ".sr2", ".pef",
                          ".srw", ".erf", ".kdc", ".dcr", ".mos", ".mef", ".3fr", ".iiq",
                          ".rwl", ".raw"})


def sniff(data: bytes, name: str | None = None) -> str | None:
    """"HEIF", "JXL", "RAW" or None (anything else: left to Pillow and OpenCV)."""
    if data[:2] == b"\xff\x0a" or data[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "JXL"
    if data[4:8] == b"ftyp":
        brands = {data[8:12]} | {data[k:k + 4] for k in range(16, min(len(data), 64), 4)}
        if data[8:12] == b"crx ":
            return "RAW"  # Canon CR3
        generic = {b"mif1", b"msf1"}  # also AVIF's: HEIF only with an HEVC brand beside
        if (data[8:12] in _HEIF_BRANDS - generic) or (brands & (_HEIF_BRANDS - generic)):
            return "HEIF"
    if data[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00") or data[:15] == b"FUJIFILMCCD-RAW":
        return "RAW"
    if name and data[:4] in (b"II*\x00", b"MM\x00*") and \
            os.path.splitext(str(name))[1].lower() in RAW_SUFFIXES:
        return "RAW"
    return None


def plugin_hint(kind: str) -> str | None:
    """None when the plugin for ``kind`` imports (and, for Pillow plugins, is registered);
    else the one-line cause naming the format and the fix."""
    what, module, extra = EXTRAS[kind]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return (f"{what}: decoding it needs an optional package; fix: "
                f"pip install 'mlsp[{extra}]'")
    if kind == "HEIF":
        mod.register_heif_opener()
    return None


def decode_raw(data: bytes, name: str, max_pixels: int, check_size) -> np.ndarray:
    """A camera RAW file developed by LibRaw (rawpy): camera white balance, sRGB, 8 bits.
    The pixel count is checked from the RAW header before developing."""
    import rawpy

    with rawpy.imread(io.BytesIO(data)) as raw:
        check_size(name, raw.sizes.width, raw.sizes.height, max_pixels)
        rgb = raw.postprocess(use_camera_wb=True, output_bps=8)
    return np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)
