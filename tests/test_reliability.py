"""Reliability v3 (issue 20): numeric options, non-regular files, folder walks, names,
lists, declared sizes, outputs.  Each fault is made for real where the machine allows."""
import math
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mlsp.errors import MLSPError, OptionError
from mlsp.options import check_whole, number, whole

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


# -- numeric options ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [-1, 0, 1.5, math.nan, True, "x"])
def test_a_limit_that_is_not_a_positive_whole_number_is_refused(value):
    with pytest.raises(OptionError, match=r"^limit must be a whole number >= 1, got"):
        check_whole("limit", value, 1)
    assert isinstance(OptionError("x"), (MLSPError, ValueError))


@pytest.mark.parametrize("value", [0, -2.0, math.nan, math.inf, "nan"])
def test_a_memory_budget_must_be_a_finite_positive_number(value):
    with pytest.raises(OptionError, match=r"^max_memory must be"):
        number("max_memory", value, 0, low_open=True)
    assert whole("n", 3.0, 1) == 3 and number("x", "0.5", 0, 1) == 0.5


@pytest.mark.parametrize("args,option", [(["--limit", "-1"], "--limit"),
                                         (["--max-memory", "0"], "--max-memory"),
                                         (["--max-memory", "nan"], "--max-memory"),
                                         (["--alpha", "inf"], "--alpha"),
                                         (["--workers", "-3"], "--workers")])
def test_the_command_line_refuses_bad_numbers_before_any_work(tmp_path, args, option):
    from mlsp.cli import main

    got = CliRunner().invoke(main, ["extract", str(tmp_path), "-o", str(tmp_path / "s.h5"), *args])
    assert got.exit_code == 2
    err = [ln for ln in got.output.splitlines() if ln.startswith("Error")]
    assert len(err) == 1 and option in err[0] and "got" in err[0], got.output
    assert "Traceback" not in got.output and not (tmp_path / "s.h5").exists()


def test_library_options_are_checked_with_the_same_rules(tmp_path):
    from mlsp.extract.extractor import ExtractOptions, extract

    for kw, msg in (({"max_memory": 0}, "max_memory must be a whole number >= 1"),
                    ({"alpha": math.nan}, "alpha must be a finite number > 0"),
                    ({"crop_fraction": 1.5}, r"crop_fraction must be in \(0, 1\]")):
        with pytest.raises(OptionError, match=msg):
            ExtractOptions(**kw)
    with pytest.raises(OptionError, match="limit must be a whole number >= 1, got -1"):
        extract([], tmp_path / "s.h5", limit=-1, progress=False)
    assert not (tmp_path / "s.h5").exists()
