"""The model list: trained models that score photos out of the box (``mlsp models``,
``mlsp.list_models()``, ``mlsp.load("quality")``, ``mlsp predict quality PHOTOS``).

A model is a folder (``model.keras`` + ``model.json``, :mod:`mlsp.inference.model_format`; for a
shipped one also ``model.onnx``, the scorer with its backbone inside, ``zoo.json`` and
``MODEL_CARD.md``).  Two kinds of entries:

* shipped inside the package, under ``mlsp/data/models/<name>/`` (made by
  ``benchmarks/make_models.py``; they work offline);
* published elsewhere: a URL and the SHA-256 of a ``.zip`` of such a folder, downloaded
  once (only when asked) into the cache (``$MLSP_HOME/models``, default
  ``~/.cache/mlsp/models``) and refused on a hash mismatch.  Entries can be added without
  a release of mlsp: in ``$MLSP_HOME/models.json`` (default ``~/.cache/mlsp/models.json``:
  a list of objects with name, url, sha256 and optionally task, scale, backbone,
  figures) or with :func:`register`.

Importing this module imports neither Keras nor a backend.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MLSPError

__all__ = ["ModelEntry", "ZooError", "DEFAULT_MODEL", "PACKAGE_MODELS", "list_models",
           "entries", "get", "register", "resolve", "is_model_folder", "cache_dir",
           "reference_scores", "percentiles"]

#: The model ``mlsp predict PHOTOS`` uses when no model is named.
DEFAULT_MODEL = "quality"
PACKAGE_MODELS = Path(__file__).resolve().parent / "data" / "models"
MODEL_FILES = ("model.json", "model.keras")
_REGISTERED: dict = {}


class ZooError(MLSPError, ValueError):
    """An unknown model name, a failed download or a file whose hash is not the listed one."""


@dataclass(frozen=True)
class ModelEntry:
    """One listed model: where it lives (``folder`` in the package, or ``url`` +
    ``sha256``) and what it is for (task, scale, backbone, cross-validated figures)."""

    name: str
    task: str = ""
    scale: tuple = ()
    backbone: str = ""
    head: str = ""
    figures: dict = field(default_factory=dict)
    folder: Path | None = None
    url: str | None = None
    sha256: str | None = None

    @property
    def shipped(self) -> bool:
        return self.folder is not None

    def as_dict(self) -> dict:
        """The row of ``mlsp models --json`` / ``mlsp.list_models()``."""
        out = {"name": self.name, "task": self.task, "scale": list(self.scale),
               "backbone": self.backbone, "head": self.head, "figures": self.figures,
               "source": "package" if self.shipped else self.url,
               "default": self.name == DEFAULT_MODEL}
        if self.shipped:
            out["folder"] = str(self.folder)
            card = self.folder / "MODEL_CARD.md"
            out["card"] = str(card) if card.is_file() else None
        else:
            out["sha256"] = self.sha256
            out["cached"] = (cache_dir() / self.name / "model.json").is_file()
        return out


def cache_dir() -> Path:
    """Where downloaded models go: ``$MLSP_HOME/models``, else ``~/.cache/mlsp/models``."""
    home = os.environ.get("MLSP_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "mlsp") / "models"


def _shipped() -> list[ModelEntry]:
    out = []
    if not PACKAGE_MODELS.is_dir():
        return out
    folders = [p for p in PACKAGE_MODELS.iterdir() if (p / "zoo.json").is_file()]
    for folder in sorted(folders, key=lambda p: (p.name != DEFAULT_MODEL, p.name)):
        z = json.loads((folder / "zoo.json").read_text())
        head = z.get("head", "")
        fig = (z.get("figures") or {}).get(head, {})
        out.append(ModelEntry(z["name"], z.get("task", ""), tuple(z.get("scale") or ()),
                              z.get("backbone", ""), head,
                              {"data": z.get("data"), "n_photos": z.get("n_photos"),
                               "cv": z.get("cv"), "srcc": fig.get("srcc"),
                               "plcc": fig.get("plcc")}, folder=folder))
    return out


def _user_listed() -> list[ModelEntry]:
    path = cache_dir().parent / "models.json"
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())
        return [_remote(**row) for row in rows]
    except (ValueError, TypeError) as err:
        raise ZooError(f"{path}: not a list of models with name, url and sha256 ({err})") \
            from None


def _remote(name, url, sha256, task="", scale=(), backbone="", head="", figures=None):
    if not (isinstance(sha256, str) and len(sha256) == 64):
        raise ValueError(f"model {name!r}: sha256 must be 64 hex digits")
    return ModelEntry(str(name), task, tuple(scale), backbone, head, dict(figures or {}),
                      url=str(url), sha256=sha256.lower())


def register(name: str, url: str, sha256: str, **about) -> ModelEntry:
    """List a model published at ``url`` (a .zip of a model folder) with its SHA-256."""
    entry = _remote(name, url, sha256, **about)
    _REGISTERED[entry.name] = entry
    return entry


def entries() -> dict:
    """name -> :class:`ModelEntry`: shipped first, then the user's list, then registered."""
    out = {}
    for e in [*_shipped(), *_user_listed(), *_REGISTERED.values()]:
        out.setdefault(e.name, e)
    return out


