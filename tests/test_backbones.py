"""Tapped blocks against the papers' numbers, preprocessing, weights resolution."""
import socket

import keras
import numpy as np
import pytest

from mlsp.data import BUNDLED_WEIGHTS
from mlsp.extract.backbones import (
    WeightsUnavailableError, build_backbone, get_backbone, resolve_weights,
)
from mlsp.extract.model import MLSPModel


def _taps(name, alpha=1.0):
    bb = get_backbone(name)
    model = build_backbone(bb, alpha, resolve_weights(bb, alpha, "none"))
    names = bb.select_taps(model, alpha)
    return names, [int(model.get_layer(n).output.shape[-1]) for n in names]


def test_inception_resnet_v2_has_43_blocks_and_16928_channels():
    """MLSP sec. 3.1: "43 [blocks] in InceptionResNet-v2 (16,928 kernels)"."""
    names, channels = _taps("inception_resnet_v2")
    assert len(names) == 43 and sum(channels) == 16928
    assert names[0] == "mixed_5b" and names[1] == "block35_1_mixed"
    assert names[11] == "mixed_6a" and names[32] == "mixed_7a" and names[-1] == "block8_10_mixed"
    # 1 + 10 block35 + 1 + 20 block17 + 1 + 10 block8
    assert [n.split("_")[0] for n in names].count("block17") == 20


def test_inception_v3_has_11_blocks_and_10048_channels():
    names, channels = _taps("inception_v3")
    assert names == [f"mixed{k}" for k in range(11)]
    assert channels == [256, 288, 288, 768, 768, 768, 768, 768, 1280, 2048, 2048]
    assert sum(channels) == 10048


def test_mobilenet_v2_taps_by_hand():
    # alpha 0.35: block outputs make_divisible(int(f * 0.35), 8) for the 17 blocks, then 1280
    names, channels = _taps("mobilenet_v2", 0.35)
    assert len(names) == 18 and names[-1] == "out_relu"
    assert channels == [8, 8, 8, 16, 16, 16, 24, 24, 24, 24, 32, 32, 32, 56, 56, 56, 112, 1280]
    assert names[2] == "block_2_add" and names[1] == "block_1_project_BN"
    names, channels = _taps("mobilenet_v2", 1.0)
    assert sum(channels) == 16 + 2 * 24 + 3 * 32 + 4 * 64 + 3 * 96 + 3 * 160 + 320 + 1280


def test_mobilenet_v1_taps():
    names, channels = _taps("mobilenet", 0.25)
    assert len(names) == 13
    assert channels == [16, 32, 32, 64, 64, 128, 128, 128, 128, 128, 128, 256, 256]


def test_preprocessing_inside_the_model_equals_keras_preprocess_input():
    bb = get_backbone("mobilenet_v2")
    x = np.random.default_rng(0).integers(0, 256, size=(1, 4, 4, 3)).astype(np.float32)
    layer = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), bb.preprocess_input(x.copy()),
                               atol=1e-6)
    inc = get_backbone("inception_resnet_v2")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), inc.preprocess_input(x.copy()),
                               atol=1e-6)


def test_offline_imagenet_fails_at_once_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(WeightsUnavailableError) as err:
        resolve_weights(get_backbone("inception_resnet_v2"), 1.0, "imagenet")
    msg = str(err.value)
    assert "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg
    assert str(tmp_path / "models") in msg and "--weights PATH" in msg
    assert "\n" not in msg


def test_cached_imagenet_file_is_used_and_hashed(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    src = BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)]
    dst = tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    dst.write_bytes(src.read_bytes())
    resolved = resolve_weights(get_backbone("mobilenet_v2"), 0.35, "imagenet")
    assert resolved.path == str(dst)
    assert resolved.sha256 == "04af0032331eca800a501cbd14b1861ef1d07bfa5728325084bbe295e7ffaecb"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bad_weights_files(tmp_path):
    bb = get_backbone("mobilenet_v2")
    with pytest.raises(WeightsUnavailableError, match="not found"):
        resolve_weights(bb, 0.35, str(tmp_path / "nope.h5"))
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(WeightsUnavailableError, match="junk.weights.h5: cannot load"):
        MLSPModel("mobilenet_v2", 0.35, str(junk))
    with pytest.raises(WeightsUnavailableError, match="cannot load"):  # weights of another alpha
        MLSPModel("mobilenet_v2", 0.5, str(BUNDLED_WEIGHTS[("mobilenet_v2", 0.35)]))
    with pytest.raises(ValueError, match="unknown backbone"):
        get_backbone("vgg16")


def test_random_weights_are_seeded():
    a = MLSPModel("mobilenet_v2", 0.35, "none", wide_size=0, seed=1)
    b = MLSPModel("mobilenet_v2", 0.35, "none", wide_size=0, seed=1)
    x = np.random.default_rng(0).integers(0, 256, size=(2, 64, 80, 3)).astype(np.uint8)
    np.testing.assert_array_equal(a(x)["narrow"], b(x)["narrow"])
    assert "wide" not in a(x)
