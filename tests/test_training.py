"""Training on stored features: the MLSP schedule rule, augmentation sampling and
averaging, target standardisation, model/store compatibility, a tiny training run."""
import csv
import json

import keras
import numpy as np
import pytest

from mlsp.labels import Labels
from mlsp.stores.features import FeatureStore, Level, StoreError
from mlsp.inference.scoring import predict_averaged
from mlsp.stores.reader import StoreFeatures
from mlsp.training.data import FeatureSequence
from mlsp.training.schedule import MLSPSchedule, StepPlateauRule
from mlsp.inference.model_format import check_compatible
from mlsp.inference.model_format import read_model as load_trained
from mlsp.inference.trained_head import outputs_to_scores
from mlsp.training.targets import bin_scores, standardize
from mlsp.training.trainer import train_head

N, A, LEVELS = 12, 8, [Level("block_a", 3, 0), Level("block_b", 2, 3)]
C = 5

CONFIG = {"backbone": "toy", "alpha": 1.0, "weights": "toy.h5", "weights_sha256": "abc",
          "weights_seed": -1, "preprocessing": "x/127.5-1", "augmentation_mode": "crops",
          "augmentations": [f"aug{a}" for a in range(A)], "crop_fraction": 0.875,
          "pool_narrow": 1, "pool_wide": 2, "max_side": 0, "min_side": 32}


def known(i, a, c):
    """Feature value of image i, augmentation a, channel c (exact in float16)."""
    return 100.0 * i + 10.0 * a + c


def make_store(path, config=CONFIG, n=N, status=None, narrow=None):
    ids = [f"img{i:03d}" for i in range(n)]
    fs = FeatureStore.create(path, ids, [f"/x/{i}.jpg" for i in ids], config, LEVELS, A, 2)
    rows = []
    for i in range(n):
        nar = (np.array([[known(i, a, c) for c in range(C)] for a in range(A)])
               if narrow is None else narrow[i])
        wide = np.broadcast_to(nar[:, None, None, :], (A, 2, 2, C))
        rows.append({"index": i, "narrow": nar.astype(np.float16),
                     "wide": wide.astype(np.float16), "height": 64, "width": 64, "scale": 1.0})
    if status is not None:
        rows = [r for r in rows if status[r["index"]] == 1]
    fs.write_rows(rows)
    if status is not None:
        fs.mark_failed([(i, "broken file", 0, 0) for i in range(n) if status[i] == -1])
    fs.close()
    return path, ids


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("st") / "f.h5")


# -- the schedule rule (MLSP sec. 3.3) ----------------------------------------------------
def test_rule_on_scripted_losses():
    rule = StepPlateauRule(initial_lr=1e-2, factor=0.1, step_epochs=4, patience=2, min_lr=1e-4,
                           stop_patience=3)
    losses = [10, 9, 8, 7,   # 4 epochs at 1e-2, always better: the 20-epoch-like step fires
              7.5, 7.2,      # 2 epochs without a lower loss: the plateau rule fires
              6, 6.5, 6.1, 6.2]  # at the lowest rate: improves once, then 3 bad epochs: stop
    got = [rule.update(v) for v in losses]
    assert [d.lr for d in got] == pytest.approx([1e-2] * 4 + [1e-3] * 2 + [1e-4] * 4)
    assert [k for k, d in enumerate(got) if d.reload_best] == [3, 5]
    assert [d.stop for d in got] == [False] * 9 + [True]
    assert [d.improved for d in got] == [True] * 4 + [False, False, True, False, False, False]
    assert rule.best_epoch == 6 and rule.best == 6


