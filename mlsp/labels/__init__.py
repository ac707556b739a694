"""Labels: AVA.txt and generic CSV loaders, train/val/test splits, store alignment."""
from mlsp.labels.align import Alignment, align_with_store, aligned_labels
from mlsp.labels.labels import (Labels, load_ava, load_csv, load_labels, read_id_list)

__all__ = ["Labels", "load_ava", "load_csv", "load_labels", "read_id_list", "Alignment",
           "align_with_store", "aligned_labels"]
