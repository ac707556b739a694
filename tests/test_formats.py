"""HEIC/HEIF, JPEG XL and camera RAW (issues 19 and 20): decoded through their optional
extras when installed, refused with the format and the fix when not (absence simulated
by making the import fail).  The files are real: encoded by pillow-heif / pillow-jxl, and a
DNG (Bayer RGGB, uncompressed) written byte by byte below."""
import importlib.util
import io
import struct
import sys

import numpy as np
import pytest
from PIL import Image

from mlsp.images.decode import ImageDecodeError, decode_image

has = {m: importlib.util.find_spec(m) is not None for m in ("pillow_heif", "pillow_jxl", "rawpy")}


def _smooth(h=64, w=80):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 3, y * 3, (x + y) * 2], axis=-1).astype(np.uint8)


def _heic():
    import pillow_heif

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    Image.fromarray(_smooth()).save(buf, "HEIF", quality=95)
    return buf.getvalue()


def _jxl():
    import pillow_jxl  # noqa: F401  (registers the plugin)

    buf = io.BytesIO()
    Image.fromarray(_smooth()).save(buf, "JXL", lossless=True)
    return buf.getvalue()


def _dng(width=64, height=48):
    """A minimal uncompressed Bayer (RGGB) DNG with 16-bit photosites."""
    cfa = np.zeros((height, width), np.uint16)
    cfa[0::2, 0::2], cfa[0::2, 1::2], cfa[1::2, 0::2], cfa[1::2, 1::2] = 1800, 3000, 3000, 1500
    pixels = cfa.astype("<u2").tobytes()
    SHORT, LONG, RATIONAL, SRATIONAL, ASCII, BYTE = 3, 4, 5, 10, 2, 1
    fmt = {SHORT: "<H", LONG: "<I", BYTE: "<B"}
    tags = {254: (LONG, [0]), 256: (LONG, [width]), 257: (LONG, [height]), 258: (SHORT, [16]),
            259: (SHORT, [1]), 262: (SHORT, [32803]), 271: (ASCII, b"mlsp\0"),
            272: (ASCII, b"mlsp test\0"), 273: (LONG, [0]), 274: (SHORT, [1]),
            277: (SHORT, [1]), 278: (LONG, [height]), 279: (LONG, [len(pixels)]),
            284: (SHORT, [1]), 33421: (SHORT, [2, 2]), 33422: (BYTE, [0, 1, 1, 2]),
            50706: (BYTE, [1, 4, 0, 0]), 50707: (BYTE, [1, 1, 0, 0]),
            50708: (ASCII, b"mlsp test\0"), 50714: (LONG, [0]), 50717: (LONG, [4095]),
            50721: (SRATIONAL, [(1, 1), (0, 1), (0, 1), (0, 1), (1, 1), (0, 1), (0, 1),
                                (0, 1), (1, 1)]),
            50728: (RATIONAL, [(1, 1), (1, 1), (1, 1)]), 50778: (SHORT, [21])}
    n = len(tags)
    data_off, blobs, ifd = 8 + 2 + 12 * n + 4, b"", struct.pack("<H", n)
    entries = []
    for t, (typ, vals) in sorted(tags.items()):
        if typ == ASCII:
            raw = vals
        elif typ in (RATIONAL, SRATIONAL):
            raw = b"".join(struct.pack("<II" if typ == RATIONAL else "<ii", *v) for v in vals)
        else:
            raw = b"".join(struct.pack(fmt[typ], v) for v in vals)
        if len(raw) <= 4:
            value = raw.ljust(4, b"\0")
        else:
            value = struct.pack("<I", data_off + len(blobs))
            blobs += raw + b"\0" * (len(raw) % 2)
        entries.append((t, typ, len(vals), value))
    for t, typ, count, value in entries:
        if t == 273:
            value = struct.pack("<I", data_off + len(blobs))
        ifd += struct.pack("<HHI", t, typ, count) + value
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + blobs + pixels


@pytest.mark.skipif(not has["pillow_heif"], reason="pip install 'mlsp[heif]'")
def test_heic_decodes_with_the_extra_and_names_the_fix_without_it(tmp_path, monkeypatch):
    path = tmp_path / "photo.heic"
    path.write_bytes(_heic())
    got = decode_image(path)
    assert got.shape == (64, 80, 3)
    assert np.abs(got.astype(int) - _smooth()).mean() < 4  # lossy HEVC, close to the truth
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if the extra were missing
    with pytest.raises(ImageDecodeError) as err:
        decode_image(path)
    assert str(err.value) == (f"{path}: HEIC/HEIF image: decoding it needs an optional "
                              f"package; fix: pip install 'mlsp[heif]'")


@pytest.mark.skipif(not has["pillow_jxl"], reason="pip install 'mlsp[jxl]'")
def test_jpeg_xl_decodes_with_the_extra_and_names_the_fix_without_it(tmp_path, monkeypatch):
    path = tmp_path / "photo.jxl"
    path.write_bytes(_jxl())
    np.testing.assert_array_equal(decode_image(path), _smooth())  # lossless
    monkeypatch.setitem(sys.modules, "pillow_jxl", None)
    with pytest.raises(ImageDecodeError, match=r"photo.jxl: JPEG XL image: .*fix: pip install "
                                               r"'mlsp\[jxl\]'$"):
        decode_image(path)


@pytest.mark.skipif(not has["rawpy"], reason="pip install 'mlsp[raw]'")
def test_a_camera_raw_file_is_developed_by_libraw_not_read_as_a_tiff(tmp_path, monkeypatch):
    import rawpy

    data = _dng()
    path = tmp_path / "IMG_0001.DNG"
    path.write_bytes(data)
    got = decode_image(path)
    with rawpy.imread(io.BytesIO(data)) as raw:  # LibRaw's own development as the truth
        want = raw.postprocess(use_camera_wb=True, output_bps=8)
    assert got.shape == (48, 64, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ImageDecodeError, match="image too large"):
        decode_image(path, max_pixels=100)  # checked from the RAW header
    monkeypatch.setitem(sys.modules, "rawpy", None)
    with pytest.raises(ImageDecodeError, match=r"IMG_0001.DNG: camera RAW file: .*fix: pip "
                                               r"install 'mlsp\[raw\]'$"):
        decode_image(path)
