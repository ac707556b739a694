"""Hostile inputs (issue 9, items 2 and 8): files that claim more than they hold, label
files from spreadsheets in other locales, label sets that cannot train."""
import io
import resource
import time

import numpy as np
import pytest
from PIL import Image

from mlsp.images.decode import ImageDecodeError, decode_image
from mlsp.labels.labels import Labels, load_csv


def _jpeg(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **kw)
    return buf.getvalue()


def _claim(data: bytes, height: int, width: int) -> bytes:
    """The same JPEG with a start-of-frame header that claims another size."""
    d = bytearray(data)
    i = d.find(b"\xff\xc0")
    d[i + 5:i + 7], d[i + 7:i + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(d)


def test_a_small_jpeg_claiming_14000_squared_fails_fast_as_truncated():
    rng = np.random.default_rng(0)
    data = _claim(_jpeg(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)), 14000, 14000)
    assert len(data) < 4000
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.monotonic()
    with pytest.raises(ImageDecodeError, match="truncated image data") as err:
        decode_image(data, "huge.jpg")
    assert time.monotonic() - t < 20  # generous: a guard against decoding 196 MP, not a benchmark
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100_000  # < 100 MB more
    assert "14000 x 14000" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kw", [{}, {"progressive": True}, {"quality": 5}])
def test_genuine_extreme_compression_still_decodes(kw):
    flat = np.full((1500, 2000, 3), 77, np.uint8)  # the smallest a real JPEG gets
    got = decode_image(_jpeg(flat, **kw))
    assert got.shape == (1500, 2000, 3) and got.min() == got.max()  # uniform, not padded
    buf = io.BytesIO()
    Image.fromarray(np.zeros((1500, 2000), np.uint8)).save(buf, "PNG", optimize=True)
    assert decode_image(buf.getvalue()).shape == (1500, 2000, 3)


def test_a_png_claiming_more_rows_than_its_data_fails_as_truncated():
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), np.uint8)).save(buf, "PNG")
    d = bytearray(buf.getvalue())
    d[16:20], d[20:24] = (9000).to_bytes(4, "big"), (9000).to_bytes(4, "big")  # IHDR w, h
    import zlib
    d[29:33] = zlib.crc32(bytes(d[12:29])).to_bytes(4, "big")
    with pytest.raises(ImageDecodeError, match="truncated image data"):
        decode_image(bytes(d), "claims.png")


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_semicolon_file_with_decimal_commas_and_a_bom(tmp_path):
    f = _write(tmp_path / "l.csv", "\ufeffid;mos;split\nx,1;3,5;train\nb;4,25;test\n")
    lab = load_csv(f)
    assert lab.ids == ["x,1", "b"]  # a comma inside an id is not a decimal comma
    np.testing.assert_array_equal(lab.mos, [3.5, 4.25])
    assert list(lab.split) == ["train", "test"]


def test_tab_separated_latin1_file_is_read_with_a_stated_fallback(tmp_path):
    f = _write(tmp_path / "l.tsv", "id\tmos\ncaf\u00e9\t3.5\nb\t4\n", "latin-1")
    with pytest.warns(UserWarning, match=r"l.tsv: not UTF-8 \(line 2, byte 0xe9\); read as Latin-1"):
        lab = load_csv(f)
    assert lab.ids == ["caf\u00e9", "b"]
    np.testing.assert_array_equal(lab.mos, [3.5, 4.0])


def test_too_few_labelled_images_to_split_are_refused_with_the_minimum():
    lab = Labels(ids=["a", "b", "c"], mos=[1, 2, 3], source="three.csv")
    with pytest.raises(ValueError, match="3 labelled images .* too few .* at least 11 are needed"):
        lab.with_split(0.05)
    Labels(ids=[str(k) for k in range(11)], mos=np.arange(11), source="x").with_split(0.05)


def test_constant_scores_are_refused():
    lab = Labels(ids=[str(k) for k in range(40)], mos=np.full(40, 3.0), source="flat.csv")
    with pytest.raises(ValueError, match="flat.csv: all 40 training images have the same score 3"):
        lab.with_split(0.05)
