"""Heads on MLSP features (Hosu et al. 2019, sec. 3.2), the EMD loss and a classic baseline."""
from mlsp.heads.baseline import fit_baseline
from mlsp.heads.losses import emd_loss
from mlsp.heads.models import HEADS, build_head, fc3, pool_module

__all__ = ["HEADS", "build_head", "fc3", "pool_module", "emd_loss", "fit_baseline"]
