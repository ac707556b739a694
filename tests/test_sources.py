"""Image sources: folders, list files (text/CSV) and AVA.txt."""

from collections import Counter
from pathlib import Path

import pytest

from mlsp.images.sources import ImageItem, check_unique, from_ava, from_folder, from_list

AVA_TXT = Path("/work/shared/data/ava_format/AVA.txt")


def _touch(root, *rels):
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_from_folder(tmp_path):
    _touch(tmp_path, "b.jpg", "a.png", "sub/c.jpeg", "sub/deep/d", "notes.txt",
           ".hidden.jpg", ".git/e.jpg", "sub/.cache/f.jpg", "dup.jpg", "dup.png")
    skipped = Counter()
    items = from_folder(tmp_path, skipped=skipped)
    assert [(i.id, i.path) for i in items] == [
        ("a", str(tmp_path / "a.png")),
        ("b", str(tmp_path / "b.jpg")),
        ("dup.jpg", str(tmp_path / "dup.jpg")),
        ("dup.png", str(tmp_path / "dup.png")),
        ("sub/c", str(tmp_path / "sub/c.jpeg")),
        ("sub/deep/d", str(tmp_path / "sub/deep/d")),
    ]
    assert skipped == {".txt files (not photos)": 1}  # a sidecar is counted, not listed
    assert [i.id for i in from_folder(tmp_path, recursive=False)] == [
        "a", "b", "dup.jpg", "dup.png"]
    with pytest.raises(ValueError, match="not a folder"):
        from_folder(tmp_path / "missing")


def test_from_list_text(tmp_path):
    (tmp_path / "lists").mkdir()
    lst = tmp_path / "lists" / "files.txt"
    lst.write_text("# my images\n\na.jpg\n  sub/b.png  \n/abs/c.jpg\n")
    assert from_list(lst) == [
        ImageItem("a", str(tmp_path / "lists" / "a.jpg")),
        ImageItem("b", str(tmp_path / "lists" / "sub/b.png")),
        ImageItem("c", "/abs/c.jpg"),
    ]


def test_from_list_csv_with_ids(tmp_path):
    lst = tmp_path / "l.csv"
    lst.write_text("id,path,mos\nfirst,img/a.jpg,5.1\n\nsecond,/x/b.jpg,3\n")
    assert from_list(lst) == [
        ImageItem("first", str(tmp_path / "img/a.jpg")), ImageItem("second", "/x/b.jpg")]


def test_from_list_csv_semicolon_header_detected(tmp_path):
    lst = tmp_path / "l.txt"  # not .csv: detected by its header's "path" column
    lst.write_text("score;Path\n5.0;a.jpg\n4;\"b;c.jpg\"\n")
    assert from_list(lst) == [
        ImageItem("a", str(tmp_path / "a.jpg")), ImageItem("b;c", str(tmp_path / "b;c.jpg"))]
    tab = tmp_path / "t.csv"
    tab.write_text("path\tid\na.jpg\tq\n")
    assert from_list(tab) == [ImageItem("q", str(tmp_path / "a.jpg"))]


def test_from_list_errors(tmp_path):
    with pytest.raises(ValueError, match="missing.txt: cannot read list file: No such file"):
        from_list(tmp_path / "missing.txt")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,path\na,a.jpg\nb\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 3: expected 2 fields, got 1$"):
        from_list(bad)
    nopath = tmp_path / "nopath.csv"
    nopath.write_text("id,file\na,a.jpg\n")
    with pytest.raises(ValueError, match=r"nopath\.csv, line 1: CSV header has no 'path' column"):
        from_list(nopath)
    dup = tmp_path / "dup.txt"
    dup.write_text("x/a.jpg\ny/a.png\n")
    with pytest.raises(ValueError, match="duplicate image id 'a'"):
        from_list(dup)


def test_check_unique():
    check_unique([ImageItem("a", "1"), ImageItem("b", "2")])
    with pytest.raises(ValueError, match=r"duplicate image id 'b': 2 and 3"):
        check_unique([ImageItem(i, p) for i, p in zip("abba", "1234")])


