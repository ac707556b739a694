"""Every head by name: its builder, the feature kinds it reads, its outputs and objectives.

One list that the trainer's checks, the CLI's choices, the ablations and ``mlsp.HEADS``
read.  Importing this module does not import Keras (the builders import their modules
when called), so the command line can list the heads at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from ..feature_kinds import FEATURE_KINDS, GRID_KINDS
from ..vocabulary import OBJECTIVES, canonical  # noqa: F401 (re-exported)

__all__ = ["HeadSpec", "REGISTRY", "HEAD_NAMES", "get_head", "heads_for", "OBJECTIVES",
           "canonical", "AUTO_HEAD", "SELECTION_CANDIDATES", "HEAD_CHOICES"]

@dataclass(frozen=True)
class HeadSpec:
    """A head: ``builder`` ("module:function", called by :meth:`build`), the feature kinds
    it reads (``features[0]`` by default), its outputs, the objectives it trains with and
    the ablations (``mlsp ablate ...``) that offer it; ``options``: the training options
    that shape this head alone (refused for every other head)."""

    name: str
    builder: str
    features: tuple
    outputs: tuple = ("mos", "distribution")
    objectives: tuple = OBJECTIVES
    ablations: tuple = ()
    paper: str = ""
    closed_form: bool = False  # fit in closed form (no epochs, no validation part)
    options: tuple = ()

    @property
    def default_features(self) -> str:
        return self.features[0]

    def build(self, item_shape, output="mos", n_bins=10, *, features=None, level_channels=None,
              wide_size=5, width=None, dropout=None, seed=None, n_tags=0, pool_kernels=None):
        """The head as a Keras model for one stored item of shape ``item_shape``.  The
        multitask head returns its training model (its ``.inference`` is the test-time
        net); every other head returns the test-time model."""
        module, fn = self.builder.split(":")
        return getattr(import_module(module, __package__), fn)(
            self, tuple(int(v) for v in item_shape), output, int(n_bins or 10),
            features=features or self.default_features, level_channels=level_channels,
            wide_size=wide_size, width=width, dropout=dropout, seed=seed, n_tags=n_tags,
            pool_kernels=pool_kernels)

    @property
    def trains_itself(self) -> bool:
        """True when the training model computes its own loss (no compiled loss, no
        multi-patch wrapper): the multitask head's uncertainty-weighted sum (Eq. 1)."""
        return self.name == "multitask"


_NARROW = ("narrow",)
REGISTRY = {spec.name: spec for spec in (
    HeadSpec("single_1fc", ".builders:mlsp_head", _NARROW, ablations=("levels", "objective"),
             paper="MLSP Fig. 4a"),
    HeadSpec("single_3fc", ".builders:mlsp_head", _NARROW, ablations=("levels", "objective"),
             paper="MLSP Fig. 4b"),
    HeadSpec("multi_3fc", ".builders:mlsp_head", _NARROW, ablations=("levels", "objective"),
             paper="MLSP Fig. 5"),
    HeadSpec("pool_3fc", ".builders:mlsp_head", GRID_KINDS, ablations=("levels", "objective"),
             paper="MLSP Fig. 6", options=("pool_kernels",)),
    HeadSpec("mnet", ".builders:mnet_head", GRID_KINDS, ablations=("objective",),
             paper="M+MNet sec. 3.1"),
    HeadSpec("multitask", ".builders:multitask_head", _NARROW, outputs=("distribution",),
             objectives=("mlsp",), paper="MTP-NasNet sec. 3.1"),
    HeadSpec("cells_3fc", ".builders:cells_head", FEATURE_KINDS, ablations=("pooling",),
             paper="pooling ablation (M+MNet Table 4)"),
    HeadSpec("ridge", ".builders:ridge_head", _NARROW, outputs=("mos",), objectives=("mlsp",),
             closed_form=True,
             paper="linear regression on pooled features (BLINDER, cited in MLSP sec. 3.2.1)"),
)}
HEAD_NAMES = tuple(REGISTRY)

#: ``head="auto"`` (the training default): not a head but the choice among
#: :data:`SELECTION_CANDIDATES` by nested cross-validation on the user's own training
#: images (:mod:`mlsp.training.selection`); the saved model is the winner.
AUTO_HEAD = "auto"
SELECTION_CANDIDATES = ("ridge", "single_3fc")
#: What ``mlsp train --head`` / ``mlsp.train(head=...)`` accept.
HEAD_CHOICES = (AUTO_HEAD, *HEAD_NAMES)


def get_head(name: str) -> HeadSpec:
    """The head called ``name`` (dashes allowed), or a ValueError listing them."""
    spec = REGISTRY.get(canonical(name))
    if spec is None:
        raise ValueError(f"unknown head {name!r}; choose one of {', '.join(HEAD_NAMES)}")
    return spec


def heads_for(ablation: str) -> tuple:
    """Names of the heads an ablation (``levels``, ``objective``, ``pooling``) offers."""
    return tuple(n for n, s in REGISTRY.items() if ablation in s.ablations)
