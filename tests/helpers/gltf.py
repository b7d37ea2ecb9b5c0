"""Khronos glTF validator (npm ``gltf-validator``) for the tests: ``assert_valid_glb(path)``.

Install once (git-ignored): ``npm install --prefix .cache/node gltf-validator``.  Without node
or the validator the tests skip locally and FAIL in CI (``CI=true``), so CI never goes green
without validating.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from .paths import REPO, missing_tool

SCRIPT = REPO / "tests" / "validate_gltf.mjs"


def _missing(reason: str) -> None:
    missing_tool(f"glTF validator unavailable ({reason})")


def validator_report(path: str | Path) -> dict:
    node = shutil.which("node")
    if node is None:
        _missing("no node on PATH")
    module_dir = Path(os.environ.get("GLTF_VALIDATOR_DIR", REPO / ".cache" / "node" / "node_modules"))
    if not (module_dir / "gltf-validator").is_dir():
        _missing(f"no {module_dir / 'gltf-validator'}")
    proc = subprocess.run([node, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GLTF_VALIDATOR_DIR": str(module_dir)})
    assert proc.returncode == 0, f"validator crashed: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def assert_valid_glb(path: str | Path) -> dict:
    """Validate ``path``; fail with the validator's messages unless it reports 0 errors."""
    report = validator_report(path)
    issues = report["issues"]
    errors = [m for m in issues["messages"] if m["severity"] == 0]
    assert issues["numErrors"] == 0, f"{path}: {issues['numErrors']} glTF error(s): {json.dumps(errors[:10], indent=1)}"
    return report
