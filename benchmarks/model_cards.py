"""MODEL_CARD.md of a shipped model, from its zoo.json (written by make_models.py)."""
from __future__ import annotations

from pathlib import Path

HEADS = {"ridge": "ridge regression (closed form, penalty by leave-one-out) on the "
                  "standardized features averaged over the 8 crops",
         "single_3fc": "Single-3FC (MLSP Fig. 4b: three fully connected layers, 2048-1024-256,"
                       " dropout), the small-set defaults"}

ABOUT = {
    "livec": {
        "title": "LIVE In the Wild Image Quality Challenge Database (half: 581 of its 1,162 "
                 "test photos)",
        "what": "authentic photos taken with many phones and tablets by many people, each "
                "rated for overall picture quality by about 175 online raters (MOS 0-100)",
        "for": "sorting your own photos by technical quality: blur, camera shake, noise, "
               "under- or over-exposure, heavy compression; finding the unusable shots of "
               "a series",
        "not": "how beautiful, interesting or well composed a photo is (use `beauty` for "
               "the content's appeal); a photo of a dull subject that is sharp and well "
               "exposed scores high. Not a measure of a camera, and not calibrated for "
               "scans, screenshots, drawings or generated images",
        "licence": "COPYRIGHT.txt",
        "cite": 'D. Ghadiyaram and A.C. Bovik, "Massive Online Crowdsourced Study of '
                'Subjective and Objective Picture Quality", IEEE Transactions on Image '
                'Processing, 2016; "LIVE In the Wild Image Quality Challenge Database", '
                "http://live.ece.utexas.edu/research/ChallengeDB/index.html, 2015.",
    },
    "oasis": {
        "title": "OASIS, the Open Affective Standardized Image Set (900 photos), with the "
                 "beauty ratings of Brielmann and Pelli (2019)",
        "what": "500x400 photos of people, animals, objects and scenery, each rated for felt "
                "beauty on a 1-7 scale by 104 to 368 raters",
        "for": "ordering photos by how beautiful people tend to find what they show: "
               "pleasant scenery and animals high, injuries and dirt low",
        "not": "photographic skill or technical quality (a blurred sunset still scores "
               "high; use `quality`); not an aesthetic judgement of composition, and not a "
               "judgement of the people shown. Trained on 900 small photos: a rough guide",
        "licence": None,
        "cite": "B. Kurdi, S. Lozano and M.R. Banaji, \"Introducing the Open Affective "
                "Standardized Image Set (OASIS)\", Behavior Research Methods 49, 2017; "
                "A.A. Brielmann and D.G. Pelli, \"Intense beauty requires intense "
                "pleasure\", Frontiers in Psychology 10, 2019.",
    },
}


def _ci(v) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def write_card(path: Path, zoo: dict, sizes: dict, data_dir: Path) -> Path:
    a = ABOUT[zoo["data"]]
    cv = zoo["cv"]
    f, d = zoo["figures"], zoo["difference_single_3fc_minus_ridge"]
    n_runs = cv["folds"] * len(cv["seeds"])
    rows = "\n".join(
        f"| {h}{' (shipped)' if h == zoo['head'] else ''} | {f[h]['folds']}x"
        f"{len(f[h]['seeds'])} (seeds {', '.join(map(str, f[h]['seeds']))}) | "
        f"{_ci(f[h]['srcc'])} | {_ci(f[h]['plcc'])} | "
        f"{', '.join(f'{v:.3f}' for v in f[h]['oof_srcc'].values())} |"
        + (" this script |" if f[h]["source"] == "this run" else f" `{f[h]['source']}` |")
        for h in ("ridge", "single_3fc") if h in f)
    if "single_3fc" not in f:
        rows += "\n| single_3fc | not cross-validated in this run | | | | |"
    size = "\n".join(f"| {k} | {v / 1e6:.2f} MB |" for k, v in sizes.items())
    if a["licence"]:
        notice = (data_dir / a["licence"]).read_text().strip()
        licence = ("The ratings and images are © The University of Texas at Austin; their "
                   "notice, which must travel with them and with what is derived from them, "
                   "in full:\n\n```\n" + notice + "\n```")
    else:
        licence = ("The photos were collected by the OASIS authors from Pixabay, Wikimedia "
                   "and Flickr under free licences; the set and its ratings are released "
                   "for research use. No photo is shipped with this model, only weights "
                   "learned from the ratings. Cite both papers below when you report results "
                   "made with it.")
    text = f"""# Model card: `{zoo['name']}`

**What it scores:** {zoo['task']}.
**Scale:** {zoo['scale_text']}. `mlsp predict` also gives each photo's rank and its
percentile: the share of the {zoo['n_photos']} training photos that the model (in
cross-validation, on photos it had not seen) scored lower.

**Use it for:** {a['for']}.
**Not for:** {a['not']}.

## Model

- Features: MLSP narrow features (Hosu et al., CVPR 2019: every block of the backbone
  global-average-pooled) of the ImageNet MobileNetV2 (width 0.35) shipped with mlsp, at full
  resolution, averaged over 8 crops (4 corners at 87.5%, each mirrored).
- Head: {HEADS[zoo['head']]}; {zoo['params']:,} parameters.
- Trained on all {zoo['n_train_final']} training photos of the set (made by
  `python benchmarks/make_models.py`; anyone can rerun it).
- Files (`mlsp/data/models/{zoo['name']}/`):

| file | size |
|---|---|
{size}

`model.onnx` is the whole scorer (crops, backbone, head, average) for onnxruntime: `mlsp
predict` uses it and does not start TensorFlow.

## Data

{a['title']}: {a['what']}. {zoo['n_photos']} photos.

{licence}

Cite: {a['cite']}

## How good it is (cross-validated)

K-fold cross-validation, K = {cv['folds']}; the shipped head over {n_runs} test folds. Mean
test-fold figure with the 95% corrected repeated k-fold interval (Nadeau and Bengio 2003).
The folds of a seed are the same for every head (they depend on the photo ids and the seed
only), so the candidates are compared fold by fold.

| head | folds x seeds | SRCC | PLCC | out-of-fold SRCC over all photos, per seed | rows from |
|---|---|---|---|---|---|
{rows}

Single-3FC minus ridge, paired by test fold: SRCC {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}].
Rule: Single-3FC only when its mean is higher, that interval excludes 0 and its weights
(stored twice, {zoo['single_3fc_bytes'] / 1e6:.0f} MB) stay under 25 MB; else ridge (closed
form, a few kB). Shipped: **{zoo['head']}**: {zoo['choice']}.

These figures are for photos like the training set's; on other kinds of photos expect less.
"""
    path.write_text(text)
    return path
