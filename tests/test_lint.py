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


def test_no_image_mode_argument():
    """``Image.fromarray(a, mode)`` is deprecated in Pillow 11.3 (which ``pillow>=10`` allows): every
    GIF and every photo with an sRGB profile printed a DeprecationWarning to the user there. The mode
    follows from the array's dtype and shape; a palette image is made with ``Image.frombytes``."""
    import ast

    found = []
    for path in sorted((REPO / "photo3d").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fromarray"
                    and (len(node.args) > 1 or any(k.arg == "mode" for k in node.keywords))):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, found
