"""Command-line: ``mlsp train``, ``mlsp evaluate``, ``mlsp predict``, ``mlsp ablate levels``,
``mlsp compare``.

Registered by the main ``mlsp`` group (:mod:`mlsp.cli`) from ``commands``.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import click

from ..errors import MLSPError, one_line
from ..heads.registry import HEAD_CHOICES, HEAD_NAMES, heads_for
from ..inference.photos import needs_backend
from ..options import NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_INT
from ..vocabulary import (FEATURE_KINDS, FEED_MODES, LOSSES, OBJECTIVES, OUTPUTS,
                          PRECISIONS, PREDICT_RUNTIMES, SAMPLE_WEIGHTS, canonical)
from .config import DEFAULTS

__all__ = ["commands", "train", "evaluate", "predict", "models", "ablate", "compare_cmd"]

#: What a library call may raise for bad input: each becomes a one-line error.
USER_ERRORS = (MLSPError, ValueError, FileNotFoundError, KeyError)


class Names(click.Choice):
    """A choice of names in which ``-`` and ``_`` are the same (``single-3fc``)."""

    def __init__(self, names):
        super().__init__(list(names))

    def convert(self, value, param, ctx):
        return super().convert(canonical(value) if isinstance(value, str) else value, param, ctx)


class AutoFloat(click.ParamType):
    """A number, or ``auto`` (the value follows the collection's size: config.regime)."""

    name = "number|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            return float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a number nor 'auto'", param, ctx)


AUTO_FLOAT = AutoFloat()
LR_HELP = "Adam's learning rate; auto: 1e-3 below 20,000 training images, else 1e-4 (paper)."
VAL_HELP = "Share of the images that validate; auto: 10% below 20,000 images, else 5% (paper)."


def _fail(err):
    raise click.ClickException(one_line(err))


def _test_ids(test_list) -> dict:
    """``{"test_ids": [...]}`` from ``--test-list`` (nothing without one).  The labels are
    not split here: the library aligns them to the store, then splits
    (:func:`mlsp.labels.split.align_and_split`), the same through every door."""
    from ..labels import read_id_list

    return {"test_ids": read_id_list(test_list)} if test_list else {}


_CV_OPTIONS = [
    click.option("--folds", default=0, show_default=True, type=click.IntRange(min=0),
                 help="K >= 2: K-fold cross-validation (mean and 95% interval over K folds; "
                      "train saves the fold ensemble). 0: one train/val split."),
    click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1),
                 help="With --folds: repeat with this many seeds (--seed, --seed+1, ...).")]


def _cv(folds, seeds, seed) -> dict:
    if folds == 1:
        raise ValueError("--folds must be 0 (one split) or at least 2")
    return {"folds": folds, "seeds": tuple(range(seed, seed + seeds))}


def _training_run_options(fn):
    """The options every ``ablate pooling`` / ``ablate objective`` run shares."""
    for opt in reversed([
            click.option("--epochs", default=DEFAULTS.epochs, show_default=True, type=POSITIVE_INT),
            click.option("--lr", default=DEFAULTS.lr, show_default=True, type=AUTO_FLOAT, help=LR_HELP),
            click.option("--batch-size", default=DEFAULTS.batch_size, show_default=True,
                         type=POSITIVE_INT),
            click.option("--seed", default=DEFAULTS.seed, show_default=True, type=NONNEGATIVE_INT),
            click.option("--test-list", type=click.Path(exists=True)),
            click.option("--val-fraction", default=DEFAULTS.val_fraction, show_default=True, type=AUTO_FLOAT, help=VAL_HELP),
            click.option("--out", "out_dir", default="ablation", show_default=True,
                         type=click.Path()),
            *_CV_OPTIONS]):
        fn = opt(fn)
    return fn


@click.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True),
              help="AVA.txt or a CSV with id and mos (optionally p1..pK, split).")
