"""The size-dependent training regime, input standardization, and the ridge reference."""
import numpy as np
import pytest

from mlsp.errors import OptionError
from mlsp.labels import Labels
from mlsp.training.config import AUTO_ALL_BELOW, PAPER_SET, SMALL_SET, TrainConfig, regime
from mlsp.training.fit import feature_moments
from mlsp.labels.split import split_labels
from mlsp.training.trainer import ridge_verdict


def test_regime_switches_at_the_documented_size():
    assert regime(900) == SMALL_SET and regime(AUTO_ALL_BELOW - 1) == SMALL_SET
    assert regime(AUTO_ALL_BELOW) == PAPER_SET and regime(235_000) == PAPER_SET
    assert PAPER_SET == {"lr": 1e-4, "normalize_inputs": False, "val_fraction": 0.05}  # sec 3.3


def test_auto_values_resolve_and_explicit_ones_stay():
    cfg = TrainConfig().resolved()
    small, large = cfg.for_size(700), cfg.for_size(200_000)
    assert (small.lr, small.normalize_inputs) == (1e-3, True)
    assert (large.lr, large.normalize_inputs) == (1e-4, False)
    mine = TrainConfig(lr=5e-4, normalize_inputs=False).resolved().for_size(700)
    assert (mine.lr, mine.normalize_inputs) == (5e-4, False)
    with pytest.raises(OptionError, match="lr must be a positive number or 'auto'"):
        TrainConfig(lr="fast").resolved()
    with pytest.raises(OptionError, match="val_fraction"):
        TrainConfig(val_fraction=1.5).resolved()


@pytest.mark.parametrize("n, n_val", [(100, 10), (30_000, 1_500)])
def test_auto_validation_share(n, n_val):
    lab = Labels(ids=[f"i{k}" for k in range(n)], mos=np.linspace(1, 7, n), score_range=(1, 7))
    split = split_labels(lab, "auto", seed=0).split
    assert (split == "val").sum() == n_val and (split == "test").sum() == 0


def test_auto_validation_share_counts_images_left_after_the_test_split():
    n = 21_000  # 21,000 images, 2,000 for test: 19,000 left is a small set (10%)
    lab = Labels(ids=[f"i{k}" for k in range(n)], mos=np.linspace(1, 7, n), score_range=(1, 7))
    split = split_labels(lab, "auto", 0, test_ids=lab.ids[:2000]).split
    assert (split == "test").sum() == 2000 and (split == "val").sum() == 1900


class _Feats:
    def __init__(self, x):
        self.x = x

    def get(self, rows):
        return self.x[rows]


def test_standardization_moments_by_hand_and_near_constant_channels_only_centred():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (50, 8, 4)).astype(np.float32)
    x[..., 2] = 0.5                 # a dead channel: constant on the training rows
    x[..., 3] = 1e-6 * x[..., 3]    # all but constant
    mean, var = feature_moments(_Feats(x), np.arange(50), block=7)
    flat = x.reshape(-1, 4).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(var[:2], flat[:, :2].var(0), rtol=1e-5)
    assert var[2] == 1.0 and var[3] == 1.0   # centred only, never divided by ~0


def test_ridge_verdict_only_when_the_head_does_not_win():
    m = {"val": {"srcc": 0.70}, "baseline_ridge": {"val": {"srcc": 0.72}}}
    line = ridge_verdict(m)
    assert "does not beat the ridge baseline" in line and "0.700 vs 0.720" in line
    assert ridge_verdict({"val": {"srcc": 0.75}, "baseline_ridge": {"val": {"srcc": 0.72}}}) == ""
    assert ridge_verdict({"val": None, "baseline_ridge": {}}) == ""


def test_ridge_is_refit_on_train_and_val_for_the_test_figures(tmp_path):
    from _mmstore import make_ext_store

    from mlsp.training.trainer import train

    path, lab = make_ext_store(tmp_path / "s.h5", n=40, kinds=())
    lab.split = None
    res = train(path, lab, head="single_3fc", epochs=1, batch_size=16, test_fraction=0.25)
    t = res.sidecar["train"]
    assert (t["lr"], t["normalize_inputs"], t["regime"]) == (1e-3, True, "small set")
    ridge = res.metrics["baseline_ridge"]
    assert ridge["fit_rows"] == t["n_train"]
    assert ridge["test_fit_rows"] == t["n_train"] + t["n_val"]
    assert ridge["test"]["n"] == t["n_test"] == 10
    # the standardization travels inside the saved model
    assert any(layer.name == "standardize" for layer in res.model.layers)


def test_cli_takes_explicit_values_over_the_regime(tmp_path):
    import csv
    import json

    from click.testing import CliRunner
    from _mmstore import make_ext_store

    from mlsp.training.commands import train

    path, lab = make_ext_store(tmp_path / "s.h5", n=40, kinds=())
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows([("id", "mos"), *zip(lab.ids, lab.mos)])
    r = CliRunner().invoke(train, [str(path), "--labels", str(labels), "--epochs", "1",
                                   "--head", "single_3fc", "--lr", "1e-4", "--normalize-inputs", "off",
                                   "--val-fraction", "0.2", "--quiet", "--out",
                                   str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    t = json.loads((tmp_path / "m" / "model.json").read_text())["train"]
    assert (t["lr"], t["normalize_inputs"], t["n_val"]) == (1e-4, False, 8)
    r = CliRunner().invoke(train, [str(path), "--labels", str(labels), "--lr", "fast"])
    assert r.exit_code != 0 and "neither a number nor 'auto'" in r.output


def test_standardize_layer_by_hand_and_through_a_saved_model(tmp_path):
    """The standardization is weights of the model (ONNX export needs them as constants):
    (x - mean) / std, and the same after model.keras is saved and loaded in safe mode."""
    import keras

    from mlsp.layers.standardize import Standardize

    inp = keras.Input((3,))
    layer = Standardize(name="standardize")
    model = keras.Model(inp, layer(inp))
    layer.set_moments([1.0, -2.0, 0.0], [4.0, 0.25, 1.0])
    x = np.array([[3.0, -1.0, 5.0]], "float32")
    want = [[(3 - 1) / 2, (-1 + 2) / 0.5, 5.0]]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), want, rtol=1e-6)
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back(x)), want, rtol=1e-6)
