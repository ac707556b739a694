"""``--head auto``: nested model selection (mlsp.training.selection).

The leak tests poison the test part and spy on what every inner fit receives; the choice
tests use features made so that one candidate cannot win: a MOS that is the *square* of
the features' signal (a linear model sees no rank order in it, a 3-layer net does), and a
head given a learning rate that cannot move it."""
import json
import zlib

import keras
import numpy as np
import pytest
from _mmstore import make_ext_store

import mlsp
from mlsp.labels import Labels
from mlsp.stores.features import FeatureStore
from mlsp.training.selection import select_model


class _Res:
    def __init__(self, srcc):
        self.metrics = {"test": {"srcc": srcc}}


def _labels(path, mos_of_signal, n_test=0):
    """Labels whose MOS is ``mos_of_signal(q)``, q the stored features' signal."""
    with FeatureStore.open(path) as fs:
        ids = list(fs.ids)
        q = np.asarray(fs.dataset("narrow")[:], np.float64).mean(axis=(1, 2)) / 1.5
    split = np.array(["train"] * len(ids), dtype=object)
    split[:n_test] = "test"
    return Labels(ids=ids, mos=5.0 + 2.0 * mos_of_signal(q), split=split,
                  score_range=(1.0, 10.0), source="synthetic")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_ext_store(tmp_path_factory.mktemp("sel") / "s.h5", n=150, kinds=())[0]


def test_the_test_part_never_reaches_an_inner_fit(store):
    """A spy fit sees every label set: no test id in any, and poisoning the test part's
    scores changes nothing although a fit that saw them would flip the choice."""
    seen = []

    def spy(path, labels, seed, options):
        seen.append(set(labels.ids))
        tr = labels.split != "test"
        # a 'score' that depends on the labels the fit got: a leak of the poisoned
        # (huge) test scores would make the head win
        m = float(np.mean(labels.mos[tr]))
        return _Res(m / 100 if options["head"] == "single_3fc" else 0.07)

    lab = _labels(store, lambda q: q, n_test=30)
    test_ids = set(lab.ids[:30])
    clean = select_model(store, lab, fit=spy)
    poisoned = Labels(ids=lab.ids, mos=np.where(lab.split == "test", 1e4, lab.mos),
                      split=lab.split, score_range=lab.score_range, source="poisoned")
    again = select_model(store, poisoned, fit=spy)
    assert len(seen) == 2 * 2 * 5  # 2 runs x 2 candidates x 5 inner folds
    assert all(not (ids & test_ids) for ids in seen)
    assert clean.winner == again.winner == "ridge"  # 0.05 < 0.07 on clean training scores
    assert clean.scores == again.scores
    assert clean.n_images == 120


def test_inner_folds_are_the_same_for_every_candidate(store):
    got = {}

    def spy(path, labels, seed, options):
        got.setdefault(options["head"], []).append(
            tuple(sorted(i for i, s in zip(labels.ids, labels.split) if s == "test")))
        return _Res(0.5)

    sel = select_model(store, _labels(store, lambda q: q), fit=spy)
    assert got["ridge"] == got["single_3fc"]
    folds = [set(f) for f in got["ridge"]]
    assert sum(map(len, folds)) == 150 and len(set().union(*folds)) == 150  # a partition
    assert sel.winner == "ridge"  # equal scores: the tie goes to ridge
    assert sel.margin[0] == 0.0


@pytest.mark.slow  # 10 real fits (about 3 minutes on 2 shared cores)
def test_ridge_is_chosen_where_the_head_cannot_learn(store):
    lab = _labels(store, lambda q: q)
    sel = select_model(store, lab, lr=1e-9, epochs=2, width=16)
    assert sel.winner == "ridge", sel.line()
    assert sel.summary["ridge"][0] > 0.9 and sel.margin[0] > 0.3
    keras.backend.clear_session()


@pytest.mark.slow  # 11 real fits
def test_the_head_is_chosen_where_ridge_cannot_win(store, tmp_path):
    lab = _labels(store, lambda q: q ** 2)  # symmetric in q: no linear rank order
    head = mlsp.train(store, lab, head="auto", width=64, epochs=60, test_fraction=0.2)
    sel = head.training.metrics["selection"]
    assert sel["winner"] == "single_3fc", sel["line"]
    assert sel["summary"]["ridge"][0] < 0.4 < sel["summary"]["single_3fc"][0]
    assert sel["margin"][1] > 0  # the interval of the paired margin excludes zero
    assert head.sidecar["head"] == "single_3fc"
    head.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "model.json").read_text())
    assert saved["selected_by"]["winner"] == "single_3fc"
    assert saved["selected_by"]["candidates"] == ["ridge", "single_3fc"]
    keras.backend.clear_session()


