"""Where images come from: a folder, a list file (text or CSV) or the AVA.txt index.

Every loader returns a list of `ImageItem` (an id unique within the list, and a
path). Nothing here opens the images: files are decoded by content later, so a
non-image file is listed and recorded as failed at extraction time.
Problems with a list file raise ``ValueError`` with one line naming the file,
the line number and the cause.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..files import LIST_MAX_BYTES, UnreadableFileError, display_path, read_regular

__all__ = ["ImageItem", "from_folder", "describe_skipped", "NOT_PHOTO_SUFFIXES", "storable_item", "from_list", "from_ava", "check_unique", "collect_items",
           "LIST_SUFFIXES"]

#: Files among the inputs that are read as lists of images, not as images.
LIST_SUFFIXES = (".csv", ".txt", ".lst")


@dataclass(frozen=True, slots=True)
class ImageItem:
    """One image: a unique ``id`` and the ``path`` to its file.  ``error``: why the file
    is known to fail before it is opened (a folder that cannot be listed, a name that is
    not UTF-8); such an item is recorded as failed with that reason, never dropped."""

    id: str
    path: str
    error: str | None = None


#: Extensions of files that sit beside photos but are not photos (sidecars, text, lists,
#: thumbnails databases): skipped and counted when walking a folder, never stored as failed.
NOT_PHOTO_SUFFIXES = frozenset({
    ".xmp", ".txt", ".csv", ".tsv", ".json", ".xml", ".md", ".pdf", ".html", ".htm", ".lst",
    ".log", ".ini", ".db", ".thm", ".aae", ".pp3", ".dop", ".on1", ".yaml", ".yml", ".h5",
    ".hdf5", ".zip", ".py", ".sh", ".doc", ".docx", ".xls", ".xlsx", ".rtf", ".nfo", ".url",
    ".lnk", ".ds_store", ".mp4", ".mov", ".avi", ".mkv", ".wav", ".mp3", ".m4a", ".onnx",
    ".keras", ".partial", ".lock", ".tmp"})


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
        data = read_regular(file, LIST_MAX_BYTES, "list file")
    except UnreadableFileError as e:
        raise ValueError(str(e)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{display_path(file)}: not a UTF-8 text file ({e.reason})") from None


def _walk(root: str, recursive: bool, skipped: Counter):
    """(relative name, full path, error or None) of every non-hidden entry that is not a
    folder; folders that cannot be listed come back as entries with their error."""
    out = []

    def refused(err: OSError):
        where = err.filename if err.filename is not None else root
        cause = os.strerror(err.errno) if err.errno else str(err)
        if err.errno == errno.ENAMETOOLONG:
            cause += f" (a path of {len(os.fsencode(where))} bytes; the system allows {_path_max()})"
        out.append((where, f"folder cannot be listed: {cause}; the files in it are not "
                           f"extracted"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=refused):
        for d in list(dirnames):
            if not d.startswith(".") and os.path.islink(os.path.join(dirpath, d)):
                skipped["symbolic links to folders (not followed)"] += 1
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not os.path.islink(os.path.join(dirpath, d))) if recursive else []
        for f in filenames:
            if f.startswith("."):
                continue
            if os.path.splitext(f)[1].lower() in NOT_PHOTO_SUFFIXES:
                skipped[f"{os.path.splitext(f)[1].lower()} files (not photos)"] += 1
                continue
            # every other entry is listed: a broken link, a FIFO or a device is recorded as
            # failed with what it is (the reader never blocks on it), not silently lost
            out.append((os.path.join(dirpath, f), None))
    return out


def _path_max() -> int:
    try:
        return os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError):
        return 4096


def from_folder(root: str | os.PathLike, recursive: bool = True,
                skipped: Counter | None = None) -> list[ImageItem]:
    """List every file under ``root`` that may be a photo, sorted, skipping hidden names.

    Files and folders whose name starts with '.' are skipped; files whose extension says
    they are not photos (:data:`NOT_PHOTO_SUFFIXES`: sidecars, text, lists) are skipped and
    counted in ``skipped`` (reason -> count), as are links to folders (not followed).
    Everything else is listed, whatever it is: a broken link, a FIFO or a device fails at
    extraction with what it is.  A subfolder that cannot be listed (permission, a path
    longer than the system allows) and a name that is not UTF-8 are listed with their
    ``error``, so they are recorded as failed, not lost.  The id is the path relative to
    ``root`` ('/'-separated) without its extension; when two files share that id
    (``a.jpg``, ``a.png``) each of them keeps its extension instead.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{display_path(root)}: not a folder")
    skipped = Counter() if skipped is None else skipped
    entries = []
    for full, error in _walk(str(root), recursive, skipped):
        rel = os.path.relpath(full, root).replace(os.sep, "/")
        shown = display_path(rel)
        if error is None and shown != rel:  # bytes that are not UTF-8 in the name
            error = ("file name is not valid UTF-8 (shown with \\x escapes); rename the "
                     "file to extract it")
        entries.append((shown, display_path(full) if shown != rel else full, error))
    entries.sort()
    stems = [os.path.splitext(r)[0] for r, _, _ in entries]
    counts = Counter(stems)
    items = [ImageItem(stem if counts[stem] == 1 else rel, path, error)
             for (rel, path, error), stem in zip(entries, stems)]
    check_unique(items)
    return items


