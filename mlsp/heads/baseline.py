"""Classic (non-deep) baseline on narrow MLSP features.

Used on the per-image mean over the stored augmentations of the narrow
features, in the spirit of BLINDER's SVR on pooled features (cited in MLSP
sec. 3.2.1) -- a reference point for the Keras heads.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

SVR_C_GRID = (0.1, 1.0, 10.0)


def fit_baseline(X_train, y_train, kind="ridge", alphas=(0.1, 1, 10, 100, 1e3, 1e4, 1e5),
                 seed: int = 0, holdout: float = 0.2, sample_weight=None) -> Pipeline:
    """Fit StandardScaler + regressor on (N, C) features and (N,) MOS.

    ``kind="ridge"``: RidgeCV over ``alphas`` (efficient leave-one-out CV), with optional
    per-image ``sample_weight`` (the ridge head's variance weights).
    ``kind="svr"``: SVR with an RBF kernel (gamma='scale', epsilon=0.1); C is
    picked from ``SVR_C_GRID`` by MSE on a seeded held-out ``holdout``
    fraction of the training data, then the pipeline is refit on all of it
    (the chosen C is in ``pipeline.named_steps['svr'].C``).  With fewer than
    10 samples C=1 is used without a search.
    """
    X = np.asarray(X_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"fit_baseline: X {X.shape} and y {y.shape} do not match")
    if kind == "ridge":
        pipe = Pipeline([("scale", StandardScaler()),
                         ("ridge", RidgeCV(alphas=tuple(float(a) for a in alphas)))])
        if sample_weight is None:
            return pipe.fit(X, y)
        return pipe.fit(X, y, ridge__sample_weight=np.asarray(sample_weight, np.float64))
    if kind != "svr":
        raise ValueError(f"fit_baseline: kind must be 'ridge' or 'svr', got {kind!r}")

    def make(c):
        return Pipeline([("scale", StandardScaler()), ("svr", SVR(kernel="rbf", C=c))])

    best_c = 1.0
    n = X.shape[0]
    if n >= 10:
        perm = np.random.default_rng(seed).permutation(n)
        n_hold = max(2, int(round(holdout * n)))
        hold, fit = perm[:n_hold], perm[n_hold:]
        errors = []
        for c in SVR_C_GRID:
            pred = make(c).fit(X[fit], y[fit]).predict(X[hold])
            errors.append(float(np.mean((pred - y[hold]) ** 2)))
        best_c = SVR_C_GRID[int(np.argmin(errors))]
    return make(best_c).fit(X, y)
