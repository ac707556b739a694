"""Match labels to the rows of a feature store, by id (never by position)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlsp.labels.labels import Labels, load_labels

DONE, FAILED, PENDING = 1, -1, 0


@dataclass
class Alignment:
    """Pairs ``(store_index[j], label_index[j])`` of usable labelled images.

    Pairs are ordered by increasing store row, so ``dataset[store_index]``
    works directly with h5py fancy indexing.  ``missing``: labelled ids not in
    the store; ``failed`` / ``pending``: labelled ids whose extraction failed
    or has not run.  ``unlabelled``: store rows without a label.
    """

    store_index: np.ndarray
    label_index: np.ndarray
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    unlabelled: int = 0

    def __len__(self) -> int:
        return int(self.store_index.size)

    def report(self, show: int = 5) -> str:
        def few(ids):
            if not ids:
                return ""
            more = f", ... (+{len(ids) - show})" if len(ids) > show else ""
            return " (" + ", ".join(ids[:show]) + more + ")"

        n_lab = len(self) + len(self.missing) + len(self.failed) + len(self.pending)
        return (f"{len(self)} of {n_lab} labelled images are usable (extracted in the store); "
                f"{len(self.missing)} missing from the store{few(self.missing)}; "
                f"{len(self.failed)} failed extraction{few(self.failed)}; "
                f"{len(self.pending)} still pending{few(self.pending)}; "
                f"{self.unlabelled} store images have no label.")


def align_with_store(labels: Labels, store) -> Alignment:
    """Align ``labels`` with an open :class:`mlsp.stores.features.FeatureStore` by id."""
    store_ids = list(store.ids)
    status = np.asarray(store.status)
    row = {}
    for i, sid in enumerate(store_ids):
        if sid in row:
            raise ValueError(f"{getattr(store, 'path', 'store')}: duplicate image id {sid!r} "
                             f"(rows {row[sid]} and {i})")
        row[sid] = i
    s_idx, l_idx, missing, failed, pending = [], [], [], [], []
    for j, lid in enumerate(labels.ids):
        i = row.get(lid)
        if i is None:
            missing.append(lid)
        elif status[i] == DONE:
            s_idx.append(i)
            l_idx.append(j)
        elif status[i] == FAILED:
            failed.append(lid)
        else:
            pending.append(lid)
    s_idx = np.asarray(s_idx, dtype=np.int64)
    l_idx = np.asarray(l_idx, dtype=np.int64)
    order = np.argsort(s_idx, kind="stable")
    labelled = set(labels.ids)
    unlabelled = sum(1 for sid in store_ids if sid not in labelled)
    return Alignment(store_index=s_idx[order], label_index=l_idx[order], missing=missing,
                     failed=failed, pending=pending, unlabelled=unlabelled)


def aligned_labels(labels, store) -> tuple[Labels, Alignment]:
    """``labels`` (a file or :class:`Labels`) restricted to the images extracted in the
    open ``store``, with the :class:`Alignment`; a ValueError naming the store and the
    counts when none is extracted.  What training, cross-validation and evaluation share."""
    if not hasattr(labels, "mos"):
        labels = load_labels(labels)
    al = align_with_store(labels, store)
    if len(al) == 0:
        raise ValueError(f"{getattr(store, 'path', 'store')}: none of the {len(labels)} "
                         f"labelled images is extracted in the store ({al.report()})")
    return labels.subset(al.label_index), al
