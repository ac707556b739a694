"""Real faults for the reliability tests: a small tmpfs (a real device that fills up or is
read-only), filled to the last byte.  Skips the test when the machine cannot mount one."""
import subprocess
from pathlib import Path

import pytest


def mount_tmpfs(path: Path, options: str):
    """Mount a tmpfs with ``options`` (e.g. ``size=1m``, ``ro``) at ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                         capture_output=True, text=True)
    if got.returncode:
        pytest.skip(f"cannot mount a tmpfs to make the fault real: {got.stderr.strip()}")


def unmount(path: Path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_device(folder: Path):
    """Write ``folder/filler`` until the device refuses: a real full file system."""
    with open(Path(folder) / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def write_labels_csv(path: Path, ids, mos):
    """A minimal label file: ``id,mos``."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "mos"])
        w.writerows(zip(ids, mos))
    return path
