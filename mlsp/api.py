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

__all__ = ["extract", "train", "cross_validate", "load", "list_models", "evaluate",
           "collect_images"]


def train(store, labels, head: str = "auto", *, folds: int = 0, seeds=None,
          progress: bool = False, verbose: bool = False, **options):
    """Train ``head`` (one of ``mlsp.HEADS``, or ``"auto"``: ridge or Single-3FC, whichever
    wins a cross-validation on the training images, :mod:`mlsp.training.selection`) on a
    store's features for ``labels`` (a file
    or :class:`mlsp.labels.Labels`), in memory: nothing is written.  ``options``: those of
    :class:`mlsp.training.config.TrainConfig` (epochs, lr, batch_size, levels, output,
    features, ...).  Returns a :class:`mlsp.inference.trained_head.TrainedHead`; its ``training``
    holds the history, metrics per split and every image's prediction.

    ``folds=K`` (K >= 2): :func:`cross_validate` instead, returning the ensemble of the K
    fold models of the first seed (what ``mlsp train --folds K`` saves); its ``training``
    is the :class:`~mlsp.training.crossval.CVResult`."""
    if folds:
        return cross_validate(store, labels, head, folds=folds,
                              seeds=1 if seeds is None else seeds, progress=progress,
                              **options).trained
    from .training.trainer import train as run

    return run(store, labels, head=head, progress=progress, verbose=verbose, **options).trained


def cross_validate(store, labels, head: str = "auto", *, folds: int = 5, seeds=(0,),
                   progress: bool = False, **options):
    """K-fold cross-validation of ``head``, repeated over ``seeds`` (a count S: the seeds
    ``seed``, ..., ``seed`` + S - 1, as ``mlsp train --seed --seeds``; ``seed`` defaults
    to 0), on the labelled images of ``store`` (:mod:`mlsp.training.crossval`).

    Returns a :class:`~mlsp.training.crossval.CVResult`: ``rows`` (per-fold metrics of
    the head, ridge and constant references), ``summary()`` (mean and 95% interval of each
    metric), ``oof`` (out-of-fold predictions per seed), ``held_out`` (a given test part)
    and ``trained``: the fold ensemble as a :class:`~mlsp.inference.trained_head.TrainedHead`
    (``save``, ``predict``, ``export``).  ``options``: ``val_fraction``, ``test_ids`` and
    those of :class:`mlsp.training.config.TrainConfig`."""
    from .errors import OptionError
    from .inference.trained_head import TrainedHead
    from .options import seed_list
    from .training.crossval import cross_validate as run

    if int(folds) < 2:
        raise OptionError(f"folds must be at least 2, got {folds!r}")
    seeds = seed_list(seeds, options.pop("seed", 0))  # the seeds replace the one seed
    result = run(store, labels, folds=int(folds), seeds=seeds, progress=progress, head=head,
                 **options)
    result.trained = TrainedHead(*result.ensemble())
    result.trained.training = result
    return result


def load(path):
    """A trained head from its folder (``model.keras`` + ``model.json``), or a listed
    model by name (``mlsp.load("quality")``; ``mlsp.list_models()``)."""
    from .inference.trained_head import TrainedHead
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
    from .inference.trained_head import evaluate_trained

    return evaluate_trained(model, store, labels, out_dir=out_dir, split=split, progress=False)
