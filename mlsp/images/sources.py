"""Where images come from: a folder, a list file (text or CSV) or the AVA.txt index.

Every loader returns a list of `ImageItem` (an id unique within the list, and a
path). Nothing here opens the images: files are decoded by content later, so a
non-image file is listed and recorded as failed at extraction time.
Problems with a list file raise ``ValueError`` with one line naming the file,
the line number and the cause.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ImageItem", "from_folder", "from_list", "from_ava", "check_unique", "collect_items",
           "LIST_SUFFIXES"]

#: Files among the inputs that are read as lists of images, not as images.
LIST_SUFFIXES = (".csv", ".txt", ".lst")


@dataclass(frozen=True)
class ImageItem:
    """One image: a unique ``id`` and the ``path`` to its file."""

    id: str
    path: str


def check_unique(items: list[ImageItem]) -> None:
    """Raise ``ValueError`` naming the first id that occurs twice."""
    seen: dict[str, str] = {}
    for it in items:
        if it.id in seen:
            raise ValueError(f"duplicate image id {it.id!r}: {seen[it.id]} and {it.path}")
        seen[it.id] = it.path


def _line_error(file: str | os.PathLike, lineno: int, cause: str) -> ValueError:
    return ValueError(f"{os.fspath(file)}, line {lineno}: {cause}")


def _read_text(file: str | os.PathLike) -> str:
    try:
        return Path(file).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise ValueError(f"{os.fspath(file)}: cannot read list file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{os.fspath(file)}: not a UTF-8 text file ({e.reason})") from None


def from_folder(root: str | os.PathLike, recursive: bool = True) -> list[ImageItem]:
    """List every regular file (and broken symbolic link) under ``root``, sorted,
    skipping hidden names.

    Files and folders whose name starts with '.' are skipped; extensions are
    not filtered. The id is the path relative to ``root`` ('/'-separated)
    without its extension; when two files share that id (``a.jpg``, ``a.png``)
    each of them keeps its extension instead.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    rels = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for f in filenames:
            full = os.path.join(dirpath, f)
            # broken symbolic links are listed too: they are recorded as failed, not lost
            if not f.startswith(".") and (os.path.isfile(full) or os.path.islink(full)):
                rels.append(Path(full).relative_to(root).as_posix())
    rels.sort()
    stems = [os.path.splitext(r)[0] for r in rels]
    counts = Counter(stems)
    items = [
        ImageItem(stem if counts[stem] == 1 else rel, str(root / rel))
        for rel, stem in zip(rels, stems)
    ]
    check_unique(items)
    return items


def _resolve(base: Path, p: str) -> str:
    return str(base / os.path.expanduser(p))  # an absolute p replaces base


def from_list(list_file: str | os.PathLike) -> list[ImageItem]:
    """Read image paths from a text list or a CSV file.

    Text: one path per line; blank lines and lines starting with '#' are
    ignored. CSV (extension ``.csv``, or a first line with a ``path`` column):
    a header with ``path`` and optionally ``id``; the delimiter is the one of
    ``,`` ``;`` tab that occurs most in the header. Relative paths resolve
    against the list file's folder; the id defaults to the file stem.
    """
    text = _read_text(list_file)
    base = Path(list_file).parent
    lines = text.splitlines()
    first = next(
        ((i, ln) for i, ln in enumerate(lines, 1) if ln.strip() and not ln.startswith("#")),
        None,
    )
    if first is None:
        return []
    delim = max(",;\t", key=first[1].count)
    header = [h.strip().lower() for h in first[1].split(delim)]
    is_csv = str(list_file).lower().endswith(".csv") or "path" in header
    items = []
    if not is_csv:
        for lineno, ln in enumerate(lines, 1):
            p = ln.strip()
            if p and not p.startswith("#"):
                items.append(ImageItem(Path(p).stem, _resolve(base, p)))
    else:
        if "path" not in header:
            raise _line_error(list_file, first[0], f"CSV header has no 'path' column: {first[1]!r}")
        ipath = header.index("path")
        iid = header.index("id") if "id" in header else None
        reader = csv.reader(lines[first[0]:], delimiter=delim)
        for row in reader:
            lineno = first[0] + reader.line_num
            if not any(c.strip() for c in row) or row[0].startswith("#"):
                continue
            if len(row) != len(header):
                raise _line_error(
                    list_file, lineno, f"expected {len(header)} fields, got {len(row)}"
                )
            p = row[ipath].strip()
            if not p:
                raise _line_error(list_file, lineno, "empty path")
            id_ = row[iid].strip() if iid is not None else ""
            items.append(ImageItem(id_ or Path(p).stem, _resolve(base, p)))
    check_unique(items)
    return items


def from_ava(
    ava_txt: str | os.PathLike, image_dir: str | os.PathLike, ext: str = ".jpg"
) -> list[ImageItem]:
    """Read the AVA index (AVA.txt): one image per line, ``image_dir/image_id + ext``.

    Line format (whitespace separated, 15 fields):
    ``index image_id n1 ... n10 tag1 tag2 challenge_id`` where ``n_k`` is the
    number of votes for score k. Only the ids are used here.
    """
    text = _read_text(ava_txt)
    image_dir = os.fspath(image_dir)
    items = []
    for lineno, ln in enumerate(text.splitlines(), 1):
        f = ln.split()
        if not f:
            continue
        if len(f) != 15:
            raise _line_error(ava_txt, lineno, f"expected 15 fields, got {len(f)}")
        if not f[1].isdigit():
            raise _line_error(ava_txt, lineno, f"image id {f[1]!r} is not a number")
        items.append(ImageItem(f[1], os.path.join(image_dir, f[1] + ext)))
    check_unique(items)
    return items


def collect_items(inputs=(), list_file=None, ava=None, images=None,
                  allow_empty: bool = False) -> list[ImageItem]:
    """Image items from folders and files, list or CSV files, or AVA.txt plus a folder.

    ``inputs``: a list of :class:`ImageItem` (returned as is), or one or more folders
    (searched recursively), image files and list files (a ``.csv`` / ``.txt`` / ``.lst``
    file among the inputs is read with :func:`from_list`, as ``list_file`` is); ``ava``
    with ``images``: see :func:`from_ava`.  Ids must be unique.  Raises ``ValueError``
    with one line naming the input and the cause (``allow_empty``: an empty result is
    returned, not refused).  The one collector of the library, the CLI and both engines.
    """
    if isinstance(inputs, (str, os.PathLike, ImageItem)):
        inputs = [inputs]
    inputs = list(inputs or ())
    if inputs and all(isinstance(it, ImageItem) for it in inputs) and not (list_file or ava):
        check_unique(inputs)
        return inputs
    items = []
    for raw in inputs:
        if isinstance(raw, ImageItem):
            items.append(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            found = from_folder(path)
            if not found:
                raise ValueError(f"{path}: no files in this folder (hidden names are skipped)")
            items.extend(found)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            items.extend(from_list(path))
        elif path.exists() or path.is_symlink():
            items.append(ImageItem(path.stem, str(path)))
        else:
            raise ValueError(f"{path}: no such file or folder")
    if list_file:
        items.extend(from_list(list_file))
    if ava:
        if not images:
            raise ValueError("--ava needs --images DIR (the folder of AVA's ID.jpg files)")
        items.extend(from_ava(ava, images))
    if not items and (list_file or ava) and not allow_empty:
        raise ValueError(f"{list_file or ava}: lists no images")
    if not items and not allow_empty:
        raise ValueError("no input images: give folders or files, --list FILE, "
                         "or --ava AVA.txt --images DIR")
    check_unique(items)
    return items