def test_auto_is_the_default_and_drops_what_cannot_train(store):
    from mlsp.training.config import DEFAULTS
    from mlsp.training.selection import usable_candidates

    assert DEFAULTS.head == "auto"
    names, skipped = usable_candidates(("ridge", "single_3fc"), {"output": "distribution"})
    assert names == ("single_3fc",) and "mos only" in skipped["ridge"]


@pytest.mark.slow  # one ridge fit and its reference (about a minute on 2 shared cores)
def test_ridge_reports_a_held_out_validation_figure(store):
    """``head="ridge"`` without folds: the val figure comes from a ridge fit on the
    training images only (checked against scikit-learn), the saved model is refit on
    train + val, and no verdict compares ridge with itself."""
    from scipy import stats

    from mlsp.heads.baseline import fit_baseline

    lab = _labels(store, lambda q: q + 0.3 * np.sin(7 * q)).with_split(0.2, seed=1)
    res = mlsp.train(store, lab, head="ridge").training
    with FeatureStore.open(store) as fs:
        x = np.asarray(fs.dataset("narrow")[:], np.float64).mean(axis=1)
    tr, va = lab.split == "train", lab.split == "val"
    pipe = fit_baseline(x[tr], lab.mos[tr])
    want = stats.spearmanr(pipe.predict(x[va]), lab.mos[va])[0]
    assert res.metrics["val"]["n"] == int(va.sum())
    assert res.metrics["val"]["srcc"] == pytest.approx(want, abs=2e-3)
    assert res.sidecar["train"]["n_fit"] == int((tr | va).sum())
    assert res.metrics["verdict"] == ""
    assert "ridge SRCC" not in res.summary()
    keras.backend.clear_session()


def _cv(models, head, ridge):
    from mlsp.training.crossval import CVResult

    rows = []
    for j, (m, h, r) in enumerate(zip(models, head, ridge)):
        rows += [{"seed": 0, "fold": j, "row": "head", "model": m, "srcc": h},
                 {"seed": 0, "fold": j, "row": "baseline_ridge", "model": "baseline_ridge",
                  "srcc": r}, {"seed": 0, "fold": j, "row": "constant", "srcc": 0.0}]
    return CVResult(folds=len(models), seeds=(0,), rows=rows, oof={},
                    models=[(None, {"head": m}) for m in models], test_fraction=0.5)


def test_cross_validation_names_the_saved_models_and_a_loss():
    from mlsp.training.cv_report import saved_line

    lost = _cv(["single_3fc", "ridge", "single_3fc"], [0.50, 0.60, 0.52], [0.60, 0.60, 0.61])
    assert "ensemble of the 3 fold models of seed 0 (single_3fc x2, ridge x1)" in saved_line(lost)
    assert "LOST to ridge on these folds (SRCC 0.541 vs 0.603)" in saved_line(lost)
    assert lost.verdict().startswith("auto's choice (single_3fc in 2, ridge in 1 folds)")
    won = _cv(["single_3fc"] * 3, [0.70, 0.72, 0.71], [0.60, 0.60, 0.61])
    assert "LOST" not in saved_line(won) and won.verdict().startswith("the head (single_3fc) beats")
    same = _cv(["ridge"] * 3, [0.60, 0.60, 0.61], [0.60, 0.60, 0.61])
    assert same.verdict() == "" and "LOST" not in saved_line(same)  # never ridge vs itself


class _Pred(_Res):
    """A stub fit's result with predictions: the inner test images' scores."""

    def __init__(self, labels, score_of):
        from scipy.stats import spearmanr

        t = np.asarray(labels.split) == "test"
        pred = score_of(labels)
        super().__init__(float(spearmanr(pred[t], labels.mos[t])[0]))
        self.predictions = {"ids": list(labels.ids), "split": np.asarray(labels.split),
                            "mos_true": labels.mos, "mos_pred": pred}


