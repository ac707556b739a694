"""The ``mlsp`` command line: a thin layer over the Python API."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from .errors import MLSPError, one_line
from .options import NONNEGATIVE_FLOAT, NONNEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT
from .vocabulary import AUGMENTATIONS, BACKBONES, ENGINES, POOLING_KINDS, TTA_MODES


#: Commands that only read files: they start without importing Keras or its backend
#: (TensorFlow alone takes seconds to import).  Every other command imports the backend
#: after its arguments parsed, so ``--help`` of any command stays light too.
LIGHT_COMMANDS = frozenset({"info", "merge", "labels", "models"})

def _import_keras_quietly():
    """The backend, loaded quietly (:func:`mlsp.backend.load_backend`); a one-line error."""
    from .backend import load_backend
    from .errors import BackendUnavailableError

    try:
        load_backend()
    except BackendUnavailableError as err:
        raise click.ClickException(str(err)) from None


def _fail(message: str):
    raise click.ClickException(one_line(message))


#: What a library call may raise for bad input: each becomes one line (the one handler).
USER_ERRORS = (MLSPError, ValueError, FileNotFoundError, KeyError)


class OneLineUsageError(click.ClickException):
    """A bad option or argument: click's usage error as one line, exit status 2."""

    exit_code = 2


class MLSPGroup(click.Group):
    """The ``mlsp`` group: every error of the library a command lets through is printed as
    one line (:func:`mlsp.errors.one_line`) with exit status 1, never a traceback; a bad
    option or argument is one line too (click's usage block folded), exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            where = f"{err.ctx.command_path} --help" if err.ctx else "mlsp --help"
            raise OneLineUsageError(f"{one_line(err.format_message())} (see '{where}')") \
                from None
        except USER_ERRORS as err:
            raise click.ClickException(one_line(err)) from None


def collect_items(inputs, list_file=None, ava=None, images=None):
    """Image items from the command's inputs (:func:`mlsp.images.sources.collect_items`);
    what folder walks skipped (sidecars, text) is named in one line."""
    from collections import Counter

    from .images.sources import collect_items as collect, describe_skipped

    skipped = Counter()
    try:
        items = collect(inputs, list_file, ava, images, skipped=skipped)
    except ValueError as err:
        _fail(str(err))
    if skipped:
        click.echo(describe_skipped(skipped), err=True)
    return items


def _print_summary(summary, out):
    click.echo(
        f"{summary.store}: {summary.done} done, {summary.failed} failed, {summary.pending} pending "
        f"of {summary.images}; this run {summary.processed_now} images in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.2f} img/s), {summary.failed_now} failed"
    )
    if summary.failures_csv:
        click.echo(f"failures of this run listed in {summary.failures_csv} "
                   f"(and in the store: images/error)")


@click.group(cls=MLSPGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlsp")
def main():
    """mlsp: image aesthetics from multi-level spatially pooled (MLSP) features.

    Stages: `mlsp extract` (images -> HDF5 feature store), `mlsp info`,
    then train / evaluate / predict / ablate heads on stored features,
    `mlsp export` (a trained model -> one ONNX file).
    """


@main.command()
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Feature store (HDF5) to write or resume.")
@click.option("--list", "list_file", type=click.Path(exists=True, dir_okay=False), help="Text list or CSV of image paths (optional id column).")
@click.option("--ava", type=click.Path(exists=True, dir_okay=False), help="AVA.txt: extract the images it lists.")
@click.option("--images", type=click.Path(exists=True, file_okay=False), help="Image folder for --ava (ID.jpg files).")
@click.option("--backbone", default="inception_resnet_v2", show_default=True,
              type=click.Choice(BACKBONES))
@click.option("--alpha", default=1.0, show_default=True, type=POSITIVE_FLOAT, help="Width multiplier (MobileNet backbones).")
@click.option("--weights", default="imagenet", show_default=True,
              help="'imagenet' (Keras download/cache), 'bundled' (shipped MobileNetV2-0.35), a weights file, or 'none' (random, seeded).")
@click.option("--augment", "augmentation", default="crops", show_default=True, type=click.Choice(AUGMENTATIONS),
              help="crops: 8 = 4 corner crops at 87.5% x 2 flips (MLSP); crops+grid: those 8, then their Corner Grid versions (M+MNet; 16); whole: the full image only.")
@click.option("--wide-size", default=5, show_default=True, type=NONNEGATIVE_INT, help="Wide pooling grid (5 = 5x5); 0 stores narrow features only.")
@click.option("--pooling", default="area", show_default=True,
              help=f"Comma-separated pooling kinds ({', '.join(POOLING_KINDS)}): area (narrow + wide, always), fore, back (M+MNet ForePool/BackPool to wide size), spp (pyramid 1x1+3x3+4x4).")
@click.option("--max-side", type=NONNEGATIVE_INT, default=None, help="Optional cap on the longer side (default: full resolution).")
@click.option("--workers", default=2, show_default=True, type=NONNEGATIVE_INT, help="Decoding threads.")
@click.option("--seed", default=0, show_default=True, type=NONNEGATIVE_INT, help="Seed for --weights none.")
@click.option("--retry-failed", is_flag=True, help="Try failed images again.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store instead of resuming it.")
@click.option("--limit", type=POSITIVE_INT, default=None, help="Stop after this many images (resume later).")
@click.option("--flush-every", default=16, show_default=True, type=NONNEGATIVE_INT, help="Images buffered between writes (at most this many are lost to a crash).")
@click.option("--shard", default=None, metavar="K/N",
              help="Process only the K-th (0-based) of N contiguous blocks of the input list; join the N stores with `mlsp merge`.")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="local: this process (threads); ray: a pool of Ray actors, locally or on a cluster (pip install 'mlsp[ray]').")
@click.option("--ray-address", default=None, help="With --engine ray: 'auto' (a cluster started with `ray start`), HOST:PORT or ray://HOST:10001; default: a local Ray instance.")
@click.option("--ray-actors", type=POSITIVE_INT, default=None, help="Model replicas (Ray actors); default one per GPU, else one per 2 CPUs.")
@click.option("--ray-gpus-per-actor", type=NONNEGATIVE_FLOAT, default=0, show_default=True, help="GPUs each actor reserves (e.g. 1, or 0.5 to share one).")
@click.option("--max-memory", type=POSITIVE_FLOAT, default=None, metavar="GB",
              help="Activation memory one forward pass may use; a bigger image is downscaled just enough (recorded in images/scale). Default: a quarter of the machine's RAM.")
@click.option("--no-space-check", is_flag=True, help="Start even when the free disk space looks too small for the pending images.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def extract(inputs, out, list_file, ava, images, backbone, alpha, weights, augmentation, wide_size,
            pooling, max_side, workers, seed, retry_failed, overwrite, limit, flush_every, shard,
            engine, ray_address, ray_actors, ray_gpus_per_actor, max_memory, no_space_check, quiet):
    """Extract MLSP features of images into a feature store (resumable).

    INPUTS are image files and folders (searched recursively, decoded by content), and list
    files (.csv, .txt, .lst: one path a line, or a CSV with a path column), as with --list.
    Running the same command again resumes where it stopped.
    """
    from .extract.extractor import ExtractOptions
    from .extract.run import run_extraction, select_shard
    from .vocabulary import check_pooling

    try:
        kinds = check_pooling(pooling, wide_size)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--pooling") from None
    items = collect_items(inputs, list_file, ava, images)
    extra = None
    if shard:
        try:
            items, extra = select_shard(items, shard)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--shard") from None
        click.echo(f"shard {shard}: {len(items)} of {extra['list_images']} images, "
                   f"rows {extra['shard_offset']}..{extra['shard_offset'] + len(items) - 1}")
    try:
        opts = ExtractOptions(backbone=backbone, alpha=alpha, weights=weights, seed=seed,
                              augmentation=augmentation, wide_size=wide_size, max_side=max_side,
                              workers=workers, flush_every=flush_every, pooling=kinds,
                              max_memory=None if max_memory is None else max(1, int(max_memory * 1e9)))
    except ValueError as err:
        _fail("--" + str(err).replace("_", "-"))
    if engine != "ray" and (ray_address or ray_actors or ray_gpus_per_actor):
        raise click.UsageError("--ray-address/--ray-actors/--ray-gpus-per-actor need --engine ray")
    try:
        summary = run_extraction(items, out, opts, engine=engine, extra_config=extra,
                                 ray_address=ray_address, ray_actors=ray_actors,
                                 ray_gpus_per_actor=ray_gpus_per_actor, progress=not quiet,
                                 retry_failed=retry_failed, overwrite=overwrite, limit=limit,
                                 space_check=not no_space_check)  # errors: one line (MLSPGroup)
    except KeyboardInterrupt:
        _interrupted(out)
    _print_summary(summary, out)


def _interrupted(out):
    """Ctrl-C (SIGINT): what is written is kept; one line with the counts, exit code 130
    (128 + SIGINT), never 0, so a script sees that work is left."""
    from .stores.features import DONE, FAILED, PENDING, FeatureStore, StoreError

    try:
        with FeatureStore.open(out) as fs:
            st = fs.status
        counts = (f"{int((st == DONE).sum())} done, {int((st == FAILED).sum())} failed, "
                  f"{int((st == PENDING).sum())} pending of {st.size}; ")
    except (StoreError, OSError, KeyError):
        counts = ""
    click.echo(f"{out}: interrupted; {counts}run the same command again to resume", err=True)
    sys.exit(130)


@main.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(store, as_json):
    """Print a store's layout, configuration and counts."""
    from .stores.features import FeatureStore

    with FeatureStore.open(store) as fs:
        data = fs.info()
        levels = fs.levels
    if as_json:
        data["level_table"] = [vars(lv) for lv in levels]
        click.echo(json.dumps(data, indent=2, default=str))
        return
    cfg = data["config"]
    click.echo(f"{data['path']}  ({cfg.get('format')} v{cfg.get('format_version')})")
    click.echo(f"  backbone     {cfg.get('backbone')} alpha {cfg.get('alpha')}, weights {cfg.get('weights')} "
               f"(sha256 {str(cfg.get('weights_sha256'))[:12] or '-'}), {cfg.get('backend')} {cfg.get('backend_version')}")
    click.echo(f"  levels       {data['levels']} blocks, {data['channels']} channels "
               f"({levels[0].name} .. {levels[-1].name})" if levels else "  levels       none")
    click.echo(f"  augment      {len(data['augmentations'])}: {', '.join(data['augmentations'])}")
    kinds = [k for k in (cfg.get("pooling_kinds") or ["area"]) if k != "area"]
    click.echo("  pooling      narrow 1x1" + (f", wide {cfg.get('pool_wide')}x{cfg.get('pool_wide')}" if cfg.get("pool_wide") else "")
               + (f", also {', '.join(kinds)}" if kinds else "")
               + f"; max side {cfg.get('max_side') or 'none (full resolution)'}")
    if cfg.get("shard_count"):
        click.echo(f"  shard        {cfg['shard_index']}/{cfg['shard_count']} of a list of "
                   f"{cfg['list_images']} images, from row {cfg['shard_offset']}")
    click.echo(f"  images       {data['images']}: {data['done']} done, {data['failed']} failed, {data['pending']} pending")
    for name, d in sorted(data["datasets"].items()):
        if name.startswith("features/"):
            click.echo(f"  {name:<16} {tuple(d['shape'])} {d['dtype']} chunks {tuple(d['chunks'] or ())}")
    click.echo(f"  on disk      {data['bytes_on_disk'] / 1e6:.1f} MB (allocated {data['bytes_apparent'] / 1e6:.1f} MB)")
    for f in data["failures"][:10]:
        click.echo(f"  failed       {f['id']}: {f['error']}")
    if len(data["failures"]) > 10:
        click.echo(f"  ... and {len(data['failures']) - 10} more failures (--json lists all)")


