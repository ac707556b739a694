"""``--head auto``: choose the model on the user's own data, by nested cross-validation.

Which head wins depends on how many rated photos there are: on OASIS / LIVE Challenge
features a ridge regression beats the Single-3FC head below a few hundred training photos
and loses to it from about 700 (README, "Which model does mlsp train save?").  So the
default does not guess: it cross-validates every candidate on K folds of the *training
part only* (the test part is never passed to a fit), all candidates on the same folds, and
keeps the one with the highest mean inner-fold SRCC, refit on the whole training part.

Tie rule: candidates are tried in order (ridge first); a later one wins only when its mean
inner SRCC is strictly higher.  Ridge is first because it is cheaper and because the goal
is never to fall below it.  The margin reported is the winner's paired difference to the
runner-up over the same inner folds, with the corrected repeated k-fold interval
(Nadeau and Bengio 2003, on the Fisher-z scale for SRCC: :mod:`mlsp.evaluation.intervals`).

K = 5 inner folds: every inner fit sees 80% of the training part, so the inner comparison
is made at nearly the size the final model is trained at (the head's advantage grows with
size; with K = 3 the inner fits would see 67% and lean towards ridge near the crossover).
The cost is K fits of each candidate plus the refit: about 6x one Single-3FC fit.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..errors import OptionError
from ..heads.registry import AUTO_HEAD, SELECTION_CANDIDATES

__all__ = ["Selection", "select_model", "train_selected", "SELECTION_FOLDS",
           "SELECTION_CANDIDATES", "AUTO_HEAD"]

#: Inner folds of the selection (see the module docstring for why 5).
SELECTION_FOLDS = 5


@dataclass
class Selection:
    """What the nested selection found: the winner, its margin [interval] over the
    runner-up, every candidate's inner-fold SRCC and the candidates left out (why)."""

    winner: str
    candidates: tuple
    folds: int
    seed: int
    n_images: int
    scores: dict                   # name -> inner-fold SRCC, fold order
    summary: dict                  # name -> [mean, low, high]
    margin: list                   # winner - runner-up: [mean, low, high] (paired)
    runner_up: str | None = None
    skipped: dict = field(default_factory=dict)  # name -> reason
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["candidates"] = list(self.candidates)
        return d

    def line(self) -> str:
        """One readable line: who won, by how much, what else was tried."""
        def f(m):
            return "-" if m is None or not math.isfinite(m[0]) else (
                f"{m[0]:.3f}" if not math.isfinite(m[1]) else
                f"{m[0]:.3f} [{m[1]:.3f}, {m[2]:.3f}]")

        tried = ", ".join(f"{c} {f(self.summary[c])}" for c in self.candidates
                          if c in self.summary)
        if self.runner_up is None:
            text = f"{self.winner} (the only candidate that fits these options)"
        else:
            d = self.margin
            text = (f"{self.winner} by {d[0]:+.3f} SRCC over {self.runner_up} (95% interval "
                    f"{d[1]:+.3f} to {d[2]:+.3f})")
        skipped = "".join(f"; {c} not tried: {why}" for c, why in self.skipped.items())
        return (f"selected {text}; {self.folds}-fold CV on the {self.n_images} training "
                f"images only, mean inner SRCC: {tried}{skipped}")


