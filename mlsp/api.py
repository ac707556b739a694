"""The public Python API (``import mlsp``): extract -> store -> train -> a trained head with
save / load / predict / evaluate.

    import mlsp
    store = mlsp.extract("photos/", "photos.h5", backbone="mobilenet_v2", alpha=0.35,
                         weights="bundled")
    head = mlsp.train(store, "labels.csv", head="single_3fc")   # in memory; nothing written
    head.save("model/")
    rows = mlsp.load("model/").predict(["new.jpg"])             # score (+ distribution)

Nothing here prints unless ``progress=True``; bad input raises an exception whose
message is one line naming the file or option (:mod:`mlsp.errors`, StoreError, ...).
"""
from __future__ import annotations

from .extract.run import extract
from .images.sources import collect_items as collect_images

__all__ = ["extract", "train", "load", "list_models", "evaluate", "collect_images"]


def train(store, labels, head: str = "single_3fc", *, progress: bool = False,
          verbose: bool = False, **options):
    """Train ``head`` (one of ``mlsp.HEADS``) on a store's features for ``labels`` (a file
    or :class:`mlsp.labels.Labels`), in memory: nothing is written.  ``options``: those of
    :class:`mlsp.training.config.TrainConfig` (epochs, lr, batch_size, levels, output,
    features, ...).  Returns a :class:`mlsp.trained_head.TrainedHead`; its ``training``
    holds the history, metrics per split and every image's prediction."""
    from .training.trainer import train as run

    return run(store, labels, head=head, progress=progress, verbose=verbose, **options).trained


def load(path):
    """A trained head from its folder (``model.keras`` + ``model.json``), or a listed
    model by name (``mlsp.load("quality")``; ``mlsp.list_models()``)."""
    from .trained_head import TrainedHead
    from .zoo import resolve

    return TrainedHead.load(resolve(path))


def list_models() -> list:
    """The models that score photos out of the box: name, task, scale, backbone, head,
    cross-validated figures, source (:mod:`mlsp.zoo`)."""
    from .zoo import list_models as listed

    return listed()


def evaluate(model, store, labels, split: str | None = None, out_dir=None) -> dict:
    """Metrics of a trained head (object or folder) on the labelled images of ``store``
    (all, or one ``split``); with ``out_dir`` also evaluation.json, predictions.csv and
    scatter.png there.  Returns ``{"metrics": {...}, "alignment": ..., ...}``."""
    from .trained_head import evaluate_trained

    return evaluate_trained(model, store, labels, out_dir=out_dir, split=split, progress=False)
