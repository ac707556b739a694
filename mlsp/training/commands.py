"""Command-line: ``mlsp train``, ``mlsp evaluate``, ``mlsp ablate ...``, ``mlsp compare``
(``mlsp predict`` / ``models``: :mod:`mlsp.inference.commands`).

Registered by the main ``mlsp`` group (:mod:`mlsp.cli`) from ``commands``.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..heads.registry import HEAD_CHOICES, HEAD_NAMES, heads_for
from ..options import NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_INT
from ..vocabulary import (FEATURE_KINDS, FEED_MODES, LOSSES, OBJECTIVES, OUTPUTS,
                          PRECISIONS, SAMPLE_WEIGHTS)
from ..cli_types import (AUTO_FLOAT, CV_OPTIONS, LR_HELP, USER_ERRORS, VAL_HELP, Names,
                         cv_options, fail, test_ids_option)
from .config import DEFAULTS

__all__ = ["commands", "train", "evaluate", "ablate", "compare_cmd"]

def training_run_options(fn):
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
            *CV_OPTIONS]):
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
@click.option("--pool-kernels", default=None, type=POSITIVE_INT,
              help="Pool-3FC: kernels per column of its module (default 1024, Fig. 6).")
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
@CV_OPTIONS[0]
@CV_OPTIONS[1]
@click.option("--quiet", is_flag=True)
@click.option("--verbose", is_flag=True,
              help="Also print the feeder's counters every epoch (they are in history.csv).")
def train(store, labels_file, head, levels, output, epochs, batch_size, lr, augment, seed, out_dir,
          test_list, val_fraction, width, pool_kernels, distribute, objective, loss, precision, sample_weights,
          feature_kind, binary_margin, normalize_inputs, folds, seeds, quiet, verbose):
    """Train a head on the features in STORE (MLSP sec. 3.3); --folds K cross-validates."""
    from .trainer import train_head

    options = dict(head=head, levels=levels, output=output, epochs=epochs,
                   batch_size=batch_size, lr=lr, augment=augment, width=width, pool_kernels=pool_kernels,
                   distribute=distribute, objective=objective, loss=loss, precision=precision,
                   features=feature_kind, binary_margin=binary_margin,
                   normalize_inputs={"on": True, "off": False}.get(normalize_inputs, "auto"),
                   sample_weights=None if sample_weights == "none" else sample_weights)
    from ..outputs import check_folder_writable

    try:
        check_folder_writable(out_dir, "output folder", make=False)  # before any work
        cv = cv_options(folds, seeds, seed)
        options.update(test_ids_option(test_list))
        if folds:
            return _cross_validate(store, labels_file, cv, val_fraction, out_dir, quiet,
                                   options)
        res = train_head(store, labels_file, seed=seed, out_dir=out_dir, progress=not quiet,
                         verbose=verbose, val_fraction=val_fraction, **options)
    except USER_ERRORS as err:
        fail(err)
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
        fail(err)
    m = res["metrics"]
    click.echo(res["alignment"])
    click.echo(f"n={m['n']}: SRCC {fmt(m['srcc'])}  PLCC {fmt(m['plcc'])}  accuracy "
               f"{fmt(m['accuracy'])}  MAE {fmt(m['mae'])}  RMSE {fmt(m['rmse'])}"
               + (f"  EMD {fmt(m['emd'])}" if "emd" in m else ""))
    if out_dir is None:
        click.echo(json.dumps(res["metrics"], indent=2))
    else:
        click.echo(f"wrote evaluation.json, predictions.csv, scatter.png to {out_dir}")


def _cross_validate(store, labels, cv, val_fraction, out_dir, quiet, options):
    from ..api import cross_validate  # the CLI asks the public API, as a user's script would
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
@CV_OPTIONS[0]
@CV_OPTIONS[1]
def ablate_levels_cmd(store, labels_file, head, epochs, lr, seed, test_list, val_fraction, out_dir,
                      ks, folds, seeds):
    """Train HEAD on the last k levels, k = 1..L or --k (MLSP Fig. 7)."""
    from .ablations import ablate_levels

    try:
        ablate_levels(store, labels_file, head=head, out_dir=out_dir, epochs=epochs, lr=lr,
                      seed=seed, val_fraction=val_fraction, ks=ks, **cv_options(folds, seeds, seed),
                      **test_ids_option(test_list))
    except USER_ERRORS as err:
        fail(err)
    click.echo(f"wrote ablation_levels.csv, ablation_levels.json and ablation_levels.png "
               f"to {out_dir}")


@ablate.command("pooling")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True))
@training_run_options
def ablate_pooling_cmd(store, labels_file, epochs, lr, batch_size, seed, test_list, val_fraction,
                       out_dir, folds, seeds):
    """One head on area / ForePool / BackPool / SPP features (M+MNet Eq. 1-2, MTP-NasNet)."""
    from .ablations import ablate_pooling

    try:
        ablate_pooling(store, labels_file, out_dir=out_dir, epochs=epochs, lr=lr,
                       batch_size=batch_size, seed=seed, val_fraction=val_fraction,
                       **cv_options(folds, seeds, seed), **test_ids_option(test_list))
    except USER_ERRORS as err:
        fail(err)
    click.echo(f"wrote ablation_pooling.csv, .json and .png to {out_dir}")


@ablate.command("objective")
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True))
@click.option("--head", default="single_3fc", show_default=True,
              type=Names(heads_for("objective")))
@training_run_options
def ablate_objective_cmd(store, labels_file, head, epochs, lr, batch_size, seed, test_list,
                         val_fraction, out_dir, folds, seeds):
    """MLSP vs MP_avg / MP_min / MP_ada, and MSE / EMD / Re-EMD (Sheng et al.; M+MNet)."""
    from .ablations import ablate_objective

    try:
        ablate_objective(store, labels_file, out_dir=out_dir, head=head, epochs=epochs,
                         lr=lr, batch_size=batch_size, seed=seed, val_fraction=val_fraction,
                         **cv_options(folds, seeds, seed), **test_ids_option(test_list))
    except USER_ERRORS as err:
        fail(err)
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
        fail(err)
    for line in comparison_lines(report):
        click.echo(line)
    click.echo(f"wrote compare.csv, compare.json, compare_folds.csv, compare_oof.csv, "
               f"compare.png, compare_scatter.png to {out_dir}")


commands = [train, evaluate, ablate, compare_cmd]
