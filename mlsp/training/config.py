"""Every training option and its default, in one place, and the check that resolves them.

:class:`TrainConfig` holds the defaults (batch 128, 3FC dropout 0.25 / 0.25 / 0.5,
the step schedule of sec. 3.3; learning rate, input standardization and validation share
by collection size, :func:`regime`); change a
default here and ``mlsp.train``, ``train_head`` and ``mlsp train`` all follow.
:meth:`TrainConfig.resolved` fills the values that depend on others (output, loss,
feature kind, augmentation mode) and raises :class:`mlsp.errors.OptionError` (one line,
naming the option) for values that cannot work.  No Keras import: the CLI reads it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from ..errors import OptionError
from ..heads.registry import AUTO_HEAD, SELECTION_CANDIDATES, get_head
from ..options import number
from ..vocabulary import (FEATURE_KINDS, FEED_MODES, GRID_KINDS, LOSSES, OBJECTIVES, OUTPUTS,
                          PRECISIONS, canonical)
from ..vocabulary import SAMPLE_WEIGHTS as VOCAB_SAMPLE_WEIGHTS

__all__ = ["TrainConfig", "DEFAULTS", "regime", "SMALL_SET", "PAPER_SET", "AUTO", "PRECISIONS", "LOSSES", "SAMPLE_WEIGHTS", "OUTPUTS",
           "AUGMENTS", "AUTO_ALL_BELOW", "resolve_augment", "OBJECTIVES"]

SAMPLE_WEIGHTS = (None, *VOCAB_SAMPLE_WEIGHTS)
AUGMENTS = FEED_MODES

#: ``augment="auto"`` feeds all stored augmentations per epoch ("all") below this many
#: training images, one random augmentation ("random", MLSP sec. 3.1) from it on.  The
#: paper's AVA regime (~235k training images, batch 128, one augmentation) has ~1,800
#: steps an epoch; "all" on 20,000 images gives 1,250, so below the threshold "all" keeps
#: epochs no longer than the paper's while small sets get enough steps to train at all
#: (benchmarks/RESULTS-training-defaults.md).
AUTO_ALL_BELOW = 20_000


#: The training regime by collection size (rule: fewer than :data:`AUTO_ALL_BELOW` training
#: images is a small set).  The paper's regime (sec. 3.3: Adam 1e-4 on raw features, 5%
#: validation) was tuned on ~235k AVA images; on a few hundred or thousand real photos it
#: trains too slowly to beat a ridge regression (OASIS, 5-fold CV: README "How good are the
#: heads").  Small sets use Adam 1e-3 on per-channel standardized features (mean / variance
#: of the training rows, kept in the saved model) and 10% validation, which was chosen by
#: cross-validation on OASIS partitions other than the reported ones
#: (benchmarks/bench_quality.py, RESULTS-quality.md).  AVA-sized sets keep the paper's
#: values: nothing measured says otherwise there.
SMALL_SET = {"lr": 1e-3, "normalize_inputs": True, "val_fraction": 0.10}
PAPER_SET = {"lr": 1e-4, "normalize_inputs": False, "val_fraction": 0.05}
AUTO = "auto"


def regime(n_images: int) -> dict:
    """The automatic values (lr, normalize_inputs, val_fraction) for ``n_images``."""
    return dict(SMALL_SET if int(n_images) < AUTO_ALL_BELOW else PAPER_SET)


def resolve_augment(augment: str, n_train: int) -> str:
    """The augmentation mode actually used for ``n_train`` training images."""
    if augment == "auto":
        return "all" if int(n_train) < AUTO_ALL_BELOW else "random"
    return augment


@dataclass(frozen=True)
class TrainConfig:
    """The options of one training run (see :func:`mlsp.training.trainer.train`)."""

    head: str = AUTO_HEAD              # auto: ridge or single_3fc by nested CV (selection)
    levels: object = None              # names, indices or "a:b" ("-5:" = the last 5)
    output: str = "mos"                # "mos" (MSE on z-scored MOS) or "distribution"
    features: str | None = None        # stored feature kind; None: the head's default
    objective: str = "mlsp"            # MLSP, or the multi-patch objectives (Sheng et al.)
    loss: str | None = None            # None: mse for the MOS, emd for distributions
    precision: str = "float32"
    sample_weights: str | None = None  # "variance": MTP-NasNet sec. 3.3
    binary_margin: float = 0.0         # multitask head, MTP-NasNet sec. 4.3
    epochs: int = 100                  # upper limit; the schedule stops earlier
    batch_size: int = 128
    lr: float | str = AUTO              # auto: 1e-3 on small sets, 1e-4 (paper) on large
    augment: str = "auto"              # "random" (sec. 3.1), "all", "auto" (AUTO_ALL_BELOW)
    seed: int = 0
    val_fraction: float | str = AUTO    # auto: 10% on small sets, 5% (sec. 3.3) on large
    test_ids: object = None
    test_fraction: float = 0.0
    width: int | None = None           # X of the first FC layer (None: the head's own)
    pool_kernels: int | None = None    # Pool-3FC's kernels a column (None: 1024, Fig. 6)
    dropout: tuple = (0.25, 0.25, 0.5)
    step_epochs: int | None = 20       # the schedule: see mlsp.training.schedule
    patience: int | None = 5
    min_lr: float = 1e-6
    stop_patience: int | None = 5
    normalize_inputs: bool | str = AUTO  # per-channel standardization (small sets: on)
    baseline: bool = True              # a ridge reference on narrow features
    baseline_max_rows: int = 20000
    memory_limit: float = 4 * 1024**3  # larger feature sets are streamed from the store
    workers: int | None = None
    distribute: bool = False
    name: str | None = None

    @classmethod
    def option_names(cls) -> tuple:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_options(cls, **options) -> "TrainConfig":
        """A config from keyword options; an unknown one is an OptionError."""
        unknown = sorted(set(options) - set(cls.option_names()))
        if unknown:
            raise OptionError(f"unknown training option {unknown[0]!r}; options: "
                              f"{', '.join(cls.option_names())}")
        return cls(**options)

    def as_dict(self) -> dict:
        return asdict(self)

    def resolved(self) -> "TrainConfig":
        """This config with dependent values filled in, or an OptionError naming the option
        (and the other one, for combinations that cannot work)."""
        if canonical(self.head) == AUTO_HEAD:  # each candidate resolves its own values
            from .selection import usable_candidates

            usable_candidates(SELECTION_CANDIDATES, {**self.as_dict(), "head": None})
            return replace(self, head=AUTO_HEAD)
        spec = get_head(self.head)
        head = spec.name
        objective = canonical(self.objective or "mlsp")
        precision = canonical(self.precision or "float32")
        loss = None if self.loss is None else canonical(self.loss)
        sample_weights = self.sample_weights
        if objective not in OBJECTIVES:
            raise OptionError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if precision not in PRECISIONS:
            raise OptionError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if sample_weights not in SAMPLE_WEIGHTS:
            raise OptionError(f"sample_weights must be 'variance' or None, got "
                              f"{sample_weights!r}")
        if loss is not None and loss not in LOSSES:
            raise OptionError(f"loss must be one of {LOSSES}, got {loss!r}")
        output = self.output
        if loss in ("emd", "re_emd") or spec.outputs == ("distribution",):
            output = "distribution"
        if output not in OUTPUTS:
            raise OptionError(f"output must be 'mos' or 'distribution', got {output!r}")
        if output not in spec.outputs:
            raise OptionError(f"the {head} head predicts {' / '.join(spec.outputs)} only, "
                              f"not {output!r}")
        loss = loss or ("mse" if output == "mos" else "emd")
        if (loss == "mse") != (output == "mos"):
            raise OptionError(f"loss {loss!r} does not fit output {output!r}")
        if objective not in spec.objectives:
            raise OptionError(f"the {head} head trains with objective="
                              f"{' / '.join(repr(o) for o in spec.objectives)} only")
        features = spec.default_features if self.features is None else canonical(self.features)
        if features not in FEATURE_KINDS:
            raise OptionError(f"features must be one of {FEATURE_KINDS}, got {features!r}")
        if features not in spec.features:
            if spec.features == GRID_KINDS:
                raise OptionError(f"head {head} needs a (P, P, C) feature grid, not "
                                  f"{features!r}")
            raise OptionError(f"head {head} takes {' / '.join(spec.features)} features; use "
                              f"cells_3fc for {features!r}")
        if self.distribute and precision == "auto":
            raise OptionError("distribute=True cannot be combined with precision='auto': the "
                              "delayed entry rebuilds the model mid-training; use "
                              "precision='float32' or 'mixed_float16' with distribute, or "
                              "train on one device")
        if self.pool_kernels is not None and "pool_kernels" not in spec.options:
            raise OptionError(f"pool_kernels shapes the Pool-3FC head only, not {head}")
        for opt in ("epochs", "batch_size", "width", "pool_kernels"):
            value = getattr(self, opt)
            if value is not None and (int(value) < 1 or int(value) != value):
                raise OptionError(f"{opt} must be a positive whole number, got {value!r}")
        if self.pool_kernels is not None and int(self.pool_kernels) < 2:
            raise OptionError(f"pool_kernels must be at least 2 (a column's 1x1 conv feeds two "
                              f"branches of half as many), got {self.pool_kernels!r}")
        if self.lr != AUTO and not (_number(self.lr) > 0 and math.isfinite(_number(self.lr))):
            raise OptionError(f"lr must be a positive number or 'auto', got {self.lr!r}")
        if self.val_fraction != AUTO and not 0 <= _number(self.val_fraction) < 1:
            raise OptionError(f"val_fraction must be in [0, 1) or 'auto', got "
                              f"{self.val_fraction!r}")
        if self.normalize_inputs not in (AUTO, True, False):
            raise OptionError(f"normalize_inputs must be true, false or 'auto', got "
                              f"{self.normalize_inputs!r}")
        number("binary_margin", self.binary_margin, 0)
        if self.augment not in AUGMENTS:
            raise OptionError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        return replace(self, head=head, output=output, objective=objective, loss=loss,
                       precision=precision, features=features,
                       sample_weights=None if sample_weights == "none" else sample_weights)


    def for_size(self, n_images: int) -> "TrainConfig":
        """This config with every ``"auto"`` replaced by the regime for ``n_images``
        (:func:`regime`); values given explicitly stay."""
        auto = regime(n_images)
        return replace(self, **{k: (auto[k] if getattr(self, k) == AUTO else getattr(self, k))
                                for k in auto})


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


#: The defaults, for the command line's option defaults and help.
DEFAULTS = TrainConfig()
