"""A trained head on disk: ``model.keras`` (the test-time Keras model) and ``model.json``
(the sidecar: head, output, target scaling, levels, and the store settings that define
the features it reads), and the check that a store holds those features.

The sidecar's ``features`` are the store's identity settings (``IDENTITY_KEYS``); scoring
new images rebuilds the extraction options from them
(:func:`mlsp.extract.featurizer.options_from_features`, the inverse of
:func:`mlsp.extract.extractor.store_config`), so an image is scored with
exactly the backbone, weights and augmentations the head was trained on (MLSP sec. 3.1).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ..errors import ModelFileError
from ..feature_kinds import KIND_POOLING
from ..files import LIST_MAX_BYTES, read_regular
from ..stores.features import FeatureStore, StoreError, config_mismatch
from .model_check import FINGERPRINT_KEY, check_belongs, check_sidecar, fingerprint

__all__ = ["MODEL_FILE", "SIDECAR", "SIDECAR_FORMAT", "make_sidecar", "read_model",
           "write_model", "check_compatible", "model_folder"]

MODEL_FILE, SIDECAR = "model.keras", "model.json"
SIDECAR_FORMAT = "mlsp-head"


def make_sidecar(*, name, head, output, n_bins, bin_scores, pooling, wide_size, levels,
                 level_channels, store_config, store_path, mean, std, score_range, threshold,
                 train: dict) -> dict:
    """The sidecar of a trained head (format ``mlsp-head`` version 1).  ``features``: the
    store's identity settings (``IDENTITY_KEYS``) plus the weights' name to find them;
    ``target``: the MOS scaling to undo; ``train``: the training record."""
    import keras

    from .. import __version__
    from ..stores.features import IDENTITY_KEYS

    return {
        "format": SIDECAR_FORMAT, "version": 1, "name": name,
        "head": head, "output": output, "n_bins": n_bins,
        "bin_scores": None if bin_scores is None else [float(v) for v in bin_scores],
        "pooling": pooling, "wide_size": wide_size if pooling != "narrow" else 0,
        "levels": list(levels), "level_channels": [int(c) for c in level_channels],
        "channels": int(sum(level_channels)),
        "features": {"weights": store_config.get("weights"),
                     "weights_path": store_config.get("weights_path"),
                     **{k: store_config.get(k) for k in IDENTITY_KEYS}},
        "store": None if store_path is None else str(Path(store_path).resolve()),
        "target": {"mean": mean, "std": std, "standardized": output == "mos"},
        "score_range": list(score_range), "accuracy_threshold": threshold,
        "train": train,
        "mlsp_version": __version__, "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
    }


def model_folder(path) -> tuple:
    """(folder, model file) of a training output folder or its ``model.keras``."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return folder, (path if path.is_file() else folder / MODEL_FILE)


def read_model(path):
    """``(keras model, sidecar dict)`` from a folder or its ``model.keras``.  A missing
    file is FileNotFoundError; a damaged one ModelFileError naming the file and the cause."""
    import keras

    folder, model_file = model_folder(path)
    side_file = folder / SIDECAR
    if not model_file.is_file() or not side_file.is_file():
        raise FileNotFoundError(f"{path}: no trained model here (need {MODEL_FILE} and {SIDECAR})")
    try:
        sidecar = json.loads(read_regular(side_file, LIST_MAX_BYTES, "model sidecar"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"cannot read {side_file}: {_first_line(err)}") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        raise ModelFileError(f"{side_file}: not an mlsp model sidecar")
    check_sidecar(sidecar, side_file)
    # every head is built from serialisable layers / ops (multi_3fc slices with GetItem,
    # no Lambda), so models always load in safe mode: no code from the file is run.
    from ..heads import mnet  # noqa: F401  (registers ChannelSlice and the pooling layers)
    from ..layers import standardize  # noqa: F401  (registers Standardize)

    try:  # a .keras file is a zip: a truncated / damaged one is named as such (Keras
        with zipfile.ZipFile(model_file) as z:  # itself reports it as "File not found")
            bad = z.testzip()
        if bad is not None:
            raise zipfile.BadZipFile(f"damaged member {bad!r} (CRC mismatch)")
        model = keras.saving.load_model(model_file, compile=False, safe_mode=True)
    except Exception as err:  # a damaged zip, a truncated file, an unknown layer
        raise ModelFileError(f"cannot read {model_file}: {_first_line(_root(err))}") from None
    check_belongs(model, sidecar, model_file, side_file)
    return model, sidecar


def _root(err):
    """The innermost cause of a chained exception (Keras wraps the real one)."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return err


def _first_line(err) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def write_model(folder, model, sidecar) -> list:
    """Write ``model.keras`` and ``model.json`` into ``folder`` (made if needed)."""
    from ..evaluation.reports import write_json

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    sidecar[FINGERPRINT_KEY] = fingerprint(model)  # ties model.keras to this model.json
    model.save(out / MODEL_FILE)
    write_json(out / SIDECAR, sidecar)
    return [out / MODEL_FILE, out / SIDECAR]


def _store_facts(store):
    """(name, config, {level: channels} or None, has wide) of a store, path or config."""
    if isinstance(store, dict):
        return "features", store, None, None
    own = not isinstance(store, FeatureStore)
    fs = FeatureStore.open(store) if own else store
    try:
        return str(fs.path), fs.config, {lv.name: lv.channels for lv in fs.levels}, fs.has("wide")
    finally:
        if own:
            fs.close()


def check_compatible(sidecar: dict, store) -> None:
    """Raise StoreError (one line, naming the store and the setting) when ``store``'s
    features are not the ones the model reads.  ``store``: a FeatureStore, a path, or a
    plain configuration dict (e.g. of an in-memory extraction).

    What is compared is what the model needs: extra pooling kinds, Corner Grid rows and,
    for a head on narrow features, the wide grid size do not change the features it reads.
    """
    name, config, levels, has_wide = _store_facts(store)
    wanted = sidecar["features"]
    kind = sidecar.get("pooling", "narrow")
    relaxed = {"augmentation_mode", "augmentations", "pooling_kinds"}
    if kind == "narrow":
        relaxed.add("pool_wide")
    diffs = []
    for line in config_mismatch(config, wanted):
        key = line.split(":", 1)[0]
        if key not in relaxed:
            diffs.append(f"{key}: store has {config.get(key)!r}, model was trained on "
                         f"{wanted.get(key)!r}")

    def plain(names):
        return [n for n in (names or []) if not str(n).endswith("+grid")]

    if wanted.get("augmentations") and plain(config.get("augmentations")) != plain(
            wanted.get("augmentations")):
        diffs.append(f"augmentations: store has {plain(config.get('augmentations'))}, model was "
                     f"trained on {plain(wanted.get('augmentations'))}")
    kinds = set(config.get("pooling_kinds") or ["area"])
    lacking = [k for k in KIND_POOLING.get(kind, ()) if k not in kinds]
    if lacking:  # e.g. wide_foreback needs both ForePool and BackPool
        diffs.append(f"pooling: store has no {kind} features (pooling kinds {sorted(kinds)}), "
                     f"model needs them")
    if levels is not None:
        for lv, ch in zip(sidecar["levels"], sidecar["level_channels"]):
            if levels.get(lv) != ch:
                diffs.append(f"level {lv}: store has {levels.get(lv)} channels, model expects {ch}")
                break
        if kind == "wide" and not has_wide:
            diffs.append("pooling: store has no wide features, model needs them")
    if diffs:
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        raise StoreError(f"{name}: not compatible with model '{sidecar.get('name', '?')}': "
                         f"{diffs[0]}{more}")
