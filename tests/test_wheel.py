"""A normal (not editable) install works: build a wheel from the clone's files, install it into a
fresh venv and run the README's main command with it, outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
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
    """An installed setuptools that builds our wheel without downloads: >= 77 (the licence fields of
    PEP 639 that pyproject.toml uses)."""
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    return version >= (77, 0)


def test_wheel_installs_and_runs_the_main_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    src, dist, venv, work = (tmp_path / d for d in ("src", "dist", "venv", "work"))
    _clone_files(src)
    # with an installed build backend that can build wheels nothing is downloaded; else pip fetches one
    isolation = ["--no-build-isolation"] if _backend_installed() else []
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", dist, src], tmp_path, env)
    wheels = list(dist.glob("photo3d-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as z:  # the licences travel with the code (helper-86: ours did not)
        names = z.namelist()
        ours = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert ours and b"MIT License" in z.read(ours[0]), names
        assert "photo3d/assets/three.LICENSE" in names and "photo3d/models/README.md" in names
        assert not [n for n in names if n.startswith(("tests/", "runs/")) or n.endswith((".nbi", ".nbc"))]
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


def test_sdist_carries_the_test_suite_and_the_licence(tmp_path):
    """A packager runs the tests from the unpacked sdist: setuptools alone took tests/test_*.py but not
    conftest.py, tests/helpers/ or the example photo, and the suite could not start (helper-86)."""
    if not _backend_installed():
        pytest.skip("setuptools >= 77 is not installed (pip install 'setuptools>=77')")
    src, dist = tmp_path / "src", tmp_path / "dist"
    _clone_files(src)
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    name = _run([sys.executable, "-c", code, dist], src, env).stdout.split()[-1]
    with tarfile.open(dist / name) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for needed in ("LICENSE", "tests/conftest.py", "tests/helpers/paths.py", "tests/validate_gltf.mjs",
                   "examples/coffee.jpg", "scripts/install-test-deps.sh", ".ci/run", "photo3d/models/p3d-s.pt"):
        assert needed in names, needed
    assert not [n for n in names if "__pycache__" in n or n.startswith("runs/")]
