"""decode_image: content-based decoding, mode normalisation and one-line errors."""

import os
import pickle
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mlsp.images.decode import ImageDecodeError, decode_image

AVA_IMAGES = Path("/work/shared/data/ava_format/images")


def _rgb(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    rgb = [x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)]
    return np.stack(rgb, 2).astype(np.uint8)


def _check(a, shape):
    assert a.dtype == np.uint8 and a.shape == shape and a.flags.c_contiguous


def _error(path, **kw):
    with pytest.raises(ImageDecodeError) as ei:
        decode_image(path, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and os.path.basename(str(path)) in msg
    return msg


@pytest.mark.parametrize("fmt,ext,kw", [
    ("PNG", ".png", {}), ("BMP", ".bmp", {}), ("TIFF", ".tif", {}),
    ("WEBP", ".webp", {"lossless": True}),
])
def test_lossless_formats_exact(tmp_path, fmt, ext, kw):
    src = _rgb()
    p = tmp_path / f"x{ext}"
    Image.fromarray(src).save(p, fmt, **kw)
    out = decode_image(p)
    _check(out, (48, 64, 3))
    np.testing.assert_array_equal(out, src)


def test_jpeg_close_to_source(tmp_path):
    src = _smooth()
    Image.fromarray(src).save(tmp_path / "a.jpg", quality=95)
    out = decode_image(tmp_path / "a.jpg")
    _check(out, (48, 64, 3))
    assert np.abs(out.astype(int) - src).mean() < 3  # RGB order, not BGR


def test_rgba_png_alpha_dropped_not_composited(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (40, 30, 4), dtype=np.uint8)
    rgba[:10, :, 3] = 0  # fully transparent rows keep their stored RGB
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = decode_image(tmp_path / "a.png")
    _check(out, (40, 30, 3))
    np.testing.assert_array_equal(out, rgba[:, :, :3])


def test_gray_and_la(tmp_path):
    g = _rgb()[:, :, 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    Image.fromarray(np.stack([g, 255 - g], 2), "LA").save(tmp_path / "la.png")
    for name in ("g.png", "la.png"):
        out = decode_image(tmp_path / name)
        _check(out, (48, 64, 3))
        for c in range(3):
            np.testing.assert_array_equal(out[:, :, c], g)


def test_16bit_gray_png_rounded(tmp_path):
    v = np.array([0, 128, 129, 385, 386, 1000, 32767, 32896, 65406, 65407, 65535], np.uint16)
    g = np.tile(v, (5, 1))
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # really 16-bit
    out = decode_image(tmp_path / "g16.png")
    exp = np.array([0, 0, 1, 1, 2, 4, 127, 128, 254, 255, 255], np.uint8)
    np.testing.assert_array_equal(exp, np.round(v / 257))
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], np.tile(exp, (5, 1)))


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_rgb_rounded(tmp_path, ext):
    a = (np.arange(40 * 50 * 3).reshape(40, 50, 3) * 97 % 65536).astype(np.uint16)
    cv2.imwrite(str(tmp_path / f"c16{ext}"), a)  # BGR on disk
    out = decode_image(tmp_path / f"c16{ext}")
    _check(out, (40, 50, 3))
    np.testing.assert_array_equal(out, np.round(a[:, :, ::-1] / 257).astype(np.uint8))