def list_models() -> list[dict]:
    """Every listed model as a dict: name, task, scale, backbone, head, figures (the
    cross-validated SRCC / PLCC [mean, low, high] of the head shipped), source."""
    return [e.as_dict() for e in entries().values()]


def get(name: str) -> ModelEntry:
    known = entries()
    if name not in known:
        raise ZooError(f"{name}: no such model (listed: {', '.join(known) or 'none'}; "
                       f"`mlsp models` lists them) and no model folder of that name")
    return known[name]


def is_model_folder(path) -> bool:
    """A trained model's folder (model.json + model.keras) or its model.keras file."""
    p = Path(path)
    if p.is_file() and p.suffix == ".keras":
        return True
    return p.is_dir() and all((p / f).is_file() for f in MODEL_FILES)


def resolve(name_or_folder, download: bool = True) -> Path:
    """The folder of a model: a model folder as given, a shipped model's folder, or a
    published model's cached folder (downloaded and checked first, when ``download``)."""
    p = Path(name_or_folder)
    if is_model_folder(p):
        return p
    name = str(name_or_folder)
    if name not in entries() and p.exists():
        raise ZooError(f"{p}: not a model folder (it needs {' and '.join(MODEL_FILES)})")
    entry = get(name)
    if entry.shipped:
        return entry.folder
    return _fetch(entry, download)


def _fetch(entry: ModelEntry, download: bool) -> Path:
    folder = cache_dir() / entry.name
    if (folder / "model.json").is_file():
        return folder
    archive = folder.with_name(entry.name + ".zip")
    if not archive.is_file():
        if not download:
            raise ZooError(f"{entry.name}: not downloaded; fetch {entry.url} into {archive}")
        _download(entry, archive)
    digest = _sha256(archive)
    if digest != entry.sha256:
        bad = archive.with_name(archive.name + ".bad")
        os.replace(archive, bad)
        raise ZooError(f"{entry.url}: SHA-256 {digest[:16]}... is not the listed "
                       f"{entry.sha256[:16]}...; refused (kept as {bad})")
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(archive) as z:
        for member in z.namelist():  # nothing may land outside the model's folder
            if Path(member).is_absolute() or ".." in Path(member).parts:
                raise ZooError(f"{archive}: unsafe path {member!r} in the archive")
        z.extractall(tmp)
    inner = [p for p in tmp.rglob("model.json")]
    if not inner:
        raise ZooError(f"{archive}: no model.json inside")
    os.replace(inner[0].parent, folder)
    shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _download(entry: ModelEntry, archive: Path) -> None:
    import urllib.request

    archive.parent.mkdir(parents=True, exist_ok=True)
    part = archive.with_name(archive.name + ".partial")
    try:
        with urllib.request.urlopen(entry.url, timeout=30) as r, open(part, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except OSError as err:  # URLError, timeouts, refused connections: offline
        part.unlink(missing_ok=True)
        why = getattr(err, "reason", None) or err
        raise ZooError(f"{entry.name}: cannot download {entry.url} ({why}); offline, put "
                       f"that file at {archive}") from None
    os.replace(part, archive)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def reference_scores(folder):
    """The sorted out-of-fold scores of a model's training photos (zoo.json), or None."""
    path = Path(folder) / "zoo.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("reference_scores") or None


def percentiles(scores, reference) -> list:
    """Per score: the share (0-100) of the reference photos scored strictly lower."""
    import bisect

    ref = sorted(reference)
    return [None if s is None else 100.0 * bisect.bisect_left(ref, s) / len(ref)
            for s in scores]
