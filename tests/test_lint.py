"""`ruff check` (configured in pyproject.toml) is clean: part of the test suite, so CI runs it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from helpers.paths import REPO, missing_tool


def test_ruff_is_clean():
    if importlib.util.find_spec("ruff") is None:
        missing_tool("ruff is not installed (pip install -e '.[test]')")
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", str(REPO)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
