"""The contact sheet of `mlsp predict --html` as a person sees it: opened in a real headless
browser (Chromium), screenshotted, and the screenshot checked: the thumbnails are there, in
the order of their scores, with the photos' own colours."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from mlsp.evaluation.contact_sheet import write_contact_sheet
from mlsp.inference.photos import rank_rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IN_CI = bool(os.environ.get("MLSP_CI"))  # .ci/run installs Chromium and sets this
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def _chromium_or_skip():
    if CHROMIUM:
        return CHROMIUM
    if IN_CI:
        pytest.fail("Chromium is missing in CI (.ci/run installs it with apt-get)")
    pytest.skip("no chromium here: apt-get install chromium (Debian) to run this test")


def _sheet(tmp_path):
    rows = []
    for (name, rgb), score in zip(COLOURS.items(), (2.0, 9.0, 5.0)):
        path = tmp_path / f"{name}.jpg"
        Image.new("RGB", (300, 200), rgb).save(path, quality=95)
        rows.append({"id": name, "path": str(path), "score": score})
    rows.append({"id": "bad", "path": str(tmp_path / "bad.cr2"), "score": None,
                 "error": "not a recognised image format"})
    ranked = rank_rows(rows, reference=[1.0, 4.0, 6.0, 8.0])
    return write_contact_sheet(ranked, tmp_path / "sheet.html", model="test", scale=(1, 10),
                               size=160)


def test_sheet_html_lists_best_first_and_failures_last(tmp_path):
    html = _sheet(tmp_path).read_text()
    assert html.index("green.jpg") < html.index("blue.jpg") < html.index("red.jpg")
    assert html.index("red.jpg") < html.index("Not scored") < html.index("bad.cr2")
    assert "<script" not in html and "#1" in html and "9.00" in html


def test_sheet_in_a_real_browser(tmp_path):
    browser = _chromium_or_skip()
    sheet = _sheet(tmp_path)
    shot = tmp_path / "shot.png"
    p = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--screenshot={shot}", "--window-size=900,600",
                        sheet.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), p.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (600, 900)
    assert img.std() > 10  # not blank
    centres = {}
    for name, rgb in COLOURS.items():
        near = (np.abs(img - np.array(rgb)).sum(axis=2) < 60)
        assert near.sum() > 5000, f"{name} thumbnail not on the screenshot"
        ys, xs = np.nonzero(near)
        centres[name] = (ys.mean(), xs.mean())
    # one row, best first: green (9) left of blue (5) left of red (2), same height
    assert centres["green"][1] < centres["blue"][1] < centres["red"][1]
    assert max(c[0] for c in centres.values()) - min(c[0] for c in centres.values()) < 5
    shutil.copy(shot, os.environ.get("MLSP_SHOT", tmp_path / "kept.png"))
