"""Subjective labels (MOS, rating distributions, splits) and their loaders.

Hosu et al. 2019 (MLSP), sec. 3.3: the AVA test set is the fixed 20,000-image
list used in the literature; "the remaining [...] images of AVA are further
randomly split into a training (95%) and validation set (5%)".
:meth:`Labels.with_split` does exactly that.
"""
from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..files import LIST_MAX_BYTES, read_regular
from .scales import check_same_scale

SPLITS = ("train", "val", "test")
#: Fewest training images a split may leave (a head and SRCC need at least two).
MIN_TRAIN = 2
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}


@dataclass
class Labels:
    """Per-image labels, row-aligned: ``ids[i]`` has ``mos[i]``, ``distribution[i]``, ...

    ``distribution`` (N, K) rows sum to 1 (bin k is score k+1 for AVA);
    ``votes`` is the number of ratings per image; ``split`` holds
    'train' / 'val' / 'test'; ``score_range`` is the rating scale (or, when
    ``range_observed`` is True, only the min/max of the observed MOS).
    """

    ids: list[str]
    mos: np.ndarray
    distribution: np.ndarray | None = None
    votes: np.ndarray | None = None
    split: np.ndarray | None = None
    score_range: tuple[float, float] = (1.0, 10.0)
    tags: np.ndarray | None = None
    source: str = ""
    range_observed: bool = False

    def __post_init__(self):
        self.ids = [str(i) for i in self.ids]
        self.mos = np.asarray(self.mos, dtype=np.float64).reshape(-1)
        n = len(self.ids)
        if self.mos.shape[0] != n:
            raise ValueError(f"labels: {n} ids but {self.mos.shape[0]} MOS values")
        if self.distribution is not None:
            self.distribution = np.asarray(self.distribution, dtype=np.float64)
            if self.distribution.ndim != 2 or self.distribution.shape[0] != n:
                raise ValueError(f"labels: distribution shape {self.distribution.shape}, "
                                 f"expected ({n}, K)")
        if self.votes is not None:
            self.votes = np.asarray(self.votes).reshape(-1)
            if self.votes.shape[0] != n:
                raise ValueError(f"labels: {self.votes.shape[0]} vote counts for {n} ids")
        if self.split is not None:
            self.split = np.asarray(self.split, dtype=object).reshape(-1)
            if self.split.shape[0] != n:
                raise ValueError(f"labels: {self.split.shape[0]} split values for {n} ids")
            bad = sorted({str(s) for s in self.split} - set(SPLITS))
            if bad:
                raise ValueError(f"labels: unknown split values {bad} (use {SPLITS})")
        if self.tags is not None:
            self.tags = np.asarray(self.tags, dtype=np.int64)
            if self.tags.shape[0] != n:
                raise ValueError(f"labels: {self.tags.shape[0]} tag rows for {n} ids")
        self.score_range = (float(self.score_range[0]), float(self.score_range[1]))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_bins(self) -> int | None:
        return None if self.distribution is None else int(self.distribution.shape[1])

    def split_mask(self, name: str) -> np.ndarray:
        """Boolean mask of the rows in split ``name`` (all False when there is no split)."""
        if self.split is None:
            return np.zeros(len(self), dtype=bool)
        return self.split == name

    def test_mask(self, test_ids=None) -> np.ndarray:
        """The test rows: ids in ``test_ids`` when given, else the split's 'test' rows."""
        if test_ids is None:
            return self.split_mask("test")
        return np.isin(np.asarray(self.ids, dtype=object),
                       np.asarray([str(t) for t in test_ids], dtype=object))

    def subset(self, mask_or_indices) -> "Labels":
        """The rows picked by a boolean mask (length N) or an integer index array."""
        sel = np.asarray(mask_or_indices)
        if sel.dtype == bool:
            if sel.shape != (len(self),):
                raise ValueError(f"labels: mask of shape {sel.shape} for {len(self)} rows")
            sel = np.flatnonzero(sel)
        elif sel.size == 0:
            sel = sel.astype(np.int64)
        elif not np.issubdtype(sel.dtype, np.integer):
            raise ValueError("labels: subset takes a boolean mask or integer indices")
        sel = sel.reshape(-1)

        def pick(a):
            return None if a is None else a[sel]

        return replace(self, ids=[self.ids[i] for i in sel.tolist()], mos=self.mos[sel],
                       distribution=pick(self.distribution), votes=pick(self.votes),
                       split=pick(self.split), tags=pick(self.tags))

    def with_split(self, val_fraction: float = 0.05, seed: int = 0, test_ids=None) -> "Labels":
        """A copy with a train / val / test split (MLSP sec. 3.3: 95% train, 5% val).

        Rows whose id is in ``test_ids`` become 'test'.  With ``test_ids=None``
        the test rows of an existing split are kept (and if that split already
        has a 'val' part it is returned unchanged); without a split there is no
        test part.  The remaining rows are split at random into
        ``round(val_fraction * n_rest)`` 'val' rows and 'train' rows, with
        ``numpy.random.default_rng(seed)``.  The rows are sorted by id before
        the draw, so the split depends on the ids and seed, not on the row order.
        """
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        n = len(self)
        ids = np.array(self.ids, dtype=object)
        if test_ids is None and self.split is not None and np.any(self.split == "val"):
            return replace(self, split=self.split.copy())
        test = self.test_mask(test_ids)
        rest = np.flatnonzero(~test)
        rest = rest[np.argsort(ids[rest].astype(str), kind="stable")]
        n_val = int(round(val_fraction * rest.size))
        if val_fraction > 0:  # a split for training: refuse what cannot train or validate
            self._check_trainable(rest, n_val, val_fraction)
        rng = np.random.default_rng(seed)
        val = rng.permutation(rest)[:n_val]
        split = np.full(n, "train", dtype=object)
        split[test] = "test"
        split[val] = "val"
        return replace(self, split=split)

    def _check_trainable(self, rest: np.ndarray, n_val: int, val_fraction: float) -> None:
        """At least MIN_TRAIN training and one validation image, and scores that vary
        (SRCC, the rank correlation every result is judged by, is undefined otherwise)."""
        where = self.source or "labels"
        if n_val < 1 or rest.size - n_val < MIN_TRAIN:
            need = next(n for n in range(1, 10**6)
                        if round(val_fraction * n) >= 1 and n - round(val_fraction * n) >= MIN_TRAIN)
            raise ValueError(f"{where}: {rest.size} labelled images (outside the test part) are "
                             f"too few to split {1 - val_fraction:.0%} train / {val_fraction:.0%} "
                             f"validation; at least {need} are needed")
        scores = self.mos[rest]
        if scores.size and np.ptp(scores) == 0:
            raise ValueError(f"{where}: all {scores.size} training images have the same score "
                             f"{scores[0]:g}: nothing to learn, and SRCC cannot be computed")

    def summary(self) -> str:
        parts = [f"{len(self)} images from {self.source or '?'}",
                 f"MOS {self.mos.min():.3f}..{self.mos.max():.3f}" if len(self) else "no MOS",
                 f"scale {self.score_range[0]:g}..{self.score_range[1]:g}"
                 + (" (observed)" if self.range_observed else "")]
        if self.distribution is not None:
            parts.append(f"{self.n_bins}-bin distributions")
        if self.split is not None:
            parts.append(", ".join(f"{s} {int(np.sum(self.split == s))}" for s in SPLITS))
        return "; ".join(parts)


