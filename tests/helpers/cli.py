"""The ``photo3d`` command: in-process (Typer's runner, fast) or in its own process (as a user runs it)."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from .paths import REPO, TESTS

runner = CliRunner()


def cli(*args, width: int = 200):
    """Run ``photo3d ARGS...`` in this process; returns Typer's Result (exit_code, output)."""
    from photo3d.cli import app

    return runner.invoke(app, [str(a) for a in args], terminal_width=width, env={"COLUMNS": str(width)},
                         prog_name="photo3d")


def cli_command(*args) -> list[str]:
    """``photo3d ARGS...`` as an argv for subprocess (this interpreter, this checkout)."""
    return [sys.executable, "-c", "import photo3d; photo3d.main()", *map(str, args)]


def pool_cli_command(workers: int, *args) -> list[str]:
    """``photo3d ARGS...`` as an argv for subprocess, on a machine taken to have at least ``workers``
    CPUs: ``--jobs N`` is lowered to the CPUs the process may use (with a warning line), so a test of
    N worker processes ran one process, or failed on its extra line, where fewer CPUs were free."""
    code = ("import photo3d.batch.run as run; cpus = run.available_cpus; "
            f"run.available_cpus = lambda: max(cpus(), {int(workers)}); "
            "import photo3d; photo3d.main()")
    return [sys.executable, "-c", code, *map(str, args)]


def env() -> dict[str, str]:
    """The environment for subprocesses: this checkout and tests/ importable (batch tasks, helpers)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")])}


def cli_process(*args, preexec_fn=None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The command as a user runs it: its own process, stderr as it reaches the terminal."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=env(), timeout=timeout,
                          preexec_fn=preexec_fn)
