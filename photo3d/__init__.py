"""photo3d: turn a single 2D photo into a 3D photo (layered depth mesh exported as glTF)."""

__version__ = "0.1.0"


def main() -> None:
    """The ``photo3d`` command (and ``python -m photo3d``).  A Ctrl-C while the command line's modules
    load (typer, rich: 0.1-0.2 s on a busy machine) printed a 15-30-line import traceback and ended with
    -2 or 1; it says so in one line and ends with 130, as a Ctrl-C later does.  (What comes before this
    function, the interpreter's own start-up, is Python's.)"""
    import signal

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
