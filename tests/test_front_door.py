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


def test_compatibility_check_refuses_a_foreback_head_on_a_store_without_backpool():
    """Before issue 16 the check's own kind -> pooling map lacked ``wide_foreback``, so a
    head on ForePool+BackPool features passed for a store with ForePool only."""
    from _mmstore import CONFIG

    from mlsp.errors import StoreError
    from mlsp.inference.model_format import check_compatible
    from mlsp.stores.features import IDENTITY_KEYS

    sidecar = {"name": "fb", "pooling": "wide_foreback", "levels": [], "level_channels": [],
               "features": {k: CONFIG.get(k) for k in IDENTITY_KEYS}}
    sidecar["features"]["pooling_kinds"] = ["area", "fore", "back"]
    check_compatible(sidecar, dict(CONFIG, pooling_kinds=["area", "fore", "back"]))
    with pytest.raises(StoreError, match="no wide_foreback features"):
        check_compatible(sidecar, dict(CONFIG, pooling_kinds=["area", "fore"]))


def test_reading_a_kind_the_store_lacks_names_the_pooling_to_extract(tmp_path):
    """A head on SPP features over a store extracted without SPP: one line naming the
    store, the missing features and the --pooling that makes them (it was a NameError:
    the message's helper was never imported; found by pyflakes)."""
    from mlsp.errors import StoreError
    from mlsp.stores.reader import StoreFeatures

    store = make_ext_store(tmp_path / "plain.h5", n=12, kinds=())[0]
    with pytest.raises(StoreError) as err:
        StoreFeatures(store, kind="spp", progress=False)
    assert str(err.value) == f"{store}: has no spp features (extract with --pooling area,spp)"


def test_every_mlsp_error_is_an_mlsp_error_and_a_value_error():
    from mlsp import errors
    from mlsp.extract.backbones import WeightsUnavailableError
    from mlsp.extract.ray_engine import RayUnavailableError
    from mlsp.extract.weights import WeightsMismatchError, WeightsNotFoundError
    from mlsp.images.decode import ImageDecodeError
    from mlsp.inference.onnx import OnnxUnavailableError
    from mlsp.stores.features import StoreBusyError, StoreDamagedError, StoreError

    for cls in (StoreError, StoreBusyError, StoreDamagedError, WeightsUnavailableError,
                WeightsNotFoundError, WeightsMismatchError, ImageDecodeError,
                RayUnavailableError, OnnxUnavailableError, errors.OptionError,
                errors.ModelFileError):
        assert issubclass(cls, errors.MLSPError) and issubclass(cls, ValueError), cls
    assert errors.one_line(KeyError("no image 'x'")) == "no image 'x'"
    assert errors.one_line(ValueError("\n  first\nsecond")) == "first"
    assert errors.one_line(RuntimeError()) == "RuntimeError"


def test_cli_choices_come_from_the_vocabulary():
    from mlsp import vocabulary
    from mlsp.cli import main

    extract = {p.name: p for p in main.commands["extract"].params}
    assert tuple(extract["backbone"].type.choices) == vocabulary.BACKBONES
    assert tuple(extract["augmentation"].type.choices) == vocabulary.AUGMENTATIONS
    assert tuple(extract["engine"].type.choices) == vocabulary.ENGINES
    train = {p.name: p for p in main.commands["train"].params}
    assert tuple(train["precision"].type.choices) == vocabulary.PRECISIONS
    assert tuple(train["objective"].type.choices) == vocabulary.OBJECTIVES
    predict = {p.name: p for p in main.commands["predict"].params}
    assert tuple(predict["runtime"].type.choices) == vocabulary.PREDICT_RUNTIMES