def _noisy(sd_by_head, seed=0):
    """A stub fit whose score is the MOS plus noise of ``sd_by_head[head]`` (fixed per image
    and head, so every fold sees the same scores)."""
    def fit(path, labels, seed_, options):
        sd = sd_by_head[options["head"]]
        noise = np.array([np.random.default_rng([seed, zlib.crc32(f"{i}".encode()),
                                                 zlib.crc32(options["head"].encode())]).normal()
                          for i in labels.ids])
        return _Pred(labels, lambda lab: lab.mos + sd * noise * np.std(lab.mos))
    return fit


def test_pooled_margin_is_the_srcc_difference_with_a_bootstrap_se():
    from scipy.stats import spearmanr

    from mlsp.training.selection import pooled_margin

    rng = np.random.default_rng(3)
    mos = rng.normal(size=200)
    a, b = mos + rng.normal(size=200) * 0.5, mos + rng.normal(size=200) * 1.5
    d, lo, hi, se = pooled_margin(mos, a, b, seed=1)
    want = spearmanr(a, mos)[0] - spearmanr(b, mos)[0]
    assert d == pytest.approx(want, abs=1e-12)
    assert -2 <= lo < d < hi <= 2 and 0.01 < se < 0.2
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.35)  # percentile vs normal width
    assert pooled_margin(mos, a, b, seed=1) == (d, lo, hi, se)  # seeded: repeatable


def test_the_rule_is_non_inferiority_with_the_tolerated_margin():
    """Hand-computed: replace when ahead and d - 1.645 se > -0.02 (the cases measured on
    real folds: OASIS 480 fold 0, OASIS 60 fold 0, LIVE Challenge 465)."""
    from mlsp.training.selection import TOLERANCE, replaces

    assert TOLERANCE == 0.02
    assert replaces(0.017, 0.015)          # 0.017 - 0.0247 = -0.008 > -0.02
    assert replaces(0.003, 0.011)          # 0.003 - 0.0181 = -0.015: a small, sure lead
    assert not replaces(0.129, 0.157)      # 0.129 - 0.258 = -0.13: 60 photos, unsure
    assert not replaces(0.01, 0.0183)      # 0.01 - 0.0301 = -0.0201: just outside
    assert replaces(0.01, 0.0181)          # 0.01 - 0.0298 = -0.0198: just inside
    assert not replaces(-0.001, 0.0) and not replaces(0.0, 0.0)  # behind or level: keep
    assert not replaces(float("nan"), 0.01) and not replaces(0.05, float("nan"))
    assert replaces(0.01, 0.05, tolerance=0.1) and not replaces(0.01, 0.05)


def test_an_unsure_lead_keeps_ridge(store):
    """The head's pooled SRCC is higher, but its lower bound is beyond the tolerance: ridge,
    the simpler, stays (the mean-of-folds rule, which took any lead, picked the head)."""
    from mlsp.training.selection import replaces

    lab = _labels(store, lambda q: q)
    sel = select_model(store, lab, fit=_noisy({"ridge": 0.60, "single_3fc": 0.57}))
    assert sel.pooled["single_3fc"] > sel.pooled["ridge"]
    assert np.mean(sel.scores["single_3fc"]) > np.mean(sel.scores["ridge"])
    assert sel.winner == "ridge" and sel.runner_up == "single_3fc"
    lead = -sel.margin[0]
    assert lead > 0 and lead - 1.645 * sel.margin_se < -0.02 and not replaces(lead, sel.margin_se)
    assert "the simpler model" in sel.line() and "pooled out-of-fold SRCC" in sel.line()


def test_a_small_sure_lead_picks_the_head(store):
    """Ahead by less than one standard error but surely not 0.02 behind: the head (the
    one-standard-error rule, the second rule, kept ridge here)."""
    lab = _labels(store, lambda q: q)
    sel = select_model(store, lab, fit=_noisy({"ridge": 0.30, "single_3fc": 0.28}))
    d, se = sel.margin[0], sel.margin_se
    assert sel.winner == "single_3fc" and 0 < d < se and d - 1.645 * se > -0.02
    assert "ahead; one-sided 95% lower bound" in sel.line()


def test_a_clear_lead_picks_the_head(store):
    lab = _labels(store, lambda q: q)
    sel = select_model(store, lab, fit=_noisy({"ridge": 3.0, "single_3fc": 0.2}))
    assert sel.winner == "single_3fc"
    assert sel.margin[0] > sel.margin_se and sel.margin[1] > 0
    assert "ahead; one-sided 95% lower bound" in sel.line()