@pytest.mark.skipif(not AVA_TXT.is_file(), reason="shared data not available")
def test_from_ava_shared_sample():
    items = from_ava(AVA_TXT, "/data/ava")
    # 11 lines (the last one without a trailing newline); ids in file order
    assert [i.id for i in items] == [
        "953619", "953958", "954184", "954113", "953980", "954175",
        "953349", "953645", "953897", "953841", "953417"]
    assert items[0].path == "/data/ava/953619.jpg"
    # every listed id has its (PNG-content) file in the shared images folder
    img_dir = AVA_TXT.parent / "images"
    assert all(Path(i.path).is_file() for i in from_ava(AVA_TXT, img_dir))


def test_from_ava_errors_and_speed(tmp_path):
    ava = tmp_path / "AVA.txt"
    line = "{} {} 0 1 5 17 38 36 15 6 5 1 1 22 1396\n"
    ava.write_text("".join(line.format(i + 1, 100000 + i) for i in range(255_530)))
    import time
    t = time.perf_counter()
    items = from_ava(ava, tmp_path, ext=".png")
    assert time.perf_counter() - t < 120  # generous: guards against a quadratic reader on a loaded machine
    assert len(items) == 255_530 and items[-1] == ImageItem("355529", str(tmp_path / "355529.png"))
    ava.write_text(line.format(1, 5) + "2 6 0 1 5\n")
    with pytest.raises(ValueError, match=r"AVA\.txt, line 2: expected 15 fields, got 5"):
        from_ava(ava, tmp_path)
    ava.write_text(line.format(1, 5) + line.format(2, 5))
    with pytest.raises(ValueError, match="duplicate image id '5'"):
        from_ava(ava, tmp_path)


def test_broken_symlink_is_listed_and_fails_with_its_reason(tmp_path):
    from mlsp.images.decode import ImageDecodeError, decode_image

    _touch(tmp_path, "a.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    items = from_folder(tmp_path)
    assert [i.id for i in items] == ["a", "gone"]  # listed, so it is recorded, not lost
    with pytest.raises(ImageDecodeError, match=r"gone\.jpg: broken symbolic link \(to .*nowhere"):
        decode_image(items[1].path)


def test_cli_names_empty_inputs(tmp_path):
    from click.testing import CliRunner

    from mlsp.cli import main

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.csv").write_text("path\n")
    for args, msg in ((["empty"], "empty: no photos in this folder"),
                      (["--list", "empty.csv"], "empty.csv: lists no images"),
                      (["nothere"], "nothere: no such file or folder"),
                      ([], "no input images")):
        r = CliRunner().invoke(main, ["extract", *[str(tmp_path / a) if not a.startswith("-")
                                                   else a for a in args], "-o",
                                      str(tmp_path / "s.h5"), "--quiet"])
        assert r.exit_code != 0 and msg in r.output, (args, r.output)
        assert r.output.strip().count("\n") == 0  # one line
    assert not (tmp_path / "s.h5").exists()  # nothing created for nothing to do


def test_list_file_among_inputs_is_read_as_a_list(tmp_path):
    """One collector for the CLI and ``mlsp.extract``: a .txt / .csv among the inputs is a
    list of images (as ``--list``), next to folders and image files."""
    from mlsp.images.sources import collect_items

    (tmp_path / "imgs").mkdir()
    for n in ("a", "b"):
        (tmp_path / "imgs" / f"{n}.jpg").write_bytes(b"x")
    (tmp_path / "c.jpg").write_bytes(b"x")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'imgs' / 'a.jpg'}\n")
    items = collect_items([tmp_path / "list.txt", tmp_path / "c.jpg"])
    assert [i.id for i in items] == ["a", "c"]
    assert collect_items([tmp_path / "imgs"]) and collect_items([], allow_empty=True) == []
    with pytest.raises(ValueError, match="no input images"):
        collect_items([])
