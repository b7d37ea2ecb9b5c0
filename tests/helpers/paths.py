"""Where things are, and what to do when a test tool is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
SHARED = Path(os.environ.get("PHOTO3D_SHARED", REPO.parent / "shared"))

# the bundled model of sessions 14-38 (v3), renamed: builder tests written against its maps (a cut that
# is there, a pocket it reads) run on it, so they keep testing the builder whatever model is bundled
V3_MODEL = TESTS / "models" / "p3d-s-v3.pt"

needs_shared = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared is absent")


def missing_tool(reason: str) -> None:
    """A test tool is absent: fail in CI (scripts/install-test-deps.sh must have installed it), skip elsewhere."""
    hint = f"{reason}; install it with scripts/install-test-deps.sh"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"in CI: {hint}")
    pytest.skip(hint)


def benchmark(name: str):
    """Import ``benchmarks/NAME.py`` (its measuring code: e.g. the novel-view rasterizer)."""
    import importlib.util
    import sys

    key = f"benchmarks_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]
