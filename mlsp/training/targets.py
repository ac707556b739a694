"""What a head learns to predict: the z-scored MOS
(MLSP sec. 3.3) or rating distributions (NIMA / M+MNet Eq. 3), the multitask head's packed
targets (MTP-NasNet Eq. 1-4) and per-image variance weights (MTP-NasNet sec. 3.3)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OptionError

__all__ = ["Targets", "prepare_targets", "bin_scores", "label_bin_scores",
           "standardize", "unstandardize", "variance_weights"]


def bin_scores(score_range, n_bins) -> np.ndarray:
    """Scores of the K distribution bins, spread evenly over the rating scale."""
    lo, hi = (float(v) for v in score_range)
    return np.linspace(lo, hi, int(n_bins))


def label_bin_scores(lab, n_bins) -> np.ndarray:
    """Bin scores of the labels' distributions: 1..K when the labels give no rating scale
    (p1..pK columns, the range only observed) or when the MOS is the expectation over
    1..K; else K scores spread evenly over the stated scale."""
    k = np.arange(1, int(n_bins) + 1, dtype=np.float64)
    if getattr(lab, "range_observed", False) or np.allclose(
            lab.distribution @ k, lab.mos, atol=0.05):
        return k
    return bin_scores(lab.score_range, n_bins)


def standardize(mos, mean, std):
    return (np.asarray(mos, np.float64) - mean) / std


def unstandardize(z, mean, std):
    return np.asarray(z, np.float64) * std + mean


def variance_weights(distribution, bin_scores, train_mask=None) -> np.ndarray:
    """Per-image reliability weights from the rating distributions' variance (MTP-NasNet 3.3).

    The paper states the rule (larger variance -> less credible -> smaller weight) but
    gives no formula.  We use a smoothed inverse variance, normalised to mean 1 over the
    training images (so the loss scale and learning rate keep their meaning):

        var_i = sum_k p_ik (s_k - mu_i)^2,   mu_i = sum_k p_ik s_k   (s_k: bin scores)
        w_i   = (1 / (var_i + v)) / mean_train(1 / (var_j + v)),   v = mean_train(var_j)

    v keeps the weights bounded (a zero-variance image gets at most (1 + var_max / v)
    times the weight of the least reliable one).  Example: variances (1, 3): v = 2,
    1/(var+v) = (1/3, 1/5), mean 4/15, w = (1.25, 0.75).
    """
    from ..evaluation.metrics import distribution_mean

    mu, p = distribution_mean(distribution, bin_scores)
    s = np.asarray(bin_scores, np.float64)
    var = np.sum(p * (s[None, :] - mu[:, None]) ** 2, axis=1)
    m = np.ones(len(var), bool) if train_mask is None else np.asarray(train_mask, bool)
    v = float(var[m].mean()) or 1.0
    raw = 1.0 / (var + v)
    return (raw / raw[m].mean()).astype(np.float32)


@dataclass
class Targets:
    """Training targets of every aligned image: ``y`` (z-scored MOS (N, 1), distributions
    (N, K) or the multitask pack), the bins, tag vocabulary, MOS scaling and weights."""

    y: np.ndarray
    n_bins: int | None
    bin_scores: np.ndarray | None
    vocab: np.ndarray
    mean: float
    std: float
    weights: np.ndarray | None = None


def prepare_targets(lab, config, train_m, threshold) -> Targets:
    """Targets for a resolved :class:`~mlsp.training.config.TrainConfig` (the MOS mean and
    standard deviation are the training images')."""
    output, loss, head = config.output, config.loss, config.head
    mean = float(lab.mos[train_m].mean())
    std = float(lab.mos[train_m].std()) or 1.0
    vocab = np.zeros(0, np.int64)
    if output == "mos":
        targets = Targets(standardize(lab.mos, mean, std).astype(np.float32)[:, None], None,
                          None, vocab, mean, std)
        return _with_weights(targets, lab, config, train_m)
    if lab.distribution is None:
        raise OptionError(f"output='distribution' (loss {loss!r}, head {head!r}) needs rating "
                          "distributions in the labels (e.g. AVA.txt, or p1..pK columns)")
    n_bins = lab.n_bins
    y = lab.distribution.astype(np.float32)
    if head == "multitask":
        from ..heads.multitask import pack_targets, tag_vocabulary

        vocab = tag_vocabulary(None if lab.tags is None else lab.tags[train_m])
        y = pack_targets(lab.distribution, lab.mos, threshold, config.binary_margin, lab.tags,
                         vocab if len(vocab) else None)
    targets = Targets(y, n_bins, label_bin_scores(lab, n_bins), vocab, mean, std)
    return _with_weights(targets, lab, config, train_m)


def _with_weights(targets, lab, config, train_m) -> Targets:
    if config.sample_weights == "variance":
        if lab.distribution is None:
            raise OptionError("sample_weights='variance' needs rating distributions in the "
                              "labels")
        targets.weights = variance_weights(lab.distribution, label_bin_scores(lab, lab.n_bins),
                                           train_m)
    return targets