def test_rule_paper_defaults_step_every_20_epochs():
    rule = StepPlateauRule()  # 1e-4, /10 every 20 epochs or 5 without improvement, 1e-6
    lrs = [rule.update(100.0 - e).lr for e in range(65)]
    assert lrs == pytest.approx([1e-4] * 20 + [1e-5] * 20 + [1e-6] * 25)
    # plateau first: 5 epochs without a lower loss at 1e-4 beat the 20-epoch step
    rule = StepPlateauRule()
    seq = [rule.update(v) for v in [5, 4, 4, 4, 4, 4, 4]]
    assert [d.next_lr for d in seq] == pytest.approx([1e-4] * 6 + [1e-5])


def test_callback_reloads_best_weights_and_logs_lr():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    cb = MLSPSchedule(initial_lr=1e-2, step_epochs=None, patience=2, min_lr=1e-3, stop_patience=1)
    cb.set_model(model)
    cb.on_train_begin()
    w_best = None
    logs_all = []
    for epoch, loss in enumerate([3.0, 1.0, 2.0, 2.5, 2.0]):
        cb.on_epoch_begin(epoch)
        assert float(model.optimizer.learning_rate) == pytest.approx(cb.rule.lr)
        model.set_weights([w + epoch for w in model.get_weights()])  # "training"
        if loss == 1.0:
            w_best = [w.copy() for w in model.get_weights()]
        logs = {"loss": 0.0, "val_loss": loss}
        cb.on_epoch_end(epoch, logs)
        logs_all.append(logs)
        if epoch == 3:  # 2 epochs without improvement: rate 1e-2 -> 1e-3, best reloaded
            for w, b in zip(model.get_weights(), w_best):
                np.testing.assert_array_equal(w, b)
    assert [lg["lr"] for lg in logs_all] == pytest.approx([1e-2] * 4 + [1e-3])
    assert model.stop_training  # one bad epoch at the lowest rate (stop_patience=1)
    cb.on_train_end()
    for w, b in zip(model.get_weights(), w_best):
        np.testing.assert_array_equal(w, b)


# -- features, sequences, averaging (MLSP sec. 3.1) ---------------------------------------
@pytest.mark.parametrize("in_memory", [True, False])
def test_store_features_levels_and_reads(store, in_memory):
    path, _ = store
    f = StoreFeatures(path, levels="block_b", in_memory=in_memory, progress=False)
    assert f.in_memory is in_memory and f.item_shape == (2,)
    rows, aug = np.array([5, 1, 5, 3]), np.array([7, 0, 2, 4])
    x = f.get(rows, aug)
    want = np.array([[known(i, a, c) for c in (3, 4)] for i, a in zip(rows, aug)])
    np.testing.assert_array_equal(x, want)
    assert x.dtype == np.float32
    allx = f.get(np.array([4, 2, 4]))
    assert allx.shape == (3, A, 2) and allx[0, 6, 1] == known(4, 6, 4)
    np.testing.assert_array_equal(allx[0], allx[2])
    np.testing.assert_array_equal(f.mean_over_augmentations([2]),
                                  [[known(2, 3.5, 3), known(2, 3.5, 4)]])
    wide = StoreFeatures(path, levels=[0], kind="wide", memory_limit=10, progress=False)
    assert not wide.in_memory and wide.item_shape == (2, 2, 3)
    assert wide.get([3], [5])[0, 1, 0, 2] == known(3, 5, 2)
    f.close()
    wide.close()


def test_memory_limit_decides(store):
    path, _ = store
    assert not StoreFeatures(path, memory_limit=10, progress=False).in_memory
    assert StoreFeatures(path, memory_limit=1e6, progress=False).in_memory


