import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


import csv  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

HERE = Path(__file__).resolve().parent
#: The real OASIS photos and ratings (``$MLSP_OASIS`` or ``../shared/data/oasis``).
OASIS = Path(os.environ.get("MLSP_OASIS") or next(
    (p / "shared" / "data" / "oasis" for p in HERE.parents
     if (p / "shared" / "data" / "oasis" / "labels.csv").is_file()), HERE / "no-oasis"))
#: Features of all 900 OASIS photos made earlier (bundled MobileNetV2-0.35, narrow, 8
#: augmentations), used when present and finished; otherwise extracted once per session.
OASIS_STORE = Path(os.environ.get("MLSP_OASIS_STORE") or "/work/cache/feats/oasis_mnv2.h5")


@pytest.fixture(scope="session")
def oasis_store(tmp_path_factory):
    """(store, labels file) of all 900 OASIS photos, for the slow real-data tests
    (tests/test_quality_oasis.py, tests/test_selection_real.py): labels id, path, mos and
    the vote counts c1..c7; the store extracted once with the bundled MobileNetV2-0.35."""
    import mlsp

    if not (OASIS / "labels.csv").is_file():
        pytest.skip(f"OASIS not found at {OASIS}")
    tmp = tmp_path_factory.mktemp("oasis")
    with open(OASIS / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    labels = tmp / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path", "mos", *(f"c{k}" for k in range(1, 8))])
        for r in rows:
            w.writerow([r["id"], str(OASIS / r["path"]), r["mos"],
                        *(r[f"c{k}"] for k in range(1, 8))])
    if OASIS_STORE.is_file() and not Path(f"{OASIS_STORE}.lock").exists():
        return OASIS_STORE, labels
    store = mlsp.extract(labels, tmp / "oasis.h5", backbone="mobilenet_v2", alpha=0.35,
                         weights="bundled", wide_size=0)
    return store, labels
