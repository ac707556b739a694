"""Heads on MLSP features (Hosu et al. 2019, sec. 3.2), the EMD loss and a classic baseline."""
from mlsp.heads.baseline import fit_baseline
from mlsp.heads.losses import emd_loss, re_emd_loss
from mlsp.heads.models import ALL_HEADS, HEADS, build_head, fc3, pool_module
from mlsp.heads import mnet as _mnet  # noqa: F401  (registers ChannelSlice for loading)

__all__ = ["HEADS", "ALL_HEADS", "build_head", "fc3", "pool_module", "emd_loss", "re_emd_loss",
           "fit_baseline"]
