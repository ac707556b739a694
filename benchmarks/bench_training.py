"""Training throughput: heads fed from the feature store (the real FeatureSequence path)
versus the same model fed from in-memory numpy arrays.

Two cases: Single-3FC on narrow features (16,928 channels by default, InceptionResNet-v2's
narrow MLSP width) and Pool-3FC on 5x5 wide features (1,824 channels by default,
MobileNetV2-0.35's; 16,928-channel wide features would take ~1.7 GB per 256 images).
The stores are made with FeatureStore.create and filled with random float16 values.
Store feeding reads from the HDF5 file (memory_limit=0: nothing preloaded), one random
stored augmentation per image and epoch (the paper's AVA regime), 2 feeder threads and
a bounded prefetch queue; two in-memory runs feed the same model float32 arrays of one
augmentation per image, once with ``model.fit(x, y)`` and once through the same
FeatureSequence over the dataset preloaded in RAM; the faster of the two is the reference.  Each setting runs a warm-up epoch
(compilation) then ``--epochs`` timed epochs; samples/s is from the median epoch.
Also reported: the feeder's busy share (time inside ``__getitem__`` / training time,
FeedTimer) and the effective wait share ``1 - store rate / memory rate``.

    .venv/bin/python benchmarks/bench_training.py --json benchmarks/bench_training.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_store(path, n, channels, wide_size, seed=0):
    import numpy as np

    from mlsp.stores.features import FeatureStore, Level

    A = 8
    cfg = {"backbone": "synthetic", "alpha": 1.0, "weights": "none", "weights_sha256": "",
           "weights_seed": seed, "preprocessing": "none", "augmentation_mode": "crops",
           "augmentations": [f"aug{a}" for a in range(A)], "crop_fraction": 0.875,
           "pool_narrow": 1, "pool_wide": wide_size, "max_side": 0, "min_side": 32}
    k = 4  # four levels of equal width
    levels = [Level(f"level{i}", channels // k + (i < channels % k), 0) for i in range(k)]
    off = 0
    for i, lv in enumerate(levels):
        levels[i] = Level(lv.name, lv.channels, off)
        off += lv.channels
    ids = [f"img{i:05d}" for i in range(n)]
    fs = FeatureStore.create(path, ids, ids, cfg, levels, A, wide_size)
    rng = np.random.default_rng(seed)
    for a in range(0, n, 32):
        rows = []
        for i in range(a, min(a + 32, n)):
            r = {"index": i, "height": 512, "width": 512, "scale": 1.0,
                 "narrow": rng.random((A, channels), dtype=np.float32).astype(np.float16)}
            if wide_size:
                r["wide"] = rng.random((A, wide_size, wide_size, channels),
                                       dtype=np.float32).astype(np.float16)
                r["narrow"] = r["wide"].astype(np.float32).mean(axis=(1, 2)).astype(np.float16)
            rows.append(r)
        fs.write_rows(rows)
    fs.close()


class EpochClock:
    def __init__(self):
        self.times = []

    def callback(self):
        import keras

        clock = self

        class _C(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                clock.times.append(time.perf_counter() - self.t)

        return _C()


def run_case(name, store, head, kind, n, batch, epochs, wide_size, workers):
    import keras
    import numpy as np

    from mlsp.heads import build_head
    from mlsp.stores.reader import StoreFeatures
    from mlsp.training.data import FeatureSequence, FeedTimer

    rng = np.random.default_rng(0)
    y = rng.normal(size=(n, 1)).astype(np.float32)
    feats = StoreFeatures(store, kind=kind, memory_limit=0, progress=False)
    channels = feats.item_shape[-1]
    out = {"case": name, "head": head, "kind": kind, "n_images": n, "batch_size": batch,
           "item_shape": list(feats.item_shape), "epochs_timed": epochs}

    def model():
        keras.utils.set_random_seed(0)
        m = build_head(head, channels, wide_size=wide_size, seed=0)
        m.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
        return m

    # in memory: one stored augmentation per image, as float32 arrays
    aug = rng.integers(0, 8, size=n)
    x = feats.get(np.arange(n), aug)
    clock = EpochClock()
    model().fit(x, y, batch_size=batch, epochs=epochs + 1, shuffle=True, verbose=0,
                callbacks=[clock.callback()])
    mem_arrays = float(np.median(clock.times[1:]))
    del x
    # in memory through the same feeder: the dataset preloaded into RAM (float32 rows)
    ram = StoreFeatures(store, kind=kind, in_memory=True, progress=False)
    clock = EpochClock()
    model().fit(FeatureSequence(ram, np.arange(n), y, batch, "random", True, 0, workers=1),
                epochs=epochs + 1, verbose=0, callbacks=[clock.callback()])
    mem_seq = float(np.median(clock.times[1:]))
    ram.close()
    del ram
    mem = min(mem_arrays, mem_seq)  # the faster of the two in-memory feeds is the reference
    # from the store: the training feeder (random augmentation, prefetching threads)
    seq = FeatureSequence(feats, np.arange(n), y, batch, "random", True, 0, workers=workers)
    clock, timer = EpochClock(), FeedTimer(seq)
    hist = model().fit(seq, epochs=epochs + 1, verbose=0, callbacks=[clock.callback(), timer])
    sto = float(np.median(clock.times[1:]))
    feats.close()
    out.update({
        "memory_arrays_samples_per_s": n / mem_arrays,
        "memory_sequence_samples_per_s": n / mem_seq,
        "memory_samples_per_s": n / mem, "store_samples_per_s": n / sto,
        "store_over_memory": mem / sto,
        "feeder_busy_share": float(np.median(hist.history["feed_share"][1:])),
        "wait_share": max(0.0, 1 - mem / sto),
        "peak_batches_alive": int(max(hist.history["peak_batches"])),
        "epoch_s_memory": clock.times and mem, "epoch_s_store": sto,
    })
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--narrow-images", type=int, default=512)
    ap.add_argument("--narrow-channels", type=int, default=16928)
    ap.add_argument("--narrow-batch", type=int, default=64)
    ap.add_argument("--wide-images", type=int, default=256)
    ap.add_argument("--wide-channels", type=int, default=1824)
    ap.add_argument("--wide-batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after a warm-up)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import keras

    work = args.work or Path(tempfile.mkdtemp(prefix="mlsp-bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    narrow, wide = work / "narrow.h5", work / "wide.h5"
    if not narrow.exists():
        make_store(narrow, args.narrow_images, args.narrow_channels, 0)
    if not wide.exists():
        make_store(wide, args.wide_images, args.wide_channels, 5)
    print(f"stores ready in {time.monotonic() - t:.0f} s ({work})", flush=True)
    rows = [
        run_case("Single-3FC, narrow", narrow, "single_3fc", "narrow", args.narrow_images,
                 args.narrow_batch, args.epochs, 0, args.workers),
        run_case("Pool-3FC, wide 5x5", wide, "pool_3fc", "wide", args.wide_images,
                 args.wide_batch, args.epochs, 5, args.workers),
    ]
    print("\n| case | features per sample | batch | in-memory samples/s (fit arrays / "
          "feeder over RAM) | store samples/s | store / best in-memory | feeder busy share "
          "| wait share | peak batches alive |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {'x'.join(map(str, r['item_shape']))} | {r['batch_size']} | "
              f"{r['memory_arrays_samples_per_s']:.0f} / {r['memory_sequence_samples_per_s']:.0f} | "
              f"{r['store_samples_per_s']:.0f} | "
              f"{r['store_over_memory']:.2f} | {r['feeder_busy_share']:.2f} | "
              f"{r['wait_share']:.2f} | {r['peak_batches_alive']} |")
    if args.json:
        meta = {"backend": keras.backend.backend(), "keras": keras.__version__,
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "args": {
                    k: str(v) for k, v in vars(args).items()}}
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