# -- AVA ------------------------------------------------------------------------------------
def load_ava(ava_txt) -> Labels:
    """Read AVA.txt (Murray et al. 2012): ``index image_id n1..n10 tag1 tag2 challenge_id``.

    distribution = counts / total, mos = sum_k k p_k, votes = total,
    score_range (1, 10).  Rows with 0 votes are dropped (with a warning).
    """
    path = Path(ava_txt)
    try:
        data = np.loadtxt(path, dtype=np.int64, ndmin=2, comments="#")
    except ValueError as err:
        raise ValueError(f"{path}: not an AVA.txt file (15 integer fields a line): "
                         f"{str(err).splitlines()[0]}") from None
    if data.size == 0:
        data = data.reshape(0, 15)
    if data.shape[1] != 15:
        raise ValueError(f"{path}: AVA.txt lines have 15 fields, found {data.shape[1]}")
    counts = data[:, 2:12].astype(np.float64)
    total = counts.sum(axis=1)
    if np.any(counts < 0):
        line = int(np.flatnonzero(np.any(counts < 0, axis=1))[0]) + 1
        raise ValueError(f"{path}: data line {line}: negative vote count")
    keep = total > 0
    if not np.all(keep):
        warnings.warn(f"{path}: dropped {int((~keep).sum())} images with 0 votes", stacklevel=2)
        data, counts, total = data[keep], counts[keep], total[keep]
    ids = [str(v) for v in data[:, 1].tolist()]
    if len(set(ids)) != len(ids):
        seen, dup = set(), None
        for i in ids:
            if i in seen:
                dup = i
                break
            seen.add(i)
        raise ValueError(f"{path}: duplicate image id {dup}")
    dist = counts / total[:, None]
    mos = dist @ np.arange(1, 11, dtype=np.float64)
    return Labels(ids=ids, mos=mos, distribution=dist, votes=total.astype(np.int64), split=None,
                  score_range=(1.0, 10.0), tags=data[:, 12:14].copy(), source=f"ava:{path}")


