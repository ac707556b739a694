"""Mixed precision and M+MNet's delayed entry (sec. 3.3, Eq. 5) on scripted overflow
sequences, the gradient monitor, and a 3-epoch ``precision="auto"`` training."""
import keras
import numpy as np
import pytest
from _mmstore import make_ext_store

from mlsp.training.precision import (DelayedEntryRule, MonitoredAdam, OverflowMonitor,
                                     overflowed)
from mlsp.inference.model_format import read_model as load_trained
from mlsp.training.trainer import train_head


def _switch(flags):
    rule = DelayedEntryRule()
    thetas = []
    for f in flags:
        theta, switch = rule.update(f)
        thetas.append(round(theta, 6))
        if switch:
            break
    return rule.switch_epoch, thetas


def test_theta_never_overflowing():
    # E = 1, O = 0: theta = -0.2 <= 0 -> mixed precision from epoch 2 (0-based index 1)
    assert _switch([False] * 10) == (1, [-0.2])


def test_theta_early_overflows():
    # overflow in epochs 1-3, then clean: O = 1,2,3,3,3,2,1 for E = 1..7
    # theta = 0.8, 3.6, 8.4, 8.2, 8.0, 2.8, -0.4 -> switch after epoch 7
    sw, th = _switch([True, True, True] + [False] * 20)
    assert sw == 7 and th == [0.8, 3.6, 8.4, 8.2, 8.0, 2.8, -0.4]


def test_theta_single_overflow_needs_five_epochs():
    # O = 1 for E = 1..5: theta = 0.8, 0.6, 0.4, 0.2, 0.0 -> 0 <= 0 switches at E = 5
    sw, th = _switch([True] + [False] * 10)
    assert sw == 5 and th == [0.8, 0.6, 0.4, 0.2, 0.0]


def test_theta_persistent_overflow_eventually_switches():
    # O = 5 once E >= 5: theta = 25 - 0.2 E <= 0 at E = 125
    sw, th = _switch([True] * 200)
    assert sw == 125 and th[-1] == 0.0
    # two of the last five overflowing: 4 - 0.2 E <= 0 at E = 20
    sw2, _ = _switch([True, False, False, True, False] * 10)
    assert sw2 == 20


def test_overflow_threshold():
    assert not overflowed(65504.0) and overflowed(65504.5)
    assert overflowed(float("inf")) and overflowed(float("nan")) and not overflowed(0.0)


def test_monitored_adam_records_gradient_and_overflow():
    x = keras.Input((1,))
    m = keras.Model(x, keras.layers.Dense(1, use_bias=False,
                                          kernel_initializer=keras.initializers.Constant(3.0))(x))
    m.compile(optimizer=MonitoredAdam(learning_rate=0.0), loss="mse")
    mon = OverflowMonitor()
    # loss (3 x - 0)^2 at x = 1: dL/dw = 2 * 3 * 1 = 6
    h = m.fit(np.ones((1, 1), "float32"), np.zeros((1, 1), "float32"), epochs=1, verbose=0,
              callbacks=[mon])
    assert h.history["grad_absmax"][0] == pytest.approx(6.0)
    assert h.history["grad_overflow"][0] == 0.0 and h.history["theta"][0] == pytest.approx(-0.2)
    # x = 1e3: dL/dw = 2 * 3e3 * 1e3 = 6e6 > 65504 -> an overflowing epoch (new monitor)
    mon2 = OverflowMonitor()
    h2 = m.fit(np.full((1, 1), 1e3, "float32"), np.zeros((1, 1), "float32"), epochs=1,
               verbose=0, callbacks=[mon2])
    assert h2.history["grad_absmax"][0] == pytest.approx(6e6, rel=1e-5)
    assert h2.history["grad_overflow"][0] == 1.0 and h2.history["theta"][0] == pytest.approx(0.8)
    keras.backend.clear_session()


@pytest.fixture(scope="module")
def ext_store(tmp_path_factory):
    return make_ext_store(tmp_path_factory.mktemp("pr") / "s.h5", kinds=())


def test_auto_precision_three_epochs(ext_store, tmp_path):
    path, labels = ext_store
    res = train_head(path, labels, head="single_3fc", precision="auto", epochs=3, width=16,
                     batch_size=16, lr=1e-3, out_dir=tmp_path / "m", progress=False,
                     baseline=False, plots=False, step_epochs=None, patience=None,
                     stop_patience=None)
    assert res.history["mixed_precision"] == [0.0, 1.0, 1.0]
    assert res.sidecar["train"]["precision_switch_epoch"] == 1
    assert res.history["grad_overflow"][0] == 0.0
    assert len(res.history["loss"]) == 3 and np.isfinite(res.history["loss"]).all()
    assert res.model.layers[1].dtype_policy.name == "mixed_float16"
    model, _ = load_trained(tmp_path / "m")
    assert np.isfinite(res.predictions["mos_pred"]).all()
    assert (tmp_path / "m" / "history.csv").read_text().splitlines()[0].count("mixed_precision")
    keras.backend.clear_session()


def test_mixed_float16_uses_loss_scaling(ext_store, tmp_path):
    path, labels = ext_store
    res = train_head(path, labels, head="single_1fc", precision="mixed_float16", epochs=1,
                     batch_size=16, out_dir=tmp_path / "m", progress=False, baseline=False,
                     plots=False)
    assert res.sidecar["train"]["precision"] == "mixed_float16"
    assert np.isfinite(res.predictions["mos_pred"]).all()
    keras.backend.clear_session()


def test_mixed_bfloat16_wide_head_trains_and_saves_float32_output(ext_store, tmp_path):
    """bf16 mixed precision (used for the Pool-3FC row of bench_quality.py): the wide head
    trains with finite losses, its output is float32, and the saved model reloads and
    predicts the same scores."""
    path, labels = ext_store
    res = train_head(path, labels, head="pool_3fc", precision="mixed_bfloat16", epochs=2,
                     width=16, batch_size=16, out_dir=tmp_path / "m", progress=False,
                     baseline=False, plots=False)
    assert res.sidecar["train"]["precision"] == "mixed_bfloat16"
    assert np.isfinite(res.history["loss"]).all()
    assert any(getattr(layer, "dtype_policy", None) is not None
               and layer.dtype_policy.name == "mixed_bfloat16" for layer in res.model.layers)
    assert res.model.outputs[0].dtype == "float32"
    import mlsp

    again = {r["id"]: r["score"] for r in mlsp.load(tmp_path / "m").predict_store(path)}
    got = dict(zip(res.predictions["ids"], res.predictions["mos_pred"]))
    assert got and set(got) <= set(again)
    np.testing.assert_allclose([got[i] for i in got], [again[i] for i in got], atol=0.05)
    keras.backend.clear_session()