@main.command()
@click.argument("store", type=click.Path(exists=True, dir_okay=False))
@click.option("--check", "check_only", is_flag=True, help="Only report what is damaged; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def repair(store, check_only, as_json):
    """Salvage a damaged store: rows whose chunks read back stay done, the rest become
    pending (run the same extract command again to redo them)."""
    from .stores.repair import repair_store

    report = repair_store(store, check_only=check_only)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    verb = "would be set" if check_only else "set"
    click.echo(f"{store}: {report.damage or 'no damage to the file'}; {report.kept} of "
               f"{report.done_before} done rows read back and are kept, {len(report.reset)} "
               f"{verb} pending" + ("" if check_only or not report.reset else
                                    "; run the same extract command again to redo them"))


@main.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Merged store to write.")
@click.option("--copy", is_flag=True, help="Copy the features into one standalone file (default: HDF5 virtual datasets pointing into the shards).")
def merge(shards, out, copy):
    """Join the stores of a sharded extraction (`extract --shard K/N`) into one store."""
    from .stores.features import FeatureStore
    from .stores.merge import merge_stores

    path = merge_stores(shards, out, copy=copy)
    with FeatureStore.open(path) as fs:
        info = fs.info()
    click.echo(f"{path}: {info['images']} images ({info['done']} done, {info['failed']} failed) "
               f"from {len(shards)} shards, {'copied' if copy else 'virtual datasets over the shards'}")


@main.command()
@click.option("--out", default="mlsp-demo", show_default=True, type=click.Path(file_okay=False), help="Folder for the data set, store and reports.")
@click.option("-n", "--images", "n_images", default=160, show_default=True, type=POSITIVE_INT, help="Number of generated images.")
@click.option("--backbone", default="mobilenet_v2", show_default=True)
@click.option("--alpha", default=0.35, show_default=True, type=POSITIVE_FLOAT)
@click.option("--weights", default="bundled", show_default=True, help="Default: the ImageNet MobileNetV2-0.35 shipped with mlsp (works offline).")
@click.option("--quiet", is_flag=True)
def demo(out, n_images, backbone, alpha, weights, quiet):
    """The main job on a built-in default: generated photos with known scores, end to end."""
    from .demo import run_demo

    run_demo(out, n_images=n_images, backbone=backbone, alpha=alpha, weights=weights,
             progress=not quiet, echo=click.echo)


@main.command()
@click.argument("model", type=click.Path(exists=True))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="ONNX file to write.")
@click.option("--weights", default=None,
              help="Backbone weights (file, folder, 'bundled' or 'imagenet') when not found automatically; checked against the model's SHA-256.")
