"""One front door (issue 16): the command line and the Python API make the same decisions.

The split: labels are aligned to the store, then split (:func:`mlsp.labels.split.
align_and_split`), so the same labels file and seed give the same validation images
through ``mlsp train`` and ``mlsp.train`` even when many labelled images are missing from
the store (before issue 16 the CLI split first: 16 validation images vs the API's 15,
one in common)."""
import csv

import numpy as np
import pytest

from _mmstore import make_ext_store


@pytest.fixture(scope="module")
def store_and_labels(tmp_path_factory):
    """A store of 150 images and a labels file of 200 (50 not in the store)."""
    d = tmp_path_factory.mktemp("door")
    store, lab = make_ext_store(d / "s.h5", n=150, seed=3, kinds=())
    path = d / "labels.csv"
    rng = np.random.default_rng(1)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "mos"])
        for i, m in zip(lab.ids, lab.mos):
            w.writerow([i, f"{m:.4f}"])
        for j in range(50):  # labelled, never extracted
            w.writerow([f"zz{j:03d}", f"{rng.uniform(1, 10):.4f}"])
    return store, path


def _val_ids(ids, split):
    return sorted(i for i, s in zip(ids, split) if s == "val")


def test_cli_and_api_pick_the_same_validation_images(store_and_labels, tmp_path):
    from click.testing import CliRunner

    import mlsp
    from mlsp.cli import main

    store, labels = store_and_labels
    head = mlsp.train(store, labels, epochs=1, seed=4, baseline=False)
    api_val = _val_ids(head.training.predictions["ids"], head.training.predictions["split"])
    out = tmp_path / "m"
    r = CliRunner().invoke(main, ["train", str(store), "--labels", str(labels), "--epochs", "1",
                                  "--seed", "4", "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    cli_val = _val_ids([r["id"] for r in rows], [r["split"] for r in rows])
    assert len(api_val) == 15  # 10% of the 150 images that have features
    assert cli_val == api_val


def test_align_and_split_draws_only_from_extracted_images(store_and_labels):
    from mlsp.labels.split import align_and_split
    from mlsp.stores.features import FeatureStore

    store, labels = store_and_labels
    with FeatureStore.open(store) as fs:
        lab, al = align_and_split(labels, fs, "auto", seed=4)
        again, _ = align_and_split(labels, fs, "auto", seed=4)
    assert len(lab) == len(al) == 150 and not any(i.startswith("zz") for i in lab.ids)
    assert int((lab.split == "val").sum()) == 15
    assert list(lab.split) == list(again.split)
