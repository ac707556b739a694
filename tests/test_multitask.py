"""MTP-NasNet (Sun and Zhou): multi-task loss (Eq. 1-4) with learned uncertainty weights,
the binary margin (sec. 4.3), style tags, variance weights (sec. 3.3), by hand."""
import math

import keras
import numpy as np
import pytest
from _mmstore import make_ext_store

from mlsp.heads.multitask import (MTL_INIT_LOG_SIGMA, MultiTaskModel, build_multitask_net,
                                  multitask_total, pack_targets, tag_vocabulary)
from mlsp.training.targets import variance_weights
from mlsp.inference.model_format import read_model as load_trained
from mlsp.training.trainer import train_head


def _f(x):
    return float(keras.ops.convert_to_numpy(x))


def test_total_loss_eq1_by_hand():
    # s = log sigma = (0.5, 0.9, 0.6), lambda = (0.15, 0.06); L_dis, L_two, L_sty = 1, 2, 3
    want = (0.5 * math.exp(-1.0) * 1 + 0.5 + 0.5 * math.exp(-1.8) * 0.15 * 2 + 0.9
            + 0.5 * math.exp(-1.2) * 0.06 * 3 + 0.6)
    assert _f(multitask_total(1.0, 2.0, 3.0, np.array(MTL_INIT_LOG_SIGMA, "float32"))) == \
        pytest.approx(want, rel=1e-6)
    # without a style task: two terms
    want2 = 0.5 * math.exp(-1.0) + 0.5 + 0.5 * math.exp(-1.8) * 0.15 * 2 + 0.9
    assert _f(multitask_total(1.0, 2.0, None, np.array([0.5, 0.9], "float32"))) == \
        pytest.approx(want2, rel=1e-6)


def test_pack_targets_margin_and_tags():
    dist = np.eye(3)[[0, 1, 2, 2]] * 1.0
    mos = np.array([3.0, 5.5, 6.5, 5.0])
    tags = np.array([[0, 0], [7, 2], [2, 0], [9, 9]])
    vocab = tag_vocabulary(tags[:3])           # tags of the training rows: 2, 7
    assert vocab.tolist() == [2, 7]
    y = pack_targets(dist, mos, threshold=5.0, margin=1.0, tags=tags, vocab=vocab)
    assert y.shape == (4, 3 + 2 + 2 + 1)
    assert y[:, 3].tolist() == [0, 1, 1, 0]          # MOS > 5
    assert y[:, 4].tolist() == [1, 0, 1, 0]          # |MOS - 5| >= 1 kept, else left out
    assert np.allclose(y[:, 5:7], [[0, 0], [0.5, 0.5], [1, 0], [0, 0]])  # multi-hot / count
    assert y[:, 7].tolist() == [0, 1, 1, 0]          # tag 9 is not in the vocabulary
    assert pack_targets(dist, mos).shape == (4, 5)   # no tags, no margin
    assert pack_targets(dist, mos)[:, 4].tolist() == [1, 1, 1, 1]


def test_task_losses_by_hand():
    net = build_multitask_net(4, n_bins=2, n_tags=2, width=8, seed=0)
    m = MultiTaskModel(net, 2, 2)
    assert np.allclose(keras.ops.convert_to_numpy(m.log_sigma), MTL_INIT_LOG_SIGMA)
    # two images, 2 bins, binary, 2 tags: [dist(2) | bin | bmask | tags(2) | tmask]
    y = np.array([[1, 0, 1, 1, 1, 0, 1],
                  [0, 1, 0, 0, 0, 0, 0]], "float32")
    dist = np.array([[0.5, 0.5], [0, 1]], "float32")        # EMD r=2: sqrt(0.25/2), 0
    binp = np.array([[0.2, 0.8], [0.5, 0.5]], "float32")    # image 2 masked out
    tagp = np.array([[0.25, 0.75], [0.5, 0.5]], "float32")  # image 2 untagged
    l_dis, l_two, l_sty = m.task_losses(y, [dist, binp, tagp], np.array([2.0, 1.0]))
    assert _f(l_dis) == pytest.approx(2 * math.sqrt(0.125) / 2, rel=1e-4)   # weighted mean
    assert _f(l_two) == pytest.approx(-math.log(0.8), rel=1e-5)
    assert _f(l_sty) == pytest.approx(-math.log(0.25), rel=1e-5)
    total = m.compute_loss(y=y, y_pred=[dist, binp, tagp], sample_weight=np.array([2.0, 1.0]))
    assert _f(total) == pytest.approx(_f(multitask_total(l_dis, l_two, l_sty, m.log_sigma)))
    keras.backend.clear_session()