def usable_candidates(candidates, options) -> tuple[tuple, dict]:
    """The candidates that can train with ``options`` and, for the others, why not."""
    from .config import TrainConfig

    ok, skipped = [], {}
    for name in candidates:
        try:
            TrainConfig.from_options(**{**options, "head": name}).resolved()
            ok.append(name)
        except (OptionError, ValueError) as err:
            skipped[name] = str(err).splitlines()[0]
    if not ok and len(set(skipped.values())) == 1:  # an option no candidate accepts
        raise OptionError(next(iter(skipped.values())))
    if not ok:
        raise OptionError(f"head auto: no candidate can train with these options "
                          f"({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    return tuple(ok), skipped


def _default_fit(store, labels, seed, options):
    from .trainer import train

    return train(store, labels, seed=seed, progress=False, **options)


def _inner_labels(part, fold_of, j, val_fraction, seed):
    """The training part with inner fold ``j`` as 'test', the rest split train / val."""
    from ..labels.split import split_labels

    test_ids = [part.ids[i] for i in np.flatnonzero(fold_of == j)]
    return split_labels(replace(part, split=None), val_fraction, seed * 1000 + j, test_ids)


def _triplet(iv):
    """(mean, low, high) of an :class:`mlsp.evaluation.intervals.Interval`: Fisher z for
    the candidates' SRCC, the paired r difference for the margin (bounded intervals)."""
    return iv.mean, iv.low, iv.high


def select_model(store, labels, candidates=SELECTION_CANDIDATES, folds: int = SELECTION_FOLDS,
                 seed: int = 0, val_fraction="auto", fit=None, progress: bool = False,
                 **options) -> Selection:
    """Cross-validate ``candidates`` (registry head names) on the images of ``labels``
    outside its test part (a 'test' split), all on the same ``folds`` inner folds, and
    return the :class:`Selection`.  ``options``: trainer options shared by every
    candidate.  ``fit`` replaces the trainer (tests): ``fit(store, labels, seed, options)``
    returning an object with ``metrics["test"]["srcc"]``.  The test part never reaches a
    fit: the labels given to ``fit`` hold the training part's images only."""
    from ..labels import aligned_labels
    from ..stores.features import FeatureStore
    from ..evaluation.intervals import correlation_interval, paired_difference
    from .crossval import assign_folds

    start = time.monotonic()
    fit = fit or _default_fit
    options = {k: v for k, v in options.items() if k not in ("head", "seed", "test_ids",
                                                             "test_fraction", "val_fraction")}
    names, skipped = usable_candidates(tuple(candidates), options)
    with FeatureStore.open(store.path if hasattr(store, "path") else store) as fs:
        lab, _ = aligned_labels(labels, fs)
    part = lab.subset(~lab.test_mask())
    k = int(folds)
    if len(part) < 2 * k:
        raise OptionError(f"head auto: {len(part)} training images are too few for its "
                          f"{k}-fold selection (at least {2 * k}); choose one with --head")
    fold_of = assign_folds(part.ids, k, seed)
    scores = {n: [] for n in names}
    for j in range(k):
        inner = _inner_labels(part, fold_of, j, val_fraction, seed)
        for name in (names if len(names) > 1 else ()):
            res = fit(store, inner, seed, {**options, "head": name, "baseline": False})
            scores[name].append(float((res.metrics.get("test") or {}).get("srcc", math.nan)))
            if progress:
                print(f"auto: inner fold {j + 1}/{k}, {name}: SRCC {scores[name][-1]:.3f}",
                      flush=True)
    tf = 1.0 / (k - 1)
    summary = {n: list(_triplet(correlation_interval(v, tf))) for n, v in scores.items() if v}
    means = [summary[n][0] if n in summary and math.isfinite(summary[n][0]) else -math.inf
             for n in names]
    best = int(np.argmax(means))  # the first of equal means: the earlier (cheaper) one
    winner = names[best]
    runner, margin = None, [math.nan] * 3
    if len(names) > 1:
        runner = names[int(np.argmax([m if i != best else -math.inf
                                      for i, m in enumerate(means)]))]
        margin = list(_triplet(paired_difference(scores[winner], scores[runner], "srcc", tf)))
    return Selection(winner=winner, candidates=tuple(candidates), folds=k, seed=int(seed),
                     n_images=len(part), scores=scores, summary=summary, margin=margin,
                     runner_up=runner, skipped=skipped, seconds=time.monotonic() - start)


def train_selected(store, labels, cfg, *, progress=False, verbose=False, fit=None):
    """``head="auto"``: the trainer's split, :func:`select_model` on its training part,
    then the winner trained as ``train(head=winner)`` would; the sidecar's ``selected_by``
    and the metrics' ``selection`` say what was chosen and why."""
    from ..stores.features import FeatureStore
    from ..labels.split import align_and_split
    from .trainer import train

    with FeatureStore.open(store.path if hasattr(store, "path") else store) as fs:
        lab, _ = align_and_split(labels, fs, cfg.val_fraction, cfg.seed, cfg.test_ids,
                                 cfg.test_fraction)
    options = {k: v for k, v in cfg.as_dict().items()
               if k not in ("head", "seed", "val_fraction", "test_ids", "test_fraction")}
    sel = select_model(store, lab, seed=cfg.seed, val_fraction=cfg.val_fraction, fit=fit,
                       progress=progress, **options)
    if progress:
        print(sel.line(), flush=True)
    res = train(store, lab, head=sel.winner, progress=progress, verbose=verbose,
                seed=cfg.seed, val_fraction=cfg.val_fraction, **options)
    res.sidecar["selected_by"] = {"rule": "auto", **sel.as_dict()}
    res.metrics["selection"] = {"line": sel.line(), **sel.as_dict()}
    res.seconds += sel.seconds
    return res