def read_id_list(path) -> list[str]:
    """Ids, one a line (e.g. AVA ``generic_test.jpgl``).

    Blank and '#' lines are skipped; a directory part and an image extension
    (.jpg, .png, ...) are stripped, so ``images/953619.jpg`` reads as ``953619``.
    """
    out = []
    for line in _read_regular(path).decode("utf-8").splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            out.append(_IMAGE_EXT.sub("", s.replace("\\", "/").rsplit("/", 1)[-1]))
    return out


_IMAGE_EXT = re.compile(r"\.(jpe?g|png|bmp|tiff?|webp|gif)$", re.IGNORECASE)


def _stem(value: str) -> str:
    return Path(value.replace("\\", "/")).stem


# -- generic CSV ----------------------------------------------------------------------------
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")


def read_text(path) -> str:
    """A label file's text: UTF-8 (a BOM is dropped); a file that is not UTF-8 is read
    as Latin-1 (every byte is a character there), with a warning naming the first line
    that is not UTF-8."""
    data = _read_regular(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        warnings.warn(f"{path}: not UTF-8 (line {line}, byte 0x{data[err.start]:02x}); "
                      f"read as Latin-1", stacklevel=3)
        return data.decode("latin-1")


_DIST_RE = re.compile(r"^(p|c|vote_|votes_|count_|n)(\d+)$", re.IGNORECASE)


def _pick(header, given, candidates, what, path):
    if given is not None:
        if given not in header:
            raise ValueError(f"{path}: no {what} column {given!r} (columns: {', '.join(header)})")
        return given
    for c in candidates:
        if c in header:
            return c
    lower = {h.lower(): h for h in header}
    for c in candidates:
        if c.lower() in lower:
            return lower[c.lower()]
    return None


def _auto_dist_cols(header):
    groups: dict[str, list[tuple[int, str]]] = {}
    for h in header:
        m = _DIST_RE.match(h.strip())
        if m:
            groups.setdefault(m.group(1).lower(), []).append((int(m.group(2)), h))
    for prefix in ("p", "c", "vote_", "votes_", "count_", "n"):
        cols = sorted(groups.get(prefix, []))
        nums = [k for k, _ in cols]
        if len(cols) >= 2 and (nums == list(range(1, len(nums) + 1))
                               or nums == list(range(0, len(nums)))):
            return [h for _, h in cols], prefix
    return None, None


@dataclass
class _Columns:
    """The header names :func:`load_csv` reads, chosen once before any row is parsed."""

    id: str
    use_stem: bool  # an image/path column gives ids as file stems
    mos: str | None
    dist: list[str] | None
    prefix: str | None  # the auto-detected distribution prefix; None when given or absent
    split: str | None


def _csv_rows(text: str, path: Path):
    """Separator (the commonest of , ; tab on the first line), header and non-blank rows
    with their line numbers, so errors can name the line."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delim = max(",;\t", key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValueError(f"{path}: empty file") from None
    rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
    return delim, header, rows


def _number(v: str, delim: str) -> float:
    """A float; "3,5" is a decimal comma in a file whose columns the comma does not
    separate (";" or tab)."""
    if delim != "," and _DECIMAL_COMMA.match(v):
        v = v.replace(",", ".")
    return float(v)


def _csv_columns(header, path, id_col, mos_col, dist_cols, split_col) -> _Columns:
    """The id, MOS, distribution and split columns: given names must exist, else the
    usual names are looked up; an id and a MOS or distribution are required."""
    idc = _pick(header, id_col, ("id", "image_id", "image", "image_name", "path"), "id", path)
    if idc is None:
        raise ValueError(f"{path}: no id column (id, image, image_name or path); "
                         f"columns: {', '.join(header)}")
    use_stem = idc.lower() in ("image", "image_name", "path") and id_col is None
    mc = _pick(header, mos_col, ("mos", "MOS", "score"), "MOS", path)
    prefix = None
    if dist_cols is not None:
        dist_cols = list(dist_cols)
        for c in dist_cols:
            if c not in header:
                raise ValueError(f"{path}: no distribution column {c!r}")
    else:
        dist_cols, prefix = _auto_dist_cols(header)
    if mc is None and not dist_cols:
        raise ValueError(f"{path}: no MOS column (mos, MOS, score) and no distribution columns")
    sc = _pick(header, split_col, ("split", "set", "subset"), "split", path)
    return _Columns(idc, use_stem, mc, dist_cols, prefix, sc)


def _csv_values(rows, header, cols: _Columns, delim, path):
    """Per-row ids, MOS, distribution counts and splits; the first bad value raises a
    ValueError naming its line."""
    col = {h: i for i, h in enumerate(header)}
    ids, mos, dist, split, seen = [], [], [], [], {}
    for line, r in rows:
        if len(r) < len(header):
            r = r + [""] * (len(header) - len(r))
        raw = r[col[cols.id]].strip()
        iid = _stem(raw) if cols.use_stem and raw else raw
        if not iid:
            raise ValueError(f"{path}: line {line}: missing id")
        if iid in seen:
            raise ValueError(f"{path}: line {line}: duplicate id {iid!r} "
                             f"(first on line {seen[iid]})")
        seen[iid] = line
        ids.append(iid)
        if cols.dist:
            dist.append(_row_distribution(r, col, cols.dist, delim, path, line))
        if cols.mos is not None:
            mos.append(_row_mos(r[col[cols.mos]].strip(), cols.mos, delim, path, line))
        if cols.split is not None:
            v = r[col[cols.split]].strip().lower()
            if v not in _SPLIT_ALIASES:
                raise ValueError(f"{path}: line {line}: split value {r[col[cols.split]]!r} "
                                 f"(use train, val/validation or test)")
            split.append(_SPLIT_ALIASES[v])
    return ids, mos, dist, split


def _row_distribution(r, col, dist_cols, delim, path, line) -> list[float]:
    """One row's distribution counts: numeric, finite, non-negative, not all zero."""
    try:
        d = [_number(r[col[c]], delim) for c in dist_cols]
    except ValueError:
        raise ValueError(f"{path}: line {line}: non-numeric distribution value in "
                         f"{[r[col[c]] for c in dist_cols]}") from None
    if not all(np.isfinite(d)) or min(d) < 0 or sum(d) <= 0:
        raise ValueError(f"{path}: line {line}: distribution must be finite, "
                         f"non-negative and not all zero")
    return d


def _row_mos(v, mc, delim, path, line) -> float:
    """One row's MOS: numeric and finite."""
    try:
        m = _number(v, delim)
    except ValueError:
        raise ValueError(f"{path}: line {line}: non-numeric MOS {v!r} "
                         f"in column {mc!r}") from None
    if not np.isfinite(m):
        raise ValueError(f"{path}: line {line}: MOS {v!r} is not finite")
    return m


def _first_bin(cols: _Columns) -> int:
    """The score of the first distribution bin: 0 for auto-detected ``p0..`` style
    columns, else 1."""
    return 0 if cols.prefix is not None and _DIST_RE.match(cols.dist[0]).group(2) == "0" else 1


def _csv_labels(path, cols: _Columns, ids, mos, dist, split, score_range) -> Labels:
    """Normalised distribution (and votes for count columns), MOS (given, or the
    distribution's mean) and the score range (given, implied by the bins, or observed)."""
    distribution = votes = None
    if cols.dist:
        counts = np.array(dist, dtype=np.float64).reshape(len(ids), len(cols.dist))
        total = counts.sum(axis=1)
        distribution = counts / total[:, None] if len(ids) else counts
        if cols.prefix not in (None, "p"):
            votes = total
    if cols.mos is not None:
        mos_arr = np.array(mos, dtype=np.float64)
        if distribution is not None and len(ids) and cols.prefix is not None:
            first = _first_bin(cols)  # bins named: their scale is known
            check_same_scale(path, cols.dist, np.arange(first, first + len(cols.dist),
                                                        dtype=np.float64), mos_arr, distribution)
    else:
        first = _first_bin(cols)
        mos_arr = distribution @ np.arange(first, first + distribution.shape[1], dtype=np.float64)
    observed = score_range is None
    if observed and distribution is not None and len(ids):
        # rating bins k = first..first+K-1 whose expectation is the MOS: that is the scale
        first = _first_bin(cols)
        k = np.arange(first, first + distribution.shape[1], dtype=np.float64)
        if np.allclose(distribution @ k, mos_arr, atol=0.05):
            score_range, observed = (float(k[0]), float(k[-1])), False
    if observed:
        score_range = (float(mos_arr.min()), float(mos_arr.max())) if len(ids) else (0.0, 0.0)
    return Labels(ids=ids, mos=mos_arr, distribution=distribution, votes=votes,
                  split=np.array(split, dtype=object) if cols.split is not None else None,
                  score_range=tuple(score_range), tags=None, source=f"csv:{path}",
                  range_observed=observed)


def load_csv(path, id_col=None, mos_col=None, dist_cols=None, split_col=None,
             score_range=None) -> Labels:
    """Read a generic CSV of labels (one image a row).

    id: ``id_col`` or ``id`` / ``image`` / ``image_name`` / ``path`` (a path
    gives its file stem).  MOS: ``mos_col`` or ``mos`` / ``MOS`` / ``score``;
    without one, the mean of the distribution (bin k scores k).  Distribution:
    ``dist_cols`` or columns named ``p1..pK`` / ``c1..cK`` / ``vote_1..``
    (any K), normalised per row; count-like columns (not ``p``) also give
    ``votes``.  Split: ``split_col`` or ``split`` / ``set``.  ``score_range``:
    given; else, when distribution bins 1..K (or 0..K-1) have the MOS as their
    expectation, the bins' range (1, K); else the observed (min, max) MOS with
    ``range_observed=True``.
    A bad row raises a one-line ValueError naming file, line and cause.
    """
    path = Path(path)
    text = read_text(path)  # called here: its warning's stacklevel=3 names our caller
    delim, header, rows = _csv_rows(text, path)
    cols = _csv_columns(header, path, id_col, mos_col, dist_cols, split_col)
    ids, mos, dist, split = _csv_values(rows, header, cols, delim, path)
    return _csv_labels(path, cols, ids, mos, dist, split, score_range)


def _looks_like_ava(path: Path) -> bool:
    for raw in _read_regular(path).splitlines():
        s = raw.decode("utf-8", "replace").strip()
        if not s or s.startswith("#"):
            continue
        fields = s.split()
        return len(fields) == 15 and all(re.fullmatch(r"-?\d+", x) for x in fields)
    return False


def _read_regular(path) -> bytes:
    """A label or id-list file's bytes: a regular file only (:func:`mlsp.files.read_regular`)."""
    return read_regular(path, LIST_MAX_BYTES, "label file")


def load_labels(path, **kw) -> Labels:
    """Load AVA.txt (first data line: 15 whitespace-separated integers) or a CSV."""
    path = Path(path)
    if _looks_like_ava(path):
        if kw:
            raise TypeError(f"{path}: AVA.txt takes no options, got {sorted(kw)}")
        return load_ava(path)
    return load_csv(path, **kw)