def test_variance_weights_by_hand():
    s = np.arange(1, 6)
    # var of (0, .5, 0, .5, 0) = 1; of (.25, 0, 0, 0, .75): mean 4, var .25*9 + .75*1 = 3
    p = np.array([[0, .5, 0, .5, 0], [.25, 0, 0, 0, .75]])
    # v = 2, 1 / (var + v) = (1/3, 1/5), mean 4/15 -> (1.25, 0.75)
    assert np.allclose(variance_weights(p, s), [1.25, 0.75])
    # only training rows set the scale: row 3 (var 0) weighs (1/2) / (4/15) = 1.875
    p3 = np.vstack([p, [0, 0, 1, 0, 0]])
    assert np.allclose(variance_weights(p3, s, [True, True, False]), [1.25, 0.75, 1.875])


@pytest.fixture(scope="module")
def ext_store(tmp_path_factory):
    return make_ext_store(tmp_path_factory.mktemp("mt") / "s.h5")


def test_train_multitask_head(ext_store, tmp_path):
    path, labels = ext_store
    res = train_head(path, labels, head="multitask", epochs=2, batch_size=16, lr=1e-3, width=16,
                     binary_margin=0.5, sample_weights="variance", out_dir=tmp_path / "m",
                     progress=False, baseline=False, plots=False)
    assert res.sidecar["output"] == "distribution" and res.sidecar["train"]["tags"] == [1, 2, 3]
    assert np.isfinite(res.history["loss"]).all()
    model, _ = load_trained(tmp_path / "m")
    assert tuple(model.output_shape) == (None, 10)   # saved: the distribution output only
    keras.backend.clear_session()


def test_variance_weights_need_distributions(ext_store, tmp_path):
    path, labels = ext_store
    nodist = type(labels)(ids=labels.ids, mos=labels.mos, split=labels.split)
    with pytest.raises(ValueError, match="distributions"):
        train_head(path, nodist, sample_weights="variance", epochs=1, out_dir=tmp_path,
                   progress=False, baseline=False, plots=False)


def test_cli_train_passes_binary_margin(ext_store, tmp_path):
    from click.testing import CliRunner

    from mlsp.training.commands import train

    path, labels = ext_store
    csv = tmp_path / "labels.csv"
    rows = ["id,mos," + ",".join(f"p{k}" for k in range(1, 11)) + ",split"]
    for i, m, d, s in zip(labels.ids, labels.mos, labels.distribution, labels.split):
        rows.append(f"{i},{m:.6f}," + ",".join(f"{v:.6f}" for v in d) + f",{s}")
    csv.write_text("\n".join(rows) + "\n")
    r = CliRunner().invoke(train, [str(path), "--labels", str(csv), "--head", "multitask",
                                   "--binary-margin", "0.75", "--epochs", "1", "--batch-size",
                                   "16", "--width", "16", "--out", str(tmp_path / "m"), "--quiet"])
    assert r.exit_code == 0, r.output
    _, side = load_trained(tmp_path / "m")
    assert side["train"]["binary_margin"] == 0.75 and side["head"] == "multitask"
    keras.backend.clear_session()