def test_sequence_one_random_augmentation_per_image_per_epoch(store):
    path, _ = store
    f = StoreFeatures(path, progress=False)
    rows = np.arange(2, 12)
    y = np.arange(10, dtype=np.float32)
    seq = FeatureSequence(f, rows, y, batch_size=4, augment="random", seed=3)
    assert len(seq) == 3
    draws = []
    for epoch in range(4):
        seq.set_epoch(epoch)
        xs, ys = zip(*(seq[b] for b in range(len(seq))))
        x, t = np.concatenate(xs), np.concatenate(ys)
        img, aug = (x[:, 0] // 100).astype(int), (x[:, 0] % 100 // 10).astype(int)
        assert sorted(img) == list(rows)  # every image exactly once per epoch
        np.testing.assert_array_equal(t, img - 2)  # targets travel with their features
        draws.append(dict(zip(img, aug)))
    assert draws[0] != draws[1]  # a new draw (and order) every epoch
    assert len({a for d in draws for a in d.values()}) > 3
    again = FeatureSequence(f, rows, y, batch_size=4, augment="random", seed=3)
    again.set_epoch(1)
    seq.set_epoch(1)
    np.testing.assert_array_equal(again[0][0], seq[0][0])  # same seed, same epoch: same batch
    other = FeatureSequence(f, rows, y, batch_size=4, augment="random", seed=4)
    assert not np.array_equal(other.plan(0)[1], seq.plan(0)[1])
    seq.set_epoch(0)
    seq.on_epoch_end()
    assert seq.epoch == 1


def test_sequence_all_augmentations(store):
    path, _ = store
    f = StoreFeatures(path, progress=False)
    seq = FeatureSequence(f, [0, 7], np.zeros(2), batch_size=5, augment="all", shuffle=False)
    x = np.concatenate([seq[b][0] for b in range(len(seq))])
    assert len(seq) == 4 and x.shape == (16, C)
    assert sorted(map(tuple, x[:, :1].astype(int))) == sorted(
        (int(known(i, a, 0)),) for i in (0, 7) for a in range(A))


def test_prediction_averages_over_all_stored_augmentations(store):
    path, _ = store
    f = StoreFeatures(path, progress=False)
    inp = keras.Input((C,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    w = np.array([[1.0], [0.0], [2.0], [0.0], [-1.0]], np.float32)
    model.set_weights([w, np.array([0.5], np.float32)])
    rows = np.array([9, 0, 4])
    got = predict_averaged(model, f, rows, batch_size=16)  # 2 images (16 crops) a batch
    want = [np.mean([known(i, a, 0) + 2 * known(i, a, 2) - known(i, a, 4) + 0.5
                     for a in range(A)]) for i in rows]
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-6)
    # nonlinear output: the average of predictions, not the prediction of the average
    sq = keras.Model(inp, keras.layers.Lambda(lambda t: keras.ops.square(t[:, :1]))(inp))
    got = predict_averaged(sq, f, [1], batch_size=3)
    assert got[0, 0] == pytest.approx(np.mean([known(1, a, 0) ** 2 for a in range(A)]))


# -- targets ------------------------------------------------------------------------------
def test_standardization_round_trip_on_any_scale():
    for mos in (np.array([1.5, 3.0, 9.9]), np.array([0.0, 37.5, 100.0]), np.array([1, 2.5, 5])):
        mean, std = mos.mean(), mos.std()
        z = standardize(mos, mean, std)
        assert abs(z.mean()) < 1e-12 and z.std() == pytest.approx(1)
        side = {"output": "mos", "target": {"mean": mean, "std": std}}
        back, dist = outputs_to_scores(z[:, None], side)
        np.testing.assert_allclose(back, mos)
        assert dist is None
    side = {"output": "distribution", "bin_scores": bin_scores((0, 100), 5).tolist()}
    mos, dist = outputs_to_scores(np.array([[0, 0, 1, 0, 0], [0.5, 0, 0, 0, 0.5],
                                            [0, 0, 0, 0.25, 0.75]]), side)
    np.testing.assert_allclose(mos, [50, 50, 93.75])
    np.testing.assert_allclose(bin_scores((1, 10), 10), np.arange(1, 11))


# -- a tiny training run, the saved files, compatibility ----------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tr")
    n, rng = 60, np.random.default_rng(0)
    base = rng.normal(size=(n, 1, C))
    narrow = base + 0.1 * rng.normal(size=(n, A, C))
    path, ids = make_store(tmp / "s.h5", n=n, narrow=narrow,
                           status=[1] * (n - 1) + [-1])  # the last one "failed"
    mos = 5 + 2 * base[:, 0, 0] - base[:, 0, 1]
    labels = Labels(ids=ids + ["nowhere"], mos=np.r_[mos, 5.0], score_range=(1, 10))
    res = train_head(path, labels, head="single_3fc", epochs=4, batch_size=16, lr=1e-3,
                     width=32, seed=1, out_dir=tmp / "m", test_fraction=0.25,
                     val_fraction=0.2, progress=False)
    return path, ids, labels, res


def test_training_writes_everything(trained):
    path, ids, labels, res = trained
    out = res.out_dir
    for name in ("model.keras", "model.json", "history.csv", "metrics.json", "predictions.csv",
                 "scatter.png", "learning_curves.png"):
        assert (out / name).is_file(), name
    assert "1 missing" in res.alignment and "1 failed" in res.alignment
    side = json.loads((out / "model.json").read_text())
    assert side["levels"] == ["block_a", "block_b"] and side["pooling"] == "narrow"
    assert side["features"]["weights"] == "toy.h5" and side["output"] == "mos"
    assert side["target"]["std"] > 0
    m = json.loads((out / "metrics.json").read_text())
    assert {"val", "test", "constant", "baseline_ridge"} <= set(m)
    assert m["baseline_ridge"]["test"]["srcc"] > 0.8  # linear truth: ridge nails it
    hist = list(csv.DictReader(open(out / "history.csv")))
    assert len(hist) == 4 and float(hist[0]["lr"]) == pytest.approx(1e-3)
    preds = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(preds) == 59 and {p["split"] for p in preds} == {"train", "val", "test"}
    truth = dict(zip(labels.ids, labels.mos))
    assert all(float(p["mos_true"]) == pytest.approx(truth[p["id"]]) for p in preds)


def test_load_trained_and_predict_store_agree(trained):
    from mlsp.inference.trained_head import predict_store

    path, ids, _, res = trained
    model, side = load_trained(res.out_dir)
    assert side == json.loads((res.out_dir / "model.json").read_text())
    rows = predict_store(res.out_dir, path, progress=False)
    assert len(rows) == 60 and rows[-1]["score"] is None
    pred = dict(zip(res.predictions["ids"], res.predictions["mos_pred"]))
    for r in rows[:-1]:
        assert r["score"] == pytest.approx(pred[r["id"]], rel=1e-5)


def test_model_store_mismatch_is_one_clear_line(trained, tmp_path):
    path, ids, _, res = trained
    _, side = load_trained(res.out_dir)
    check_compatible(side, path)  # the training store fits
    other, _ = make_store(tmp_path / "other.h5", config={**CONFIG, "weights": "other.h5",
                                                          "weights_sha256": "def"})
    with pytest.raises(StoreError) as err:
        check_compatible(side, other)
    msg = str(err.value)
    assert "\n" not in msg and "other.h5" in msg and "weights_sha256" in msg and "'abc'" in msg
    from mlsp.inference.trained_head import predict_store

    with pytest.raises(StoreError, match="crop_fraction"):
        make_store(tmp_path / "c.h5", config={**CONFIG, "crop_fraction": 0.5})
        predict_store(res.out_dir, tmp_path / "c.h5", progress=False)


def test_cli_train_and_evaluate(trained, tmp_path):
    from click.testing import CliRunner

    from mlsp.cli import main
    from mlsp.inference.commands import commands as scoring
    from mlsp.training.commands import commands, evaluate

    assert [c.name for c in commands] == ["train", "evaluate", "ablate", "compare"]
    assert [c.name for c in scoring] == ["predict", "models"]
    assert {c.name for c in (*commands, *scoring)} <= set(main.commands)
    path, ids, labels, res = trained
    lab = tmp_path / "labels.csv"
    lab.write_text("id,mos\n" + "".join(f"{i},{m}\n" for i, m in zip(labels.ids, labels.mos)))
    r = CliRunner().invoke(evaluate, [str(res.out_dir), str(path), "--labels", str(lab),
                                      "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    ev = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert ev["metrics"]["n"] == 59 and "SRCC" in r.output
    # --split needs a split: a one-line error, not a traceback; --test-list gives one
    r = CliRunner().invoke(evaluate, [str(res.out_dir), str(path), "--labels", str(lab),
                                      "--split", "test"])
    assert r.exit_code == 1 and "no split column, so no 'test' split" in r.output
    assert r.output.strip().count("\n") == 0
    (tmp_path / "test.txt").write_text("".join(f"{i}\n" for i in labels.ids[:10]))
    r = CliRunner().invoke(evaluate, [str(res.out_dir), str(path), "--labels", str(lab),
                                      "--test-list", str(tmp_path / "test.txt")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["n"] == 10


def test_cli_train_predict_and_ablate_levels(trained, tmp_path):
    from click.testing import CliRunner

    from mlsp.inference.commands import predict
    from mlsp.training.commands import ablate, train

    path, ids, labels, _ = trained
    lab = tmp_path / "labels.csv"
    lab.write_text("id,mos\n" + "".join(f"{i},{m}\n" for i, m in zip(labels.ids, labels.mos)))
    common = ["--labels", str(lab), "--epochs", "2", "--val-fraction", "0.2"]
    r = CliRunner().invoke(train, [str(path), *common, "--head", "single_3fc", "--lr", "1e-3",
                                   "--levels", "-1:",
                                   "--out", str(tmp_path / "m"), "--quiet", "--width", "16"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m" / "model.json").read_text())["levels"] == ["block_b"]
    r = CliRunner().invoke(predict, [str(tmp_path / "m"), "img001", "img059", "--features",
                                     str(path), "--format", "json", "-o", str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "p.json").read_text())
    assert rows[0]["score"] is not None and rows[1]["score"] is None and "broken" in rows[1]["error"]
    r = CliRunner().invoke(ablate, ["levels", str(path), *common, "--out", str(tmp_path / "ab")])
    assert r.exit_code == 0, r.output
    table = list(csv.DictReader(open(tmp_path / "ab" / "ablation_levels.csv")))
    assert [int(t["k"]) for t in table] == [1, 2] and [int(t["channels"]) for t in table] == [2, 5]
    assert (tmp_path / "ab" / "ablation_levels.png").is_file()


def test_test_time_average_skips_corner_grid_rows():
    """Corner Grid rows (M+MNet sec. 3.4) train a head; test-time scores average the crops."""
    from types import SimpleNamespace

    from mlsp.extract.augment import augmentation_names
    from mlsp.stores.reader import test_augmentations

    grid = SimpleNamespace(augmentations=list(augmentation_names("crops+grid")), n_aug=16)
    assert test_augmentations(grid) == list(range(8))
    plain = SimpleNamespace(augmentations=list(augmentation_names("crops")), n_aug=8)
    assert test_augmentations(plain) == list(range(8))


@pytest.mark.parametrize("kw, msg", [({"batch_size": 0}, "batch_size must be a positive"),
                                     ({"epochs": 0}, "epochs must be a positive"),
                                     ({"width": 0}, "width must be a positive"),
                                     ({"lr": -1e-4}, "lr must be a positive")])
def test_bad_numbers_are_refused_before_training(trained, tmp_path, kw, msg):
    path, _, labels, _ = trained
    with pytest.raises(ValueError, match=msg):
        train_head(path, labels, out_dir=tmp_path / "m", progress=False, **kw)
    assert not (tmp_path / "m").exists()  # nothing written for a refused run