@click.option("--head", default=DEFAULTS.head, show_default=True, type=Names(HEAD_CHOICES),
              help="auto: ridge or single_3fc, whichever wins a 5-fold CV on the training "
                   "images (the test part never decides); the saved model is the winner.")
@click.option("--levels", default=None, help="Levels to use: names, indices or a:b (-5: = last 5).")
@click.option("--output", default=DEFAULTS.output, show_default=True, type=Names(OUTPUTS))
@click.option("--epochs", default=DEFAULTS.epochs, show_default=True, type=POSITIVE_INT,
              help="Upper limit; the schedule stops earlier when the lowest rate stops improving.")
@click.option("--batch-size", default=DEFAULTS.batch_size, show_default=True, type=POSITIVE_INT)
@click.option("--lr", default=DEFAULTS.lr, show_default=True, type=AUTO_FLOAT, help=LR_HELP)
@click.option("--augment", default=DEFAULTS.augment, show_default=True,
              type=Names(FEED_MODES),
              help="Stored augmentations fed per epoch: one random (MLSP sec. 3.1), all 8, or "
                   "auto = all below 20,000 training images, else random.")
@click.option("--seed", default=DEFAULTS.seed, show_default=True, type=NONNEGATIVE_INT)
@click.option("--out", "out_dir", default="mlsp-model", show_default=True, type=click.Path())
@click.option("--test-list", type=click.Path(exists=True), help="Ids of the test images.")
@click.option("--val-fraction", default=DEFAULTS.val_fraction, show_default=True, type=AUTO_FLOAT, help=VAL_HELP)
@click.option("--width", default=None, type=POSITIVE_INT, help="Width X of the first FC layer.")
@click.option("--distribute", is_flag=True,
              help="Data-parallel over all local devices (JAX: keras.distribution.DataParallel, "
                   "TensorFlow: MirroredStrategy).")
@click.option("--objective", default=DEFAULTS.objective, show_default=True,
              type=Names(OBJECTIVES),
              help="mlsp: one augmentation per sample; mp_*: all augmentations as patches "
                   "(Sheng et al. 2018, Eq. 3-8).")
@click.option("--loss", default=None, type=Names(LOSSES),
              help="mse (MOS), emd / re_emd (distributions, M+MNet Eq. 3-4). "
                   "Default: from --output.")
@click.option("--precision", default=DEFAULTS.precision, show_default=True,
              type=Names(PRECISIONS),
              help="auto: float32, then mixed_float16 once gradients stop overflowing "
                   "(M+MNet Eq. 5).")
@click.option("--sample-weights", default="none", show_default=True,
              type=Names(SAMPLE_WEIGHTS),
              help="variance: down-weight images with diverse ratings (MTP-NasNet sec. 3.3).")
@click.option("--features", "feature_kind", default=None,
              type=Names(FEATURE_KINDS),
              help="Stored feature kind (default: from the head).")
@click.option("--binary-margin", default=DEFAULTS.binary_margin, show_default=True, type=NONNEGATIVE_FLOAT,
              help="multitask head: leave out of the binary loss images whose MOS lies within "
                   "this margin of the threshold (MTP-NasNet sec. 4.3).")
@click.option("--normalize-inputs", default="auto", show_default=True,
              type=click.Choice(["auto", "on", "off"]),
              help="Per-channel standardization of the stored features (kept in the model); "
                   "auto: on below 20,000 training images.")
@_CV_OPTIONS[0]
@_CV_OPTIONS[1]
@click.option("--quiet", is_flag=True)
@click.option("--verbose", is_flag=True,
              help="Also print the feeder's counters every epoch (they are in history.csv).")