def test_palette_png(tmp_path):
    p = Image.fromarray(_smooth()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    p.save(tmp_path / "p.png")
    table = np.array(p.getpalette(), np.uint8).reshape(-1, 3)
    out = decode_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out, table[np.asarray(p)])
    p.info["transparency"] = 0
    p.save(tmp_path / "pt.png", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(decode_image(tmp_path / "pt.png"), table[np.asarray(p)])


def test_cmyk_tiff(tmp_path):
    cmyk = np.zeros((4, 4, 4), np.uint8)
    cmyk[1] = (0, 255, 255, 0)  # red
    cmyk[2] = (0, 0, 0, 255)  # black
    cmyk[3] = (255, 0, 255, 0)  # green
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    out = decode_image(tmp_path / "c.tif")
    np.testing.assert_array_equal(out[:, 0], [[255, 255, 255], [255, 0, 0], [0, 0, 0], [0, 255, 0]])


def test_exif_orientation_6(tmp_path):
    src = np.zeros((40, 60, 3), np.uint8)
    src[:10, :10] = (255, 0, 0)  # red marker in the stored top-left corner
    im = Image.fromarray(src)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    im.save(tmp_path / "r.jpg", quality=95, exif=exif.tobytes())
    out = decode_image(tmp_path / "r.jpg")
    _check(out, (60, 40, 3))
    assert out[:8, -8:, 0].min() > 200 and out[:8, -8:, 1:].max() < 60  # now top-right
    assert out[:8, :8].max() < 60 and out[-8:, -8:].max() < 60


def test_decodes_by_content_not_extension(tmp_path):
    src = _rgb()
    Image.fromarray(src).save(tmp_path / "png_named.jpg", "PNG")
    np.testing.assert_array_equal(decode_image(tmp_path / "png_named.jpg"), src)
    data = (tmp_path / "png_named.jpg").read_bytes()
    np.testing.assert_array_equal(decode_image(data, name="mem"), src)


def test_first_frame_of_animation(tmp_path):
    frames = [Image.fromarray(_rgb(seed=s)) for s in (3, 4)]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    assert Image.open(tmp_path / "anim.webp").n_frames == 2
    np.testing.assert_array_equal(decode_image(tmp_path / "anim.webp"), _rgb(seed=3))


def test_opencv_fallback_float_tiff(tmp_path):
    f = np.random.default_rng(2).random((30, 40, 3)).astype(np.float32)
    cv2.imwrite(str(tmp_path / "f.tif"), f)
    with pytest.raises(Exception):  # Pillow alone cannot read 3-channel float TIFF
        Image.open(tmp_path / "f.tif").load()
    out = decode_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(out, np.rint(f[:, :, ::-1] * 255).astype(np.uint8))


def test_float_gray_tiff_same_convention(tmp_path):
    f = np.random.default_rng(2).random((30, 40)).astype(np.float32) * 1.2 - 0.1
    Image.fromarray(f, "F").save(tmp_path / "g.tif")  # Pillow reads this one (mode F)
    out = decode_image(tmp_path / "g.tif")
    exp = np.rint(np.clip(f, 0, 1) * 255).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], exp)


