"""The per-file task and how it runs in a worker.

A :class:`Task` is a frozen, picklable object: the functions are module-level, so they travel to
worker processes and Ray actors by reference, and each worker calls ``warm_up(options)`` once
(load the model) before its first file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..errors import ExitCode, ModelError, OutputError, Photo3DError, UsageError, ignore_library_noise, one_line
from ..io import confined_to, existing_folder
from .result import Result, Status, msg


@dataclass(frozen=True)
class Task:
    """What to run on each file, and with which options.

    * ``run(src, dst, options) -> report dict``: writes ``dst`` (and any side files beside it)
      atomically; raises :class:`~photo3d.errors.InputFileError` for a bad file and
      :class:`~photo3d.errors.ModelError` when every file would fail (stops the batch).
    * ``warm_up(options)``: load what files need once per worker (the depth model).
    * ``needs_warm_up(src) -> bool``: whether that file needs it (None: every file); a batch of
      files none of which needs it starts its workers without it (:meth:`for_files`).
    * ``outputs(dst, options) -> [dst, side files...]``: planned together, so no two collide.
    * ``finish(src, dst, options) -> report dict``: write the missing side files of an existing
      ``dst`` (each output resumes on its own).
    * ``reads(options) -> [(what, path)...]``: the files besides the photos it reads (a ``--depth``
      map, the model's): no output and no ``--summary`` may replace them.
    * ``done``: the closing line's word for the outputs written ("3 converted", "3 depth map(s) written").
    """

    name: str
    run: Callable[[Path, Path, Any], dict[str, Any] | None]
    options: Any = None
    warm_up: Callable[[Any], Any] | None = None
    outputs: Callable[[Path, Any], Sequence[Path]] | None = None
    finish: Callable[[Path, Path, Any], dict[str, Any] | None] | None = None
    done: str = "converted"  # what the batch's closing line says of the outputs it wrote ("3 converted")
    reads: Callable[[Any], Sequence[tuple[str, Path]]] | None = None
    out: Path | None = None  # the batch's OUT: outputs are written only inside it (``io.confined_to``)
    needs_warm_up: Callable[[Path], bool] | None = None
    tags_outputs: bool = False  # its .png / .jpg outputs carry photo3d's tag: a kept one without it is the user's
    # ``kept_note(src, dst, options) -> str | None``: a warning for an output kept as done that was made with
    # other options than this run's (it is kept all the same: a resume does not redo finished work)
    kept_note: Callable[[Path, Path, Any], str | None] | None = None

    def with_options(self, options: Any) -> Task:
        return dataclasses.replace(self, options=options)

    def for_files(self, srcs: Iterable[Path]) -> Task:
        """This task for a batch of these inputs: without the warm-up when none of them needs it
        (3D photos that photo3d wrote, rendered to a page or a video: no depth model, no torch)."""
        if self.warm_up is None or self.needs_warm_up is None or any(map(self.needs_warm_up, srcs)):
            return self
        return dataclasses.replace(self, warm_up=None)

    def read_files(self) -> list[tuple[str, Path]]:
        """(what, path) of each file besides the photos that it reads with these options."""
        return [] if self.reads is None else list(self.reads(self.options))

    def planned_outputs(self) -> Callable[[Path], list[Path]] | None:
        """``dst -> [dst, side files...]`` with these options (None: dst only)."""
        hook = self.outputs
        return None if hook is None else (lambda dst: list(hook(dst, self.options)))


def _peak_rss_mb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except Exception:  # pragma: no cover - not on Linux
        return None


_WORKER_ID = None


def _worker_id() -> str:
    global _WORKER_ID
    if _WORKER_ID is None:
        import socket

        _WORKER_ID = f"{os.getpid()}@{socket.gethostname()}"
    return _WORKER_ID


def warm_up(task: Task) -> None:
    """Load what the task needs once per worker (the depth model), so files don't pay for it.
    Failures are ignored here: they surface, with the file name, when the first file runs."""
    if task.warm_up is None:
        return
    with contextlib.suppress(Exception):
        task.warm_up(task.options)


def _warning_lines(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """Library warnings (PIL, numpy, ...) raised while a file ran, one short line each."""
    lines: list[str] = []
    for w in caught:
        line = one_line(f"{w.category.__name__}: {w.message}")
        if line not in lines:
            lines.append(line)
    return lines[:5]


#: A write that failed for these reasons fails every output after it: a full disk, an exceeded quota, a
#: filesystem that became read-only (the system does that after a disk error)
_WHOLE_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _disk_refuses(e: BaseException | None) -> int | None:
    """The errno by which ``e`` (or its cause) says the disk takes no more files (the batch stops
    rather than convert every remaining photo only to fail to write it), else None.  FFmpeg's
    reason is a sentence: matched by its text."""
    while e is not None:
        if isinstance(e, OSError):
            for code in _WHOLE_DISK:
                if e.errno == code or os.strerror(code) in str(e):
                    return code
        e = e.__cause__
    return None


def disk_stop(e: BaseException) -> str | None:
    """For a failed write (:class:`OutputError`) because the disk takes no more files: what the
    line that stops the batch adds ("; stopped: free some space, then ..."); else None."""
    code = _disk_refuses(e) if isinstance(e, OutputError) else None
    if code is None:
        return None
    what = "make the disk writable again" if code == errno.EROFS else "free some space"
    return f"; stopped: {what}, then run the same command again to continue"


#: Free space under which the disk of an output counts as full before the work for it starts: far
#: below any output (a GLB, a page, a depth map of a few pixels take more), so a disk is refused only
#: when a write would fail; a full disk was found only on writing, after the photo's conversion
DISK_MIN_FREE = 64 * 1024


def disk_full(dst: Path) -> OutputError | None:
    """The error (the batch stops: :func:`disk_stop`) when the disk that ``dst`` goes to has less
    than :data:`DISK_MIN_FREE` left (or no file left to make), else None.  Root may write into the
    blocks reserved for it; a filesystem that says nothing of its size (f_blocks 0) is not judged."""
    try:  # (the folders of an output are made when it is written: the nearest one that exists)
        st = os.statvfs(existing_folder(dst))
    except (OSError, AttributeError):  # (no statvfs: Windows)
        return None
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    free = (st.f_bfree if root else st.f_bavail) * st.f_frsize
    files = st.f_ffree if root else st.f_favail
    if st.f_blocks and free < DISK_MIN_FREE or st.f_files and files == 0:
        cause = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        left = f"{free // 1024} KB free" if free < DISK_MIN_FREE else "no file can be made"
        error = OutputError(f"cannot write ({cause.strerror}: {left})", dst)
        error.__cause__ = cause
        return error
    return None


def execute(task: Task, src: Path, dst: Path, finish: bool = False) -> Result:
    """Run ``task`` on one file and describe the outcome; never raises for a bad file.
    ``finish``: run the task's ``finish`` hook instead (write the missing side files of ``dst``).

    A :class:`ModelError` (or a bad option) comes back with ``fatal`` set: it is not about the
    file, every other file would fail the same way.  Library warnings are kept in
    ``report["warnings"]`` (one line each), not printed as multi-line blocks.
    """
    t0 = time.perf_counter()
    caught: list[warnings.WarningMessage] = []
    try:
        func = task.finish if finish else task.run
        if func is None:
            raise UsageError(f"task {task.name!r} cannot add missing side outputs")
        if (full := disk_full(dst)) is not None:  # (before the work, not after it)
            raise full
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ignore_library_noise()  # (before "always": the model may be loading in a thread meanwhile)
            with confined_to(task.out):
                report = dict(func(src, dst, task.options) or {})
        if caught:  # (after the task's own warnings, if any)
            report["warnings"] = list(dict.fromkeys([*report.get("warnings", ()), *_warning_lines(caught)]))
        if finish:  # (dst was kept: the bytes are those of the side files written)
            size = sum(Path(o).stat().st_size for o in report.get("outputs", ()) if Path(o).exists())
        else:
            size = dst.stat().st_size if dst.exists() else 0
        return Result(src, dst, Status.ok, time.perf_counter() - t0, size, report=report,
                      worker=_worker_id(), peak_rss_mb=_peak_rss_mb())
    except Photo3DError as e:
        if e.path is None:
            e.path = src
        fatal = e.exit_code if isinstance(e, (ModelError, UsageError)) else None
        error = str(e)
        if (stop := disk_stop(e)) is not None:  # every other output would fail the same way
            error, fatal = error + stop, ExitCode.failed
        return Result(src, dst, Status.failed, time.perf_counter() - t0, error=error, fatal=fatal,
                      worker=_worker_id(), peak_rss_mb=_peak_rss_mb())
    except MemoryError:
        return Result(src, dst, Status.failed, time.perf_counter() - t0,
                      error=msg(src, "out of memory (try a lower --max-megapixels)"), worker=_worker_id())
    except Exception as e:  # a bug must not stop the batch either; say what it was in one line
        if os.environ.get("PHOTO3D_DEBUG"):
            import traceback

            traceback.print_exc()
        return Result(src, dst, Status.failed, time.perf_counter() - t0,
                      error=msg(src, f"internal error ({one_line(f'{type(e).__name__}: {e}')})"),
                      worker=_worker_id(), peak_rss_mb=_peak_rss_mb())


def set_threads(threads: int | None) -> None:
    """Threads per worker, for torch and OpenCV; torch is not imported for it (a worker that renders
    GLBs needs none): not loaded yet, it takes the count from the environment when it is."""
    if not threads:
        return
    if "torch" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(threads)