def describe_skipped(skipped: Counter) -> str:
    """One line for what a folder walk skipped, or '' (e.g. "skipped 3 files: 2 .xmp files
    (not photos), 1 .csv files (not photos)")."""
    if not skipped:
        return ""
    parts = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items(), key=lambda kv: -kv[1]))
    n = sum(skipped.values())
    return f"skipped {n} {'entry' if n == 1 else 'entries'}: {parts}"


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
    lines = text.splitlines(keepends=True)
    first, offset = None, 0
    for i, ln in enumerate(lines, 1):
        if ln.strip() and not ln.startswith("#"):
            first = (i, ln.rstrip("\r\n"))
            break
        offset += len(ln)
    if first is None:
        return []
    delim = max(",;\t", key=first[1].count)
    header = [h.strip().lower() for h in first[1].split(delim)]
    is_csv = str(list_file).lower().endswith(".csv") or "path" in header
    items = []
    if not is_csv:
        for ln in lines:
            p = ln.strip()
            if p and not p.startswith("#"):
                items.append(ImageItem(Path(p).stem, _resolve(base, p)))
    else:
        if "path" not in header:
            raise _line_error(list_file, first[0], f"CSV header has no 'path' column: {first[1]!r}")
        ipath = header.index("path")
        iid = header.index("id") if "id" in header else None
        # the CSV reader sees the text itself, not lines: a quoted field keeps its newlines
        reader = csv.reader(io.StringIO(text[offset + len(lines[first[0] - 1]):], newline=""),
                            delimiter=delim)
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


def storable_item(item: ImageItem) -> ImageItem:
    """An item whose id or path cannot be written as UTF-8 (a file name with bytes that are
    not UTF-8) becomes a failed item with escaped text, so one bad name fails one file."""
    try:
        item.id.encode("utf-8"), str(item.path).encode("utf-8")
        return item
    except UnicodeEncodeError:
        return ImageItem(display_path(item.id), display_path(item.path),
                         item.error or "file name is not valid UTF-8 (shown with \\x "
                                       "escapes); rename the file to extract it")


def collect_items(inputs=(), list_file=None, ava=None, images=None,
                  allow_empty: bool = False, skipped: Counter | None = None) -> list[ImageItem]:
    """Image items from folders and files, list or CSV files, or AVA.txt plus a folder.

    ``inputs``: a list of :class:`ImageItem` (returned as is), or one or more folders
    (searched recursively), image files and list files (a ``.csv`` / ``.txt`` / ``.lst``
    file among the inputs is read with :func:`from_list`, as ``list_file`` is); ``ava``
    with ``images``: see :func:`from_ava`.  Ids must be unique.  Raises ``ValueError``
    with one line naming the input and the cause (``allow_empty``: an empty result is
    returned, not refused).  ``skipped``: a Counter that receives what folder walks
    skipped (sidecars, text; see :func:`from_folder`); without one, they are logged (INFO, logger ``mlsp.images.sources``).
    The one collector of the library, the CLI and both engines.
    """
    if isinstance(inputs, (str, os.PathLike, ImageItem)):
        inputs = [inputs]
    inputs = list(inputs or ())
    if inputs and all(isinstance(it, ImageItem) for it in inputs) and not (list_file or ava):
        inputs = [storable_item(it) for it in inputs]
        check_unique(inputs)
        return inputs
    items, own = [], skipped is None
    skipped = Counter() if skipped is None else skipped
    for raw in inputs:
        if isinstance(raw, ImageItem):
            items.append(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            found = from_folder(path, skipped=skipped)
            if not found:
                why = f"; {describe_skipped(skipped)}" if skipped else ""
                raise ValueError(f"{display_path(path)}: no photos in this folder (hidden "
                                 f"names are skipped){why}")
            items.extend(found)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            items.extend(from_list(path))
        elif path.exists() or path.is_symlink():
            items.append(ImageItem(path.stem, str(path)))
        else:
            raise ValueError(f"{display_path(path)}: no such file or folder")
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
    if own and skipped:
        logging.getLogger(__name__).info(describe_skipped(skipped))  # silent library
    items = [storable_item(it) for it in items]
    check_unique(items)
    return items
