"""Command-line: ``mlsp predict`` and ``mlsp models`` (scores for a photographer: ranked,
with percentiles, as CSV / JSON and a contact sheet).  Registered by :mod:`mlsp.cli`.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import click

from ..cli_types import USER_ERRORS, fail
from ..errors import MLSPError
from ..vocabulary import PREDICT_RUNTIMES
from .photos import needs_backend

__all__ = ["commands", "predict", "models"]


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
        fail(err)
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
            fail(err)
    else:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except OSError as err:  # e.g. redirected to a full device
            fail(OSError(f"cannot write the predictions to standard output: "
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
        fail(err)
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


predict.needs_backend = needs_backend  # mlsp.cli imports Keras only when this says so
commands = [predict, models]
