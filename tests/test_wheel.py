"""A normal (not editable) install works: build a wheel from the clone's files, install it into a
fresh venv and run the README's main command with it, outside the source tree."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.gltf import assert_valid_glb
from helpers.paths import REPO

pytestmark = pytest.mark.slow


def _run(cmd: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{cmd}: exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _clone_files(dst: Path) -> None:
    """The files a clone of this working tree has (tracked + untracked, not ignored)."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


def _backend_installed() -> bool:
    """An installed setuptools that builds our wheel without downloads: >= 70.1, or >= 68 with `wheel`."""
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    return version >= (70, 1) or (version >= (68, 0) and importlib.util.find_spec("wheel") is not None)


def test_wheel_installs_and_runs_the_main_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    src, dist, venv, work = (tmp_path / d for d in ("src", "dist", "venv", "work"))
    _clone_files(src)
    # with an installed build backend that can build wheels nothing is downloaded; else pip fetches one
    isolation = ["--no-build-isolation"] if _backend_installed() else []
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", dist, src], tmp_path, env)
    wheels = list(dist.glob("photo3d-*.whl"))
    assert len(wheels) == 1
    # a fresh venv that sees the already installed dependencies (torch is not downloaded again)
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], tmp_path, env)
    py, exe = venv / "bin" / "python", venv / "bin" / "photo3d"
    _run([py, "-m", "pip", "install", "-q", "--no-deps", wheels[0]], tmp_path, env)
    work.mkdir()
    where = _run([py, "-c", "import photo3d, photo3d.depth.modelfile as m; print(photo3d.__file__); "
                  "print(m.bundled_model_path())"], work, env).stdout.split()
    site = venv / "lib"
    assert all(Path(p).resolve().is_relative_to(site.resolve()) for p in where), where  # not the source tree

    # the README's main command, on the example photo copied out of the source tree
    shutil.copy(REPO / "examples" / "coffee.jpg", work / "coffee.jpg")
    res = _run([exe, "convert", "coffee.jpg", "-o", "coffee.glb", "--html"], work, env)
    assert "coffee.jpg" in res.stdout + res.stderr
    assert_valid_glb(work / "coffee.glb")
    assert (work / "coffee.html").stat().st_size > (work / "coffee.glb").stat().st_size
