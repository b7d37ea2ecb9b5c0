"""photo3d: turn a single 2D photo into a 3D photo (layered depth mesh exported as glTF)."""

__version__ = "0.1.0"


def main() -> None:
    """The ``photo3d`` command (and ``python -m photo3d``).  A Ctrl-C while the command line's modules
    load (typer, rich: 0.1-0.2 s on a busy machine) printed a 15-30-line import traceback and ended with
    -2 or 1; it says so in one line and ends with 130, as a Ctrl-C later does.  (What comes before this
    function, the interpreter's own start-up, is Python's.)"""
    import signal

    _sane_environment()

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    # ``kill`` (SIGTERM) or a closed terminal (SIGHUP) before the run's own handling begins: as Ctrl-C
    # (they ended the command without a word, exit 143 / 129); one ignored from the start (nohup) stays so
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, stop)
    try:
        from .cli import app
    except KeyboardInterrupt:
        import sys

        sys.stderr.write("interrupted: nothing written\n")
        raise SystemExit(130) from None
    app(prog_name="photo3d")


def _sane_environment() -> None:
    """What the environment holds that ends a run in silence or in someone else's words
    (helper-105): ``COLUMNS=0`` (rich printed nothing at all, errors included: a width under 1 is
    dropped), ``NUMBA_NUM_THREADS=0`` (a 60-line traceback from the GIF encoder: a value that is no
    number of threads is dropped, with a warning), and a working folder deleted under the shell
    (torch's loader aborted with "Intel oneMKL FATAL ERROR", exit 2: one line, exit 1)."""
    import os
    import sys

    for name in ("COLUMNS", "LINES"):
        value = os.environ.get(name, "").strip()
        if value.lstrip("-").isdigit() and int(value) < 1:
            del os.environ[name]
    value = os.environ.get("NUMBA_NUM_THREADS")
    if value is not None and not (value.strip().isdigit() and int(value) >= 1):
        del os.environ["NUMBA_NUM_THREADS"]
        sys.stderr.write(f"warning: NUMBA_NUM_THREADS={value!r} is not a number of threads; ignored\n")
    try:
        os.getcwd()
    except OSError:
        sys.stderr.write("error: the current folder no longer exists (deleted while the shell was in it); "
                         "cd to another folder\n")
        raise SystemExit(1) from None