@click.option("--tta", default="crops", show_default=True, type=click.Choice(TTA_MODES),
              help="crops: the 8 MLSP crops averaged inside the graph (the scores of `mlsp predict`); whole: one pass over the whole image (about 6x less work, not the trained average).")
@click.option("--opset", type=POSITIVE_INT, default=None, help="ONNX opset (default: the exporter's).")
def export(model, out, weights, tta, opset):
    """Write a trained MODEL as one ONNX file: an RGB image of any size in, its score out.

    Input `image`: uint8 (height, width, 3).  Outputs `mos` (1,) and, for distribution
    heads, `distribution` (1, K).  Needs `pip install 'mlsp[onnx]'`.
    """
    from .inference.onnx import export_onnx

    path = export_onnx(model, out, weights=weights, tta=tta, opset=opset)  # errors: one line
    click.echo(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB; input 'image' uint8 "
               f"(H, W, 3), tta {tta})")


def _register_optional():
    from .inference.commands import commands as scoring

    try:
        from .training.commands import commands as training
    except ImportError:
        training = []
    for command in (*training, *scoring):
        main.add_command(command)


def _with_backend(command):
    """Run ``_import_keras_quietly`` right before ``command`` (each subcommand of a group)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _with_backend(sub)
        return command
    inner = command.callback
    needs = getattr(command, "needs_backend", None)  # e.g. predict with a shipped ONNX model

    @functools.wraps(inner)
    def run(*args, **kwargs):
        if needs is None or needs(**kwargs):
            _import_keras_quietly()
        return inner(*args, **kwargs)

    command.callback = run
    return command


def _short_help(command):
    """The first paragraph of the docstring, whole: click's default cuts at the first word
    ending in a period (``(MLSP sec.``), mid-sentence."""
    if command.short_help is None and command.help:
        first = command.help.strip().split("\n\n")[0]
        command.short_help = " ".join(first.split())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _short_help(sub)


def _finish_registration():
    for name, command in main.commands.items():
        _short_help(command)
        if name not in LIGHT_COMMANDS:
            _with_backend(command)


_register_optional()
_finish_registration()

if __name__ == "__main__":
    sys.exit(main())
