"""Training step time of the heads in float32 and in mixed precision, side by side.

    python benchmarks/bench_precision.py [--heads pool_3fc,mnet,single_3fc] [--repeats 3]

Each head is built as the trainer builds it (the registry's builder, a float32 output
under mixed precision) for MobileNetV2-0.35's 1,824 channels (wide heads: a 5x5 grid) and
trained with Adam on random inputs: ``--steps`` steps of batch 128 per measurement, after
one warm-up fit, each precision in its own process (Keras' dtype policy is global), the
processes interleaved ``--repeats`` times so machine noise hits all alike.  Prints the
median seconds a step and the ratio float32 / mixed, and writes ``--json``.  On a CPU
``mixed_bfloat16`` pays off only with native bf16 instructions (AVX512-BF16, AMX);
``mixed_float16`` is for GPUs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np, keras
from mlsp.heads.registry import get_head
from mlsp.training.precision import policy_scope, with_float32_output
head, policy, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = get_head(head)
shape = (5, 5, 1824) if spec.default_features != "narrow" else (1824,)
with policy_scope(policy):
    model = spec.build(shape, seed=0)
    if policy != "float32":
        model = with_float32_output(model)
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
rng = np.random.default_rng(0)
x = rng.random((128 * steps,) + shape, dtype=np.float32)
y = rng.random((128 * steps, 1), dtype=np.float32)
model.fit(x[:256], y[:256], batch_size=128, epochs=1, verbose=0)
t = time.perf_counter()
model.fit(x, y, batch_size=128, epochs=1, verbose=0)
print("STEP", (time.perf_counter() - t) / steps)
"""


def step_seconds(head: str, policy: str, steps: int) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", PROBE, head, policy, str(steps)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return float(next(ln for ln in out.splitlines() if ln.startswith("STEP")).split()[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", default="pool_3fc,mnet,single_3fc")
    ap.add_argument("--mixed", default="mixed_bfloat16")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path("precision.json"))
    a = ap.parse_args()
    heads = [h.strip() for h in a.heads.split(",") if h.strip()]
    times = {(h, p): [] for h in heads for p in ("float32", a.mixed)}
    for _ in range(a.repeats):
        for h in heads:
            for p in ("float32", a.mixed):
                times[(h, p)].append(step_seconds(h, p, a.steps))
    rows = []
    print(f"seconds per training step of 128 (median of {a.repeats}); backend "
          f"{os.environ.get('KERAS_BACKEND', 'tensorflow')}")
    for h in heads:
        f32, mixed = (statistics.median(times[(h, p)]) for p in ("float32", a.mixed))
        rows.append({"head": h, "float32_s": f32, f"{a.mixed}_s": mixed,
                     "speedup": f32 / mixed})
        print(f"{h:12s} float32 {f32:.3f} s   {a.mixed} {mixed:.3f} s   x{f32 / mixed:.2f}")
    a.json.write_text(json.dumps({"rows": rows, "raw": {f"{h}/{p}": v for (h, p), v in
                                                        times.items()}}, indent=1))
    print(f"written: {a.json}")


if __name__ == "__main__":
    main()