def train(store, labels_file, head, levels, output, epochs, batch_size, lr, augment, seed, out_dir,
          test_list, val_fraction, width, distribute, objective, loss, precision, sample_weights,
          feature_kind, binary_margin, normalize_inputs, folds, seeds, quiet, verbose):
    """Train a head on the features in STORE (MLSP sec. 3.3); --folds K cross-validates."""
    from .trainer import train_head

    options = dict(head=head, levels=levels, output=output, epochs=epochs,
                   batch_size=batch_size, lr=lr, augment=augment, width=width,
                   distribute=distribute, objective=objective, loss=loss, precision=precision,
                   features=feature_kind, binary_margin=binary_margin,
                   normalize_inputs={"on": True, "off": False}.get(normalize_inputs, "auto"),
                   sample_weights=None if sample_weights == "none" else sample_weights)
    from ..outputs import check_folder_writable

    try:
        check_folder_writable(out_dir, "output folder", make=False)  # before any work
        cv = _cv(folds, seeds, seed)
        options.update(_test_ids(test_list))
        if folds:
            return _cross_validate(store, labels_file, cv, val_fraction, out_dir, quiet,
                                   options)
        res = train_head(store, labels_file, seed=seed, out_dir=out_dir, progress=not quiet,
                         verbose=verbose, val_fraction=val_fraction, **options)
    except USER_ERRORS as err:
        _fail(err)
    if quiet:
        click.echo(res.summary())
    click.echo(f"wrote {', '.join(p.name for p in res.files)} to {res.out_dir}")


@click.command()
@click.argument("model", type=click.Path(exists=True))
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True))
@click.option("--split", default=None, type=click.Choice(["train", "val", "test"]),
              help="Only this split of the labels (a split column, or test = --test-list).")
@click.option("--test-list", type=click.Path(exists=True),
              help="Ids of the test images (as given to mlsp train); implies --split test.")
@click.option("--out", "out_dir", default=None, type=click.Path(),
              help="Write evaluation.json, predictions.csv and scatter.png here.")
def evaluate(model, store, labels_file, split, test_list, out_dir):
    """Evaluate a trained MODEL on the labelled images of STORE."""
    from ..evaluation.reports import fmt
    from ..labels import load_labels, read_id_list
    from ..inference.trained_head import evaluate_trained

    try:
        labels = load_labels(labels_file)
        if test_list:
            if split not in (None, "test"):
                raise ValueError(f"--test-list selects the test split, not {split!r}")
            split = "test"
            labels = labels.with_split(val_fraction=0.0, test_ids=read_id_list(test_list))
        res = evaluate_trained(model, store, labels, out_dir=out_dir, split=split,
                               progress=False)
    except USER_ERRORS as err:
        _fail(err)
    m = res["metrics"]
    click.echo(res["alignment"])
    click.echo(f"n={m['n']}: SRCC {fmt(m['srcc'])}  PLCC {fmt(m['plcc'])}  accuracy "
               f"{fmt(m['accuracy'])}  MAE {fmt(m['mae'])}  RMSE {fmt(m['rmse'])}"
               + (f"  EMD {fmt(m['emd'])}" if "emd" in m else ""))
    if out_dir is None:
        click.echo(json.dumps(res["metrics"], indent=2))
    else:
        click.echo(f"wrote evaluation.json, predictions.csv, scatter.png to {out_dir}")


def _format(rows, fmt):
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    buf = io.StringIO()
    k = max((len(r.get("distribution", [])) for r in rows), default=0)
    unc = [c for c in ("spread", "score_std") if any(c in r for r in rows)]  # mlsp.inference.uncertainty
    w = csv.writer(buf)
    w.writerow(["rank", "id", "path", "score", "percentile", *unc,
                *(f"p{i + 1}" for i in range(k)), "error"])
    for r in rows:
        score = "" if r["score"] is None else f"{r['score']:.4f}"
        pct = "" if r.get("percentile") is None else f"{r['percentile']:.1f}"
        dist = [f"{v:.4f}" for v in r.get("distribution", [])] or [""] * k
        w.writerow(["" if r.get("rank") is None else r["rank"], r["id"], r["path"], score, pct,
                    *(f"{r[c]:.4f}" if c in r else "" for c in unc),
                    *dist, r.get("error", "")])
    return buf.getvalue()


