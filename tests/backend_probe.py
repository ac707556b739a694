"""Run under one Keras backend (KERAS_BACKEND set by the caller): features, a head, losses.

Writes an .npz that tests/test_backends.py compares across backends.
"""
import sys

import numpy as np


def main(out, head_weights):
    import keras

    from mlsp.extract.model import MLSPModel
    from mlsp.heads import build_head
    from mlsp.heads.losses import emd_loss

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(2, 96, 120, 3)).astype(np.uint8)
    model = MLSPModel("mobilenet_v2", 0.35, "bundled", pooling=("area", "fore", "back", "spp"))
    feats = model(batch)
    head = build_head("single_3fc", model.channels)
    head.load_weights(head_weights)
    x = rng.standard_normal((4, model.channels)).astype(np.float32)
    scores = keras.ops.convert_to_numpy(head(x, training=False))
    p = rng.dirichlet(np.ones(10), size=4).astype(np.float32)
    q = rng.dirichlet(np.ones(10), size=4).astype(np.float32)
    emd = keras.ops.convert_to_numpy(emd_loss(2)(p, q))
    np.savez(out, scores=scores, emd=emd, backend=keras.backend.backend(), **feats)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
