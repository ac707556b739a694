"""What every ``mlsp`` subcommand's options share: choice and number types, the
cross-validation options, one-line failures (:func:`mlsp.errors.one_line`).

Only the command modules import it (:mod:`mlsp.training.commands`,
:mod:`mlsp.inference.commands`); the library never does.
"""
from __future__ import annotations

import click

from .errors import MLSPError, one_line
from .options import seed_list
from .vocabulary import canonical

__all__ = ["USER_ERRORS", "Names", "AutoFloat", "AUTO_FLOAT", "LR_HELP", "VAL_HELP", "fail",
           "test_ids_option", "CV_OPTIONS", "cv_options"]

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


def fail(err):
    raise click.ClickException(one_line(err))


def test_ids_option(test_list) -> dict:
    """``{"test_ids": [...]}`` from ``--test-list`` (nothing without one).  The labels are
    not split here: the library aligns them to the store, then splits
    (:func:`mlsp.labels.split.align_and_split`), the same through every door."""
    from .labels import read_id_list

    return {"test_ids": read_id_list(test_list)} if test_list else {}


CV_OPTIONS = [
    click.option("--folds", default=0, show_default=True, type=click.IntRange(min=0),
                 help="K >= 2: K-fold cross-validation (mean and 95% interval over K folds; "
                      "train saves the fold ensemble). 0: one train/val split."),
    click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1),
                 help="With --folds: repeat with this many seeds (--seed, --seed+1, ...).")]


def cv_options(folds, seeds, seed) -> dict:
    if folds == 1:
        raise ValueError("--folds must be 0 (one split) or at least 2")
    return {"folds": folds, "seeds": seed_list(seeds, seed)}