@click.command()
@click.argument("inputs", nargs=-1, metavar="[MODEL] PHOTOS...")
@click.option("--features", "store", type=click.Path(exists=True, dir_okay=False),
              help="Score from this feature store instead of extracting (PHOTOS: ids to keep).")
@click.option("--weights", default=None, type=click.Path(),
              help="Backbone weights file, if the model's is not found automatically.")
@click.option("--format", "fmt", default="csv", show_default=True, type=click.Choice(["csv", "json"]))
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("-o", "--output", "output", default=None, type=click.Path(), help="File (default stdout).")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Only the K best photos.")
@click.option("--html", "html_out", default=None, type=click.Path(dir_okay=False),
              help="Also write a contact sheet: thumbnails best first, score and rank under each.")
@click.option("--runtime", default="auto", show_default=True, type=click.Choice(PREDICT_RUNTIMES),
              help="auto: the model's own model.onnx through onnxruntime when it has one (the "
                   "shipped models; no TensorFlow start-up), else Keras; onnx: export it once.")
def predict(inputs, store, weights, fmt, as_json, output, top, html_out, runtime):
    """Score PHOTOS (files or folders) with MODEL, best first: a listed model's name (`mlsp
    models`; default: quality) or a trained model's folder.

    Columns: rank, id, path, score, percentile (share of the model's own training photos
    scored lower), error.  With --features STORE, scores come from the stored features;
    PHOTOS (file names or ids) then pick images of the store, all of them when omitted."""
    from collections import Counter

    from .. import zoo
    from ..images.sources import describe_skipped
    from ..inference.photos import rank_rows, score, split_model_args
    from ..outputs import check_writable

    model, photos = split_model_args(inputs)
    try:
        if output:  # found before the scoring, not after it
            check_writable(output, "predictions")
        if html_out:
            check_writable(html_out, "contact sheet")
        if store:  # ids as stored (they may contain '/'), or file names
            from ..inference.trained_head import predict_store

            folder = zoo.resolve(model)
            rows = predict_store(folder, store, ids=photos or None, progress=False)
        else:
            if not photos:
                raise click.UsageError(f"give PHOTOS (files or folders) to score with model "
                                       f"{model!r}, or --features STORE")
            skipped = Counter()
            rows, folder = score(model, photos, runtime=runtime, weights=weights,
                                 progress=output is not None, skipped=skipped)
            if skipped:  # what the folder walk skipped: one plain line
                click.echo(describe_skipped(skipped), err=True)
    except USER_ERRORS as err:
        _fail(err)
    ranked = rank_rows(rows, zoo.reference_scores(folder))
    _write_scores(ranked, "json" if as_json else fmt, output, top, html_out, model, folder)


