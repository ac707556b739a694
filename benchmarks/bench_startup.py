"""Start-up time of the commands that need no model (issue 11): wall time per command.

    flock /tmp/mlsp-heavy.lock python benchmarks/bench_startup.py STORE [--code DIR] [--repeat 5]

``--code DIR`` runs the mlsp found in DIR (e.g. another checkout, for a before/after);
default: the mlsp this interpreter imports.  Prints one line per command (median and min
of ``--repeat`` runs, and whether keras was imported) and writes ``--csv``.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROBE = ("import sys, runpy; sys.argv = ['mlsp'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('mlsp.cli', run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         "finally:\n    sys.stderr.write('\\nKERAS_LOADED=%d\\n' % ('keras' in sys.modules))\n")


def run(args, env):
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True,
                       text=True)
    return time.perf_counter() - t, "KERAS_LOADED=1" in p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--code", default=None, help="Folder holding the mlsp package to time.")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--csv", default="startup.csv")
    a = ap.parse_args()
    env = dict(os.environ)
    if a.code:
        env["PYTHONPATH"] = str(Path(a.code).resolve())
    cases = [["--help"], ["info", a.store], ["info", "--help"], ["info", "--json", a.store],
             ["merge", "--help"], ["train", "--help"], ["predict", "--help"]]
    rows = []
    print(f"mlsp from {a.code or 'this interpreter'}; {a.repeat} runs each")
    for case in cases:
        times, loaded = [], False
        for _ in range(a.repeat):
            s, loaded = run(case, env)
            times.append(s)
        row = {"command": "mlsp " + " ".join(case).replace(a.store, "STORE"),
               "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
               "keras_imported": loaded}
        rows.append(row)
        print(f"{row['command']:<28} median {row['median_s']:.2f} s  min {row['min_s']:.2f} s  "
              f"keras imported: {loaded}")
    with open(a.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