def test_truncated_jpeg(tmp_path):
    Image.fromarray(_rgb(200, 200)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    msg = _error(tmp_path / "half.jpg")
    assert "truncated image data" in msg and "Pillow:" in msg


def test_truncated_png(tmp_path):
    Image.fromarray(_rgb(200, 200)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    assert "truncat" in _error(tmp_path / "half.png")


def test_empty_text_missing_directory(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _error(tmp_path / "empty.jpg").endswith("empty file (0 bytes)")
    (tmp_path / "x.jpg").write_text("hello, this is not an image\n")
    msg = _error(tmp_path / "x.jpg")
    assert "not a recognised image format" in msg and "b'hello, this" in msg
    assert "No such file" in _error(tmp_path / "missing.jpg")
    (tmp_path / "dir.jpg").mkdir()
    assert "directory" in _error(tmp_path / "dir.jpg").lower()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_permission_denied(tmp_path):
    p = tmp_path / "locked.png"
    Image.fromarray(_rgb()).save(p)
    p.chmod(0)
    assert "Permission denied" in _error(p)


def _png_header_only(w, h):
    """A PNG declaring w x h RGB pixels followed by a tiny, incomplete IDAT."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))


def test_too_large_from_header_before_decoding(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "s.png")
    msg = _error(tmp_path / "s.png", max_pixels=1000)
    assert "image too large: 64 x 48 = 0.0031 megapixels, above the limit of 0.001" in msg
    # no pixel data: decoding would fail as truncated, so "too large" proves the
    # size is checked on the header first
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    msg = _error(tmp_path / "bomb.png")
    assert "image too large: 100000 x 100000 = 10000 megapixels, above the limit of 200 " in msg
    (tmp_path / "small.png").write_bytes(_png_header_only(300, 200))
    assert "truncat" in _error(tmp_path / "small.png")
    assert "too large" in _error(tmp_path / "small.png", max_pixels=300 * 200 - 1)


def test_pillow_bomb_limit_bypassed_and_restored(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.fromarray(_rgb()).save(tmp_path / "s.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning/Error from Pillow
        _check(decode_image(tmp_path / "s.png"), (48, 64, 3))
    assert Image.MAX_IMAGE_PIXELS == 100


def test_error_pickles_and_is_value_error():
    e = pickle.loads(pickle.dumps(ImageDecodeError("a.jpg", "empty file (0 bytes)")))
    assert isinstance(e, ValueError) and str(e) == "a.jpg: empty file (0 bytes)"


# The shared AVA-format images, inspected with `file` and Pillow: all 11 are RGBA
# PNGs (alpha 255 everywhere) saved under .jpg names; these are their header sizes.
AVA_SIZES = {
    "953349": (885, 497), "953417": (1766, 946), "953619": (655, 680), "953645": (787, 386),
    "953841": (280, 37), "953897": (427, 453), "953958": (988, 127), "953980": (959, 485),
    "954113": (961, 490), "954175": (755, 573), "954184": (959, 489),
}


@pytest.mark.skipif(not AVA_IMAGES.is_dir(), reason="shared data not available")
def test_shared_ava_images_all_decode():
    files = sorted(AVA_IMAGES.iterdir())
    assert {f.stem for f in files} == set(AVA_SIZES)
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # PNG content, .jpg name
        out = decode_image(f)
        w, h = AVA_SIZES[f.stem]
        _check(out, (h, w, 3))
        rgba = np.asarray(Image.open(f))
        assert rgba.shape == (h, w, 4)
        np.testing.assert_array_equal(out, rgba[:, :, :3])


def test_corrupt_png(tmp_path):
    Image.fromarray(_rgb(100, 100)).save(tmp_path / "c.png")
    data = bytearray((tmp_path / "c.png").read_bytes())
    data[len(data) // 2] ^= 0xFF  # damages the compressed pixel data
    (tmp_path / "c.png").write_bytes(bytes(data))
    assert "corrupt or unsupported image data (Pillow: " in _error(tmp_path / "c.png")


def test_bomb_limit_restored_after_concurrent_decodes(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(_rgb(100, 100)).save(tmp_path / "s.png")
    with ThreadPoolExecutor(4) as ex:
        shapes = list(ex.map(lambda _: decode_image(tmp_path / "s.png").shape, range(40)))
    assert shapes == [(100, 100, 3)] * 40 and Image.MAX_IMAGE_PIXELS == 1000


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_with_early_eoi_is_refused_not_padded(tmp_path, progressive):
    """Coded data cut at 60% and closed with an EOI marker: long enough for the header
    check, and Pillow / OpenCV decode it with the missing blocks in grey.  It must fail."""
    Image.fromarray(_smooth(240, 320)).save(tmp_path / "full.jpg", quality=95,
                                            progressive=progressive)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "eoi.jpg").write_bytes(data[: int(len(data) * 0.6)] + b"\xff\xd9")
    padded = cv2.imdecode(np.frombuffer((tmp_path / "eoi.jpg").read_bytes(), np.uint8), 1)
    assert padded is not None  # the fault is real: a decoder returns an image
    msg = _error(tmp_path / "eoi.jpg")
    assert "ends before its last block" in msg
    # the uncut file still decodes, and so does one with extraneous bytes before its EOI
    _check(decode_image(tmp_path / "full.jpg"), (240, 320, 3))
    (tmp_path / "extra.jpg").write_bytes(data[:-2] + b"\x00\x01\x02\xff\xd9")
    _check(decode_image(tmp_path / "extra.jpg"), (240, 320, 3))


@pytest.mark.skipif(not AVA_IMAGES.is_dir(), reason="shared AVA-format images not here")
def test_real_jpegs_pass_the_early_end_check():
    for path in sorted(AVA_IMAGES.glob("*.jpg")):
        assert decode_image(path).ndim == 3