def _write_scores(ranked, fmt, output, top, html_out, model, folder):
    from ..inference.photos import top_rows
    from ..outputs import write_atomic

    shown = top_rows(ranked, top)
    text = _format(shown, fmt)
    if html_out:
        from ..evaluation.contact_sheet import write_contact_sheet
        from ..zoo import get

        failed = [r for r in ranked if r["rank"] is None]
        scale = get(model).scale if not Path(model).exists() else None
        write_contact_sheet(shown + (failed if top else []), html_out, model=str(model),
                            title=f"{Path(str(model)).name} scores", scale=scale or None,
                            total=sum(r["rank"] is not None for r in ranked))
    if output:
        try:
            write_atomic(output, text, "predictions")
        except MLSPError as err:
            _fail(err)
    else:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except OSError as err:  # e.g. redirected to a full device
            _fail(OSError(f"cannot write the predictions to standard output: "
                          f"{err.strerror or err}"))
    ok = [r["score"] for r in ranked if r["score"] is not None]
    if output or html_out:
        click.echo(f"scored {len(ok)} of {len(ranked)} images"
                   + (f" (mean {sum(ok) / len(ok):.3f})" if ok else "")
                   + "".join(f"; wrote {p}" for p in (output, html_out) if p),
                   err=not output)  # stdout holds the scores themselves


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json):
    """List the trained models that score photos out of the box (`mlsp predict NAME ...`)."""
    from ..zoo import list_models

    try:
        rows = list_models()
    except USER_ERRORS as err:
        _fail(err)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        f = r["figures"] or {}
        s = f.get("srcc")
        fig = (f"SRCC {s[0]:.3f} [{s[1]:.3f}, {s[2]:.3f}] ({f['cv']['folds']}-fold x "
               f"{len(f['cv']['seeds'])} CV on {f['n_photos']} {f['data']} photos)"
               if s else "no figures")
        scale = "-".join(f"{v:g}" for v in r["scale"]) or "?"
        name = r["name"] + (" (default)" if r["default"] else "")
        click.echo(f"{name:<18}  {r['task']}; "
                   f"scale {scale}; {r['backbone']}, head {r['head'] or '?'}; {fig}; "
                   f"{'shipped' if r['source'] == 'package' else r['source']}")


def _cross_validate(store, labels, cv, val_fraction, out_dir, quiet, options):
    from .crossval import cross_validate
    from .cv_report import summary_lines, write_cv_report

    res = cross_validate(store, labels, **cv, val_fraction=val_fraction, progress=not quiet,
                         **options)
    files = write_cv_report(out_dir, res)
    for line in summary_lines(res):
        click.echo(line)
    click.echo(f"wrote {', '.join(Path(p).name for p in files)} to {out_dir} (model.keras: the "
               f"ensemble of the {cv['folds']} fold models of seed {cv['seeds'][0]})")


@click.group()
def ablate():
    """Ablation studies on stored features."""


@ablate.command("levels")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True))
@click.option("--head", default="single_3fc", show_default=True, type=Names(heads_for("levels")))
@click.option("--epochs", default=DEFAULTS.epochs, show_default=True, type=POSITIVE_INT)
@click.option("--lr", default=DEFAULTS.lr, show_default=True, type=AUTO_FLOAT, help=LR_HELP)
@click.option("--seed", default=DEFAULTS.seed, show_default=True, type=NONNEGATIVE_INT)
@click.option("--test-list", type=click.Path(exists=True))
@click.option("--val-fraction", default=DEFAULTS.val_fraction, show_default=True, type=AUTO_FLOAT, help=VAL_HELP)
@click.option("--out", "out_dir", default="ablation", show_default=True, type=click.Path())
@click.option("--k", "ks", default=None,
              help="Only these numbers of last levels, e.g. 1,2,4,8,all (default: every k).")
@_CV_OPTIONS[0]
@_CV_OPTIONS[1]
def ablate_levels_cmd(store, labels_file, head, epochs, lr, seed, test_list, val_fraction, out_dir,
                      ks, folds, seeds):
    """Train HEAD on the last k levels, k = 1..L or --k (MLSP Fig. 7)."""
    from .ablations import ablate_levels

    try:
        ablate_levels(store, labels_file, head=head, out_dir=out_dir, epochs=epochs, lr=lr,
                      seed=seed, val_fraction=val_fraction, ks=ks, **_cv(folds, seeds, seed),
                      **_test_ids(test_list))
    except USER_ERRORS as err:
        _fail(err)
    click.echo(f"wrote ablation_levels.csv, ablation_levels.json and ablation_levels.png "
               f"to {out_dir}")


