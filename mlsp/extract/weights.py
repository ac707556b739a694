"""Find the backbone weights a model's features came from (issue 12).

Scores of new photos are only the model's scores when their features are computed
with exactly the backbone weights the training store was extracted with.  A store
(and a model's sidecar, under ``features``) records the weights' name, SHA-256 and
the path they were read from; :func:`find_weights` turns that record back into a
local file, identified by its hash, not by its name:

1. an explicit ``weights`` (a file, a folder to search, ``bundled`` or ``imagenet``),
   refused when its hash differs (both hashes named);
2. the recorded path;
3. the model's folder;
4. ``$MLSP_WEIGHTS_DIR``;
5. the weights shipped with mlsp (``mlsp/data``);
6. Keras' cache (``$KERAS_HOME/models`` or ``~/.keras/models``), then, for
   ``imagenet``, Keras' download when online.

In folders, a file of the recorded name is tried first, then every other file;
any file with the recorded hash is accepted.  One function serves the Python API,
``mlsp predict``, evaluation on photos and ``mlsp export``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .backbones import (ResolvedWeights, WeightsUnavailableError, get_backbone, keras_cache_dir,
                        resolve_weights, sha256_file)

__all__ = ["find_weights", "WeightsNotFoundError", "WeightsMismatchError", "ENV_DIR"]

#: Environment variable naming a folder of backbone weights files.
ENV_DIR = "MLSP_WEIGHTS_DIR"
_WEIGHT_SUFFIXES = (".h5", ".keras", ".hdf5")
_hashes: dict = {}


class WeightsNotFoundError(WeightsUnavailableError, FileNotFoundError):
    """No file with the recorded SHA-256 in any of the places looked at."""


class WeightsMismatchError(WeightsUnavailableError, ValueError):
    """The weights given explicitly are not the ones the features came from."""


def _sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per (path, size, mtime) in a process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hashes:
        _hashes[key] = sha256_file(path)
    return _hashes[key]


def _folder_files(folder: Path, name: str) -> list[Path]:
    """The file called ``name`` first, then the other weights-like files of ``folder``."""
    first = [folder / name] if (folder / name).is_file() else []
    try:
        rest = sorted(p for p in folder.iterdir()
                      if p.is_file() and p.name != name and p.name.endswith(_WEIGHT_SUFFIXES))
    except OSError:
        rest = []
    return first + rest


def find_weights(recorded: dict, weights=None, model_dir=None) -> ResolvedWeights:
    """The local weights file whose SHA-256 is the recorded one, as ResolvedWeights.

    ``recorded``: a store's configuration or a sidecar's ``features`` (``backbone``,
    ``alpha``, ``weights``, ``weights_sha256``, optionally ``weights_path``).
    ``weights``: an explicit choice (path, folder, ``bundled``, ``imagenet``); checked
    against the recorded hash.  ``model_dir``: the trained model's folder.
    The result keeps the recorded name, so the features describe themselves as at
    extraction.  Raises WeightsMismatchError / WeightsNotFoundError (one line).
    """
    backbone = get_backbone(str(recorded["backbone"]))
    alpha = float(recorded["alpha"])
    name = str(recorded.get("weights") or "imagenet")
    want = str(recorded.get("weights_sha256") or "")
    if name.lower() in ("none", "random"):  # seeded random weights: rebuilt from the seed
        return ResolvedWeights("none", None, "")
    file_name = name.split(":", 1)[1] if name.startswith("bundled:") else name
    imagenet_name = backbone.imagenet_file(alpha)[0]

    def accept(path: Path) -> ResolvedWeights | None:
        if not path.is_file():
            return None
        if want:
            ok = _sha256(path) == want
        else:  # a record without a hash (none is written today): the name must agree
            ok = path.name in ({file_name, imagenet_name} if name == "imagenet" else {file_name})
        return ResolvedWeights(name, str(path), _sha256(path)) if ok else None

    if weights is not None and str(weights) != "":
        return _explicit(str(weights), backbone, alpha, name, file_name, want, accept)

    looked = []
    places = []  # (label, files to try)
    rec = recorded.get("weights_path")
    if rec:
        places.append((f"recorded path {rec}", [Path(rec)]))
    if model_dir:
        places.append((f"model folder {model_dir}", _folder_files(Path(model_dir), file_name)))
    env = os.environ.get(ENV_DIR)
    places.append((f"${ENV_DIR}={env}" if env else f"${ENV_DIR} (unset)",
                   _folder_files(Path(env).expanduser(), file_name) if env else []))
    from ..data import BUNDLED_WEIGHTS

    bundled = sorted(BUNDLED_WEIGHTS.values())
    places.append(("bundled " + ", ".join(p.name for p in bundled), bundled))
    cache = keras_cache_dir()
    places.append((f"Keras cache {cache}",
                   [cache / imagenet_name] + [p for p in _folder_files(cache, file_name)
                                              if p.name != imagenet_name]))
    for label, files in places:
        looked.append(label)
        for path in files:
            found = accept(path)
            if found:
                return found
    if name == "imagenet":  # last: Keras' own download, when online
        try:
            got = resolve_weights(backbone, alpha, "imagenet")
            found = accept(Path(got.path))
            if found:
                return found
            looked.append(f"Keras download ({got.path}, sha256 {got.sha256})")
        except WeightsUnavailableError:
            looked.append("Keras download (offline)")
    raise WeightsNotFoundError(
        f"no backbone weights file with sha256 {want or '(not recorded)'} (the {name!r} the "
        f"model's features came from); looked at: {'; '.join(looked)}; fix: pass --weights PATH "
        f"(weights=PATH in Python) or put the file in ${ENV_DIR}")


def _explicit(weights, backbone, alpha, name, file_name, want, accept) -> ResolvedWeights:
    path = Path(weights).expanduser()
    if path.is_dir():
        for p in _folder_files(path, file_name):
            found = accept(p)
            if found:
                return found
        raise WeightsNotFoundError(
            f"{path}: no weights file with sha256 {want} (the {name!r} the model's features "
            f"came from) in this folder; fix: pass the file itself, or omit --weights to search "
            f"the recorded path, ${ENV_DIR}, the bundled file and Keras' cache")
    try:  # a file, bundled or imagenet
        got = resolve_weights(backbone, alpha, weights)
    except WeightsUnavailableError as err:
        raise WeightsNotFoundError(str(err)) from None
    if got.path is None or (want and got.sha256 != want):
        raise WeightsMismatchError(
            f"{got.path or weights}: sha256 {got.sha256 or '(random weights)'} differs from "
            f"sha256 {want} of the weights the model's features came from ({name!r}); fix: pass "
            f"the file with that hash, or omit --weights to search the recorded path, "
            f"${ENV_DIR}, the bundled file and Keras' cache")
    return ResolvedWeights(name, got.path, got.sha256)