@ablate.command("pooling")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True))
@_training_run_options
def ablate_pooling_cmd(store, labels_file, epochs, lr, batch_size, seed, test_list, val_fraction,
                       out_dir, folds, seeds):
    """One head on area / ForePool / BackPool / SPP features (M+MNet Eq. 1-2, MTP-NasNet)."""
    from .ablations import ablate_pooling

    try:
        ablate_pooling(store, labels_file, out_dir=out_dir, epochs=epochs, lr=lr,
                       batch_size=batch_size, seed=seed, val_fraction=val_fraction,
                       **_cv(folds, seeds, seed), **_test_ids(test_list))
    except USER_ERRORS as err:
        _fail(err)
    click.echo(f"wrote ablation_pooling.csv, .json and .png to {out_dir}")


@ablate.command("objective")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True))
@click.option("--head", default="single_3fc", show_default=True,
              type=Names(heads_for("objective")))
@_training_run_options
def ablate_objective_cmd(store, labels_file, head, epochs, lr, batch_size, seed, test_list,
                         val_fraction, out_dir, folds, seeds):
    """MLSP vs MP_avg / MP_min / MP_ada, and MSE / EMD / Re-EMD (Sheng et al.; M+MNet)."""
    from .ablations import ablate_objective

    try:
        ablate_objective(store, labels_file, out_dir=out_dir, head=head, epochs=epochs,
                         lr=lr, batch_size=batch_size, seed=seed, val_fraction=val_fraction,
                         **_cv(folds, seeds, seed), **_test_ids(test_list))
    except USER_ERRORS as err:
        _fail(err)
    click.echo(f"wrote ablation_objective.csv, .json and .png to {out_dir}")


@click.command("compare")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True))
@click.option("--heads", required=True,
              help="Heads to compare on the same folds, e.g. ridge,single_3fc,multi_3fc.")
@click.option("--reference", default=None,
              help="The run every other is differenced against (default: the first head).")
@click.option("--levels", default=None, help="Levels for every head (default: all).")
@click.option("--epochs", default=DEFAULTS.epochs, show_default=True, type=POSITIVE_INT)
@click.option("--lr", default=DEFAULTS.lr, show_default=True, type=AUTO_FLOAT, help=LR_HELP)
@click.option("--batch-size", default=DEFAULTS.batch_size, show_default=True, type=POSITIVE_INT)
@click.option("--seed", default=DEFAULTS.seed, show_default=True, type=NONNEGATIVE_INT)
@click.option("--val-fraction", default=DEFAULTS.val_fraction, show_default=True,
              type=AUTO_FLOAT, help=VAL_HELP)
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2))
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1),
              help="Repeat the folds with this many seeds (--seed, --seed+1, ...).")
@click.option("--out", "out_dir", default="compare", show_default=True, type=click.Path())
@click.option("--quiet", is_flag=True)
def compare_cmd(store, labels_file, heads, reference, levels, epochs, lr, batch_size, seed,
                val_fraction, folds, seeds, out_dir, quiet):
    """Cross-validate several heads on the same folds: each with its 95% interval and the
    paired difference to a reference (CSV, JSON, PNG, out-of-fold scatter)."""
    from .compare import compare, comparison_lines, parse_runs

    try:
        runs = parse_runs(heads)
        for name in runs:
            if name not in HEAD_NAMES:
                raise ValueError(f"--heads: unknown head {name!r}; heads: "
                                 f"{', '.join(HEAD_NAMES)}")
        report = compare(store, labels_file, heads=runs, reference=reference, folds=folds,
                         seeds=tuple(range(seed, seed + seeds)), out_dir=out_dir,
                         progress=not quiet, levels=levels, epochs=epochs, lr=lr,
                         batch_size=batch_size, val_fraction=val_fraction)
    except USER_ERRORS as err:
        _fail(err)
    for line in comparison_lines(report):
        click.echo(line)
    click.echo(f"wrote compare.csv, compare.json, compare_folds.csv, compare_oof.csv, "
               f"compare.png, compare_scatter.png to {out_dir}")


predict.needs_backend = needs_backend  # mlsp.cli imports Keras only when this says so
commands = [train, evaluate, predict, models, ablate, compare_cmd]
