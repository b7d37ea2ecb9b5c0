"""Run one per-file task over many inputs: discovery, output paths, executors, progress, summary.

Every command that takes INPUT... goes through :func:`run_batch`, so a single file, a folder and a
photo archive of millions of files behave the same way:

* :func:`plan_jobs` walks the inputs (recursive, hidden entries and the output folder skipped,
  symlink loops visited once) and maps every image to an output path that mirrors the input tree.
* :func:`run_batch` skips outputs that exist (unless ``overwrite``), runs the rest on an
  :class:`Executor` -- in-process, a local process pool, or a Ray cluster -- and collects one
  :class:`Result` per input.  A bad file never stops the batch; a broken model does.
* The per-file task is named, not passed as a closure: a :class:`TaskSpec` ``(name, options)``
  is pickled to the workers, which resolve the function themselves (see :data:`TASKS`) and load
  the model once per worker.

Outputs are written by the tasks through :func:`photo3d.io.atomic_output`, so an interrupted run
(Ctrl-C, ``kill -9``, a dead machine) leaves no partial file under a final name and a re-run
continues where it stopped.  Stale hidden temp files of planned outputs are removed on re-run.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .errors import ExitCode, ModelError, Photo3DError, UsageError, install_one_line_warnings, one_line, printable, summarize
from .io import IMAGE_SUFFIXES, is_image_path, stale_temp_target, write_bytes_atomic

#: Task names -> "module:function".  Every task is ``func(src: Path, dst: Path, options) -> dict``
#: and writes ``dst`` (and any side files beside it) atomically.  A "module:function" string
#: not in this table is accepted too (used by the tests).  Optional hooks in the task's module:
#: ``warm_up(options)`` (load the model once per worker), ``outputs(dst, options) -> [dst, side
#: files...]`` (planned together, so no two outputs collide) and ``finish(src, dst, options) ->
#: dict`` (write the missing side files of an existing ``dst``: each output resumes on its own).
TASKS: dict[str, str] = {
    "depth": "photo3d.depth:depth_file",
    "convert": "photo3d.pipeline:convert_file",
}

ENGINES = ("local", "ray")

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"
STATUS_FAILED = "failed"
STATUS_NOT_RUN = "not run"


# --------------------------------------------------------------------------------------------
# Plan: inputs -> (src, dst) jobs


@dataclass
class Job:
    src: Path
    dst: Path
    error: str | None = None  # known to fail before running (unreadable folder, output = input)
    sides: tuple[Path, ...] = ()  # side outputs written with dst (NAME.html, NAME.preview.png)

    @property
    def outputs(self) -> list[Path]:
        return [self.dst, *self.sides]


def _msg(path: Path | str, reason: str) -> str:
    """"PATH: reason" as one printable line (control characters in names escaped)."""
    return f"{printable(path)}: {printable(reason)}"


@dataclass
class Result:
    src: Path
    dst: Path
    status: str  # "ok" | "skipped" | "failed" | "not run"
    seconds: float = 0.0
    bytes: int = 0
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    worker: str | None = None  # which worker ran it ("pid@host")
    peak_rss_mb: float | None = None  # that worker's peak resident memory so far

    def record(self) -> dict[str, Any]:
        """The summary record: the same for every engine (timings aside)."""
        return {
            "input": str(self.src),
            "output": str(self.dst),
            "outputs": [str(p) for p in self.info.get("outputs", [self.dst] if self.status == STATUS_OK else [])],
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "bytes": self.bytes,
            "error": self.error,
            "report": _jsonable(self.info),
        }


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _matches(rel: str, globs: Sequence[str]) -> bool:
    if not globs:
        return True
    rel_l = rel.lower()
    name_l = rel_l.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel_l, g.lower()) or fnmatch.fnmatchcase(name_l, g.lower()) for g in globs)


def discover(
    folder: Path,
    globs: Sequence[str] = (),
    exclude: Iterable[Path] = (),
    errors: list[tuple[Path, str]] | None = None,
) -> Iterator[Path]:
    """Yield the image files under ``folder``, sorted, depth first.

    Hidden files and folders (name starting with ".") are skipped, and so are the folders in
    ``exclude`` (the output folder when it lies inside the input).  Symbolic links to folders are
    followed, but every real folder is visited once, so link loops end.  ``globs`` filter on the
    path relative to ``folder`` or on the file name (case-insensitive; ``*`` crosses folders).
    Folders that cannot be listed are appended to ``errors`` as (path, reason).
    """
    excluded = set()
    for p in exclude:
        with contextlib.suppress(OSError):
            st = os.stat(p)
            excluded.add((st.st_dev, st.st_ino))
    visited: set[tuple[int, int]] = set()

    def onerror(e: OSError) -> None:
        if errors is not None:
            reason = "unreadable folder (permission denied)" if isinstance(e, PermissionError) else (
                f"unreadable folder ({e.strerror or e})"
            )
            errors.append((Path(e.filename) if e.filename else folder, reason))

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=onerror):
        try:
            st = os.stat(dirpath)
            key = (st.st_dev, st.st_ino)
        except OSError:
            dirnames[:] = []
            continue
        if key in visited or key in excluded:
            dirnames[:] = []
            continue
        visited.add(key)
        keep = []
        for d in sorted(dirnames):
            if _is_hidden(d):
                continue
            try:
                st = os.stat(os.path.join(dirpath, d))
            except OSError:  # dangling link
                continue
            if (st.st_dev, st.st_ino) in visited or (st.st_dev, st.st_ino) in excluded:
                continue
            keep.append(d)
        dirnames[:] = keep
        base = Path(dirpath)
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            p = base / name
            if not is_image_path(p):
                continue
            if not _matches(p.relative_to(folder).as_posix(), globs):
                continue
            if not p.is_file():  # dangling link, fifo, ...
                continue
            yield p


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


#: Output names that mean a file, not a folder: ``-o x.glb`` with a folder input is a mistake.
FILE_SUFFIXES = IMAGE_SUFFIXES | {".glb", ".gltf", ".npy", ".html", ".json", ".mp4", ".gif", ".webp"}


def plan_jobs(
    inputs: Sequence[Path],
    output: Path,
    suffix: str,
    globs: Sequence[str] = (),
    outputs: Callable[[Path], Sequence[Path]] | None = None,
) -> list[Job]:
    """Map INPUT... to output paths.

    * One input file and an OUTPUT with a file suffix (that is not an existing folder): OUTPUT
      is that file.
    * Otherwise OUTPUT is a folder (a usage error when it is named like a file, ``-o x.glb``).  A
      single input folder's tree is mirrored directly into it; with several inputs each folder goes
      into ``OUTPUT/<folder name>/`` and each file into ``OUTPUT/``.  Outputs get ``suffix`` in
      place of the input's suffix.
    * ``outputs(dst)`` lists every file a job writes (``dst`` first, then side files such as
      ``NAME.preview.png``); they are planned together: inputs whose outputs would collide
      (``a.jpg`` and ``a.png``; ``b.tif``'s preview and ``b.preview.jpg``) keep their full name
      (``a.jpg.glb``), then get numbered.  An output that would overwrite an input fails its job.
    * Inputs that are missing, or folders that cannot be listed, become jobs that fail.
    """
    if not inputs:
        raise UsageError("no INPUT given")
    inputs = [Path(p) for p in inputs]
    output = Path(output)

    def sides(dst: Path) -> tuple[Path, ...]:
        return tuple(outputs(dst))[1:] if outputs is not None else ()

    single = len(inputs) == 1 and not inputs[0].is_dir()
    if single and not output.is_dir() and output.suffix and not str(output).endswith(os.sep):
        jobs = [Job(inputs[0], output, sides=sides(output))]
        _refuse_overwriting_inputs(jobs)
        return jobs
    if not output.is_dir() and output.suffix.lower() in FILE_SUFFIXES | {suffix.lower()}:
        what = "a folder input" if any(p.is_dir() for p in inputs) else "several inputs"
        raise UsageError(f"-o {printable(output)}: {what} needs an output folder (e.g. -o {printable(output.with_suffix(''))}/)")
    if output.exists() and not output.is_dir():
        raise UsageError(f"-o {printable(output)}: exists and is not a folder (several outputs need a folder)")
    for p in inputs:
        if p.is_dir() and _same_file(p, output):
            raise UsageError(f"-o {printable(output)}: the output folder must differ from the input folder {printable(p)}")

    jobs: list[Job] = []
    seen: set[Path] = set()
    for inp in inputs:
        if inp.is_dir():
            base = output if len(inputs) == 1 else output / (inp.resolve().name or "root")
            walk_errors: list[tuple[Path, str]] = []
            for p in discover(inp, globs, exclude=[output], errors=walk_errors):
                if p in seen:
                    continue
                seen.add(p)
                rel = p.relative_to(inp)
                jobs.append(Job(p, base / rel.with_suffix(suffix)))
            for p, reason in walk_errors:
                jobs.append(Job(p, base / p.relative_to(inp) if p != inp else base, _msg(p, reason)))
        else:
            if inp in seen:
                continue
            seen.add(inp)
            err = None if inp.exists() else _msg(inp, "no such file or folder")
            jobs.append(Job(inp, output / (inp.stem + suffix), err))

    def keys(j: Job) -> list[str]:
        return [str(p).casefold() for p in j.outputs]

    for j in jobs:
        j.sides = sides(j.dst)
    # outputs that two inputs would share (main or side files): keep the full input name ...
    owners: dict[str, set[int]] = {}
    for n, j in enumerate(jobs):
        for k in keys(j):
            owners.setdefault(k, set()).add(n)
    clashing = {n for group in owners.values() if len(group) > 1 for n in group}
    for n in sorted(clashing):
        j = jobs[n]
        j.dst = j.dst.with_name(j.src.name + suffix)
        j.sides = sides(j.dst)
    # ... then number what still clashes
    taken: set[str] = set()
    for j in jobs:
        n = 2
        while any(k in taken for k in keys(j)):
            j.dst = j.dst.with_name(f"{j.src.stem}-{n}{j.src.suffix}{suffix}")
            j.sides = sides(j.dst)
            n += 1
        taken.update(keys(j))
    _refuse_overwriting_inputs(jobs)
    return jobs


def plan_outputs(inputs: Sequence[Path], output: Path, suffixes: Sequence[str], globs: Sequence[str] = (),
                 outputs: Callable[[Path], Sequence[Path]] | None = None) -> list[Job]:
    """:func:`plan_jobs` for each of ``suffixes``, the outputs of each input next to each other."""
    plans = [plan_jobs(inputs, output, s, globs, outputs) for s in dict.fromkeys(suffixes)]
    seen: set[str] = set()
    jobs = []
    for group in zip(*plans):
        for j in group:
            if str(j.dst) not in seen:  # one input file and -o FILE: the same job for every suffix
                seen.add(str(j.dst))
                jobs.append(j)
    return jobs


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _refuse_overwriting_inputs(jobs: Sequence[Job]) -> None:
    """Fail the jobs whose output (or side file) is an existing input of this run.  Only outputs
    that exist are checked, and the inputs are looked up only when one does."""
    inputs: dict[tuple[int, int], Path] | None = None
    for j in jobs:
        if j.error:
            continue
        for o in j.outputs:
            oid = _file_id(o)
            if oid is None:
                continue
            if inputs is None:
                inputs = {i: x.src for x in jobs if (i := _file_id(x.src)) is not None}
            if oid in inputs:
                src = inputs[oid]
                whose = "the input" if src == j.src else f"the input {printable(src)}"
                j.error = _msg(j.src, f"output {o} would overwrite {whose}; choose another -o")
                break


def check_summary_path(summary: Path, jobs: Sequence[Job]) -> None:
    """``--summary FILE`` must not be an input or a planned output (the same guard as ``-o``)."""
    sid = _file_id(summary)
    if sid is not None and any(_file_id(j.src) == sid for j in jobs):
        raise UsageError(f"--summary {printable(summary)}: would overwrite an input; choose another file")
    target = os.path.abspath(summary).casefold()
    if any(os.path.abspath(o).casefold() == target for j in jobs for o in j.outputs):
        raise UsageError(f"--summary {printable(summary)}: is one of the outputs; choose another file")


def remove_stale_temps(jobs: Sequence[Job]) -> int:
    """Delete the hidden temp files that an interrupted run left beside planned outputs and their
    side files (see :func:`photo3d.io.atomic_output`).  Only provably stale ones: written on this
    machine by a process that is gone; the live temp files of a run still writing into the same
    folder are left alone.  Only touches the output folders."""
    names: dict[Path, set[str]] = {}
    for j in jobs:
        for o in j.outputs:
            names.setdefault(o.parent, set()).add(o.name)
    removed = 0
    for parent, wanted in names.items():
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for e in entries:
            if not (e.name.startswith(".") and e.name.endswith(".tmp")):
                continue
            if stale_temp_target(e) in wanted:
                with contextlib.suppress(OSError):
                    if e.is_file(follow_symlinks=False):
                        os.unlink(e.path)
                        removed += 1
    return removed


# --------------------------------------------------------------------------------------------
# The per-file task, as it runs in a worker


@dataclass(frozen=True)
class TaskSpec:
    """What to run on each file: a task name (see :data:`TASKS`) and its options dataclass.
    Picklable, so it can travel to worker processes and Ray actors."""

    name: str
    options: Any = None


def resolve_task(name: str) -> Callable[[Path, Path, Any], dict[str, Any] | None]:
    target = TASKS.get(name, name)
    if ":" not in target:
        raise UsageError(f"unknown task {name!r}")
    module, func = target.split(":", 1)
    return getattr(importlib.import_module(module), func)


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


def task_hook(task: TaskSpec, name: str) -> Callable | None:
    """The task module's optional hook ``name`` (see :data:`TASKS`), or None."""
    func = resolve_task(task.name)
    hook = getattr(sys.modules.get(func.__module__), name, None)
    return hook if callable(hook) else None


def task_outputs(task: TaskSpec) -> Callable[[Path], list[Path]] | None:
    """``dst -> [dst, side files...]`` for this task and its options (None: dst only)."""
    hook = task_hook(task, "outputs")
    return None if hook is None else (lambda dst: list(hook(dst, task.options)))


def warm_up(task: TaskSpec) -> None:
    """Load what the task needs once per worker (the depth model), so files don't pay for it.

    The hook is the task module's own ``warm_up(options)``, if it has one.  Failures are ignored
    here: they surface, with the file name, when the first file runs.
    """
    try:
        hook = task_hook(task, "warm_up")
        if hook is not None:
            hook(task.options)
    except Exception:
        pass


def _warning_lines(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """Library warnings (PIL, numpy, ...) raised while a file ran, one short line each."""
    lines: list[str] = []
    for w in caught:
        line = one_line(f"{w.category.__name__}: {w.message}")
        if line not in lines:
            lines.append(line)
    return lines[:5]


def execute(task: TaskSpec, src: Path, dst: Path, finish: bool = False) -> Result:
    """Run ``task`` on one file and describe the outcome; never raises for a bad file.
    ``finish``: run the task's ``finish`` hook instead (write the missing side files of ``dst``).

    A :class:`ModelError` is returned with ``info["fatal"] = True``: it is not about the file,
    every other file would fail the same way.  Library warnings are kept in ``info["warnings"]``
    (one line each), not printed as multi-line blocks.
    """
    t0 = time.perf_counter()
    caught: list[warnings.WarningMessage] = []
    try:
        func = task_hook(task, "finish") if finish else resolve_task(task.name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = dict(func(src, dst, task.options) or {})
        if caught:  # (after the task's own warnings, if any)
            info["warnings"] = list(dict.fromkeys([*info.get("warnings", ()), *_warning_lines(caught)]))
        size = dst.stat().st_size if dst.exists() else 0
        return Result(src, dst, STATUS_OK, time.perf_counter() - t0, size, info=info,
                      worker=_worker_id(), peak_rss_mb=_peak_rss_mb())
    except Photo3DError as e:
        if e.path is None:
            e.path = src
        info = {"fatal": int(e.exit_code)} if isinstance(e, (ModelError, UsageError)) else {}
        return Result(src, dst, STATUS_FAILED, time.perf_counter() - t0, error=str(e), info=info,
                      worker=_worker_id(), peak_rss_mb=_peak_rss_mb())
    except MemoryError:
        return Result(src, dst, STATUS_FAILED, time.perf_counter() - t0,
                      error=_msg(src, "out of memory (try a lower --max-megapixels)"), worker=_worker_id())
    except Exception as e:  # a bug must not stop the batch either; say what it was in one line
        if os.environ.get("PHOTO3D_DEBUG"):
            import traceback

            traceback.print_exc()
        return Result(src, dst, STATUS_FAILED, time.perf_counter() - t0,
                      error=_msg(src, f"internal error ({one_line(f'{type(e).__name__}: {e}')})"),
                      worker=_worker_id(), peak_rss_mb=_peak_rss_mb())


def _set_threads(threads: int | None) -> None:
    if not threads:
        return
    with contextlib.suppress(Exception):
        import torch

        torch.set_num_threads(threads)
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(threads)


# --------------------------------------------------------------------------------------------
# Executors: the same task, in-process, in a local process pool, or on a Ray cluster


class Executor:
    """Runs ``execute(task, src, dst)`` for jobs and yields the Results as they complete."""

    name = "local"
    workers = 1

    def run(self, task: TaskSpec, jobs: Sequence[Job]) -> Iterator[Result]:  # pragma: no cover
        raise NotImplementedError

    def stop(self) -> None:
        """Stop as fast as possible (interrupt): running files are abandoned."""

    def close(self) -> None:
        """Release workers after a normal end."""


class SequentialExecutor(Executor):
    """One file after the other in this process (``--jobs 1``): no start-up cost."""

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def run(self, task: TaskSpec, jobs: Sequence[Job]) -> Iterator[Result]:
        _set_threads(self.threads)
        if jobs:
            warm_up(task)
        for job in jobs:
            yield execute(task, job.src, job.dst)


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the parent dies (even by ``kill -9``), so no orphan keeps working."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # parent already gone
            os._exit(1)


def _sigterm_to_interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


_IN_TASK = False


def _worker_sigterm(signum, frame):  # noqa: ARG001
    """Stop a pool worker: inside a task, unwind first (atomic_output removes its temp file)."""
    if _IN_TASK:
        raise KeyboardInterrupt
    os._exit(128 + signum)


def _pool_execute(task: TaskSpec, src: Path, dst: Path) -> Result:
    global _IN_TASK
    _IN_TASK = True
    try:
        return execute(task, src, dst)
    except KeyboardInterrupt:  # stopped by the parent, or the parent died: leave now
        os._exit(128 + signal.SIGTERM)
    finally:
        _IN_TASK = False


def _init_pool_worker(task: TaskSpec, threads: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, _worker_sigterm)
    install_one_line_warnings()
    _die_with_parent()
    _set_threads(threads)
    warm_up(task)


class PoolExecutor(Executor):
    """``--jobs N``: N worker processes on this machine, each loading the model once (in the
    pool initializer) and running files one at a time with ``cpu_count // N`` threads.

    Processes are started with "spawn" (torch and fork do not mix).  At most ``2 N`` files are
    in flight, so millions of inputs cost no memory up front.  When a worker dies (out of
    memory, a crashing decoder) the pool is restarted and the files that were in flight are rerun
    one at a time: the one that kills its worker again fails, the others convert.  Workers that
    die three times in a row without finishing a file (a broken install) stop the batch.
    """

    def __init__(self, workers: int, threads: int | None = None):
        self.workers = max(1, workers)
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.workers)
        self._pool = None

    def _new_pool(self, task: TaskSpec):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker,
            initargs=(task, self.threads),
        )

    def run(self, task: TaskSpec, jobs: Sequence[Job]) -> Iterator[Result]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        pending = list(reversed(jobs))  # pop() from the end keeps the planned order
        suspects: list[Job] = []  # in flight when a worker died: rerun one at a time to find the culprit
        inflight: dict[Any, Job] = {}
        alone = False  # the one job in flight is a suspect running alone
        dead_pools = 0  # pools in a row that died without finishing a file
        self._pool = self._new_pool(task)
        try:
            while pending or suspects or inflight:
                lost: list[Job] = []
                try:
                    if suspects:
                        if not inflight:
                            job = suspects.pop()
                            alone = True
                            inflight[self._pool.submit(_pool_execute, task, job.src, job.dst)] = job
                    else:
                        alone = False
                        while pending and len(inflight) < 2 * self.workers:
                            job = pending.pop()
                            inflight[self._pool.submit(_pool_execute, task, job.src, job.dst)] = job
                except BrokenProcessPool:
                    lost.append(job)
                if inflight and not lost:
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = inflight.pop(fut)
                        try:
                            r = fut.result()
                        except BrokenProcessPool:
                            lost.append(job)
                            continue
                        dead_pools = 0
                        yield r
                if not lost:
                    continue
                lost += list(inflight.values())  # everything in flight went down with the pool
                inflight.clear()
                dead_pools += 1
                if dead_pools >= 3:
                    yield Result(lost[0].src, lost[0].dst, STATUS_FAILED, info={"fatal": int(ExitCode.failed)},
                                 error="worker processes keep dying before finishing any file (see the messages above)")
                    return
                if alone and len(lost) == 1:
                    job = lost[0]
                    yield Result(job.src, job.dst, STATUS_FAILED,
                                 error=_msg(job.src, "worker process died (out of memory or a crash)"))
                else:
                    suspects.extend(reversed(lost))
                self._restart(task)
        except BaseException:  # interrupt, fatal error (generator closed): don't wait for workers
            self.stop()
            raise
        else:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def _restart(self, task: TaskSpec) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool(task)

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.terminate()
        for p in procs:
            with contextlib.suppress(Exception):
                p.join(5)
                if p.is_alive():
                    p.kill()


class _RayWorker:
    """A Ray actor: loads the model once, then converts files sent to it as bytes.

    Files travel as bytes (input in, outputs back) so the cluster's machines need no shared
    filesystem; the driver writes the outputs atomically, so nothing is written outside OUTDIR
    and results are the same as local runs.
    """

    def __init__(self, task: TaskSpec, threads: int | None):
        self.task = task
        _set_threads(threads)
        warm_up(task)

    def run(self, src: str, data: bytes, dst: str) -> tuple[Result, dict[str, bytes]]:
        src_p, dst_p = Path(src), Path(dst)
        with tempfile.TemporaryDirectory(prefix="photo3d-ray-") as tmp:
            tmp_in = Path(tmp) / "in" / src_p.name
            tmp_out = Path(tmp) / "out" / dst_p.name
            tmp_in.parent.mkdir()
            tmp_out.parent.mkdir()
            tmp_in.write_bytes(data)
            r = execute(self.task, tmp_in, tmp_out)
            files: dict[str, bytes] = {}
            if r.status == STATUS_OK:
                for f in sorted(tmp_out.parent.iterdir()):
                    if f.is_file() and not f.name.startswith("."):
                        files[f.name] = f.read_bytes()
            r.src, r.dst = src_p, dst_p
            mapping = {str(tmp_in): str(src_p), str(tmp_out): str(dst_p), str(tmp_out.parent): str(dst_p.parent)}
            r.error = _replace_paths(r.error, mapping)
            r.info = _replace_paths(r.info, mapping)
            return r, files


def _replace_paths(obj: Any, mapping: dict[str, str]) -> Any:
    if isinstance(obj, str):
        for a, b in mapping.items():
            obj = obj.replace(a, b)
        return obj
    if isinstance(obj, dict):
        return {k: _replace_paths(v, mapping) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_replace_paths(v, mapping) for v in obj)
    return obj


class RayExecutor(Executor):
    """``--engine ray``: one actor per worker on a Ray cluster (``address`` as for
    ``ray.init``: "auto", "ray://host:10001", or None for a local instance started here).
    ``workers`` defaults to the cluster's CPU count; each actor takes ``threads`` CPUs."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int = 1,
                 init_kwargs: dict[str, Any] | None = None):
        try:
            import ray  # noqa: F401
        except ImportError as e:
            raise UsageError('--engine ray needs Ray: pip install "photo3d[ray]"') from e
        self.address = address
        self.threads = max(1, threads)
        self._requested = workers
        self.workers = workers or 0
        self._init_kwargs = init_kwargs or {}
        self._started = False
        self._actors: list[Any] = []

    def _check_reachable(self) -> None:
        """Fail fast on a wrong host:port (ray.init would retry for minutes)."""
        import socket

        addr = self.address or ""
        hostport = addr.split("://", 1)[-1]
        if addr == "auto" or ":" not in hostport:
            return
        host, _, port = hostport.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
        except (OSError, ValueError) as e:
            raise UsageError(f"--address {addr}: no Ray cluster answers there ({e})") from e

    def _connect(self):
        import ray

        if not ray.is_initialized():
            self._check_reachable()
            kwargs = dict(self._init_kwargs)
            kwargs.setdefault("include_dashboard", False)
            kwargs.setdefault("log_to_driver", False)
            if self.address:  # a cluster: its machines must have photo3d installed
                kwargs.pop("num_cpus", None)
            else:  # a local instance: its workers import photo3d the same way as this process
                kwargs.setdefault("runtime_env", {"env_vars": {"PYTHONPATH": os.pathsep.join(
                    p for p in sys.path if p and os.path.isdir(p))}})
            try:
                ray.init(address=self.address, **kwargs)
            except Exception as e:
                raise UsageError(f"--engine ray: cannot connect to {self.address or 'a local Ray'} ({e})") from e
            self._started = True
        if not self._requested:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.workers = max(1, cpus // self.threads)
        return ray

    def run(self, task: TaskSpec, jobs: Sequence[Job]) -> Iterator[Result]:
        if not jobs:
            return
        ray = self._connect()
        actor_cls = ray.remote(num_cpus=self.threads, max_restarts=1)(_RayWorker)
        n = min(self.workers, len(jobs))
        self._actors = [actor_cls.remote(task, self.threads) for _ in range(n)]
        idle = list(self._actors)
        pending = list(reversed(jobs))
        inflight: dict[Any, tuple[Any, Job]] = {}
        while pending or inflight:
            while pending and idle:
                job = pending.pop()
                try:
                    data = job.src.read_bytes()
                except OSError as e:
                    reason = "unreadable (permission denied)" if isinstance(e, PermissionError) else (
                        "no such file" if isinstance(e, FileNotFoundError) else f"unreadable ({e.strerror or e})")
                    yield Result(job.src, job.dst, STATUS_FAILED, error=_msg(job.src, reason))
                    continue
                actor = idle.pop()
                inflight[actor.run.remote(str(job.src), data, str(job.dst))] = (actor, job)
            if not inflight:
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                actor, job = inflight.pop(ref)
                idle.append(actor)
                try:
                    r, files = ray.get(ref)
                except Exception as e:  # the actor died or the cluster lost the node
                    yield Result(job.src, job.dst, STATUS_FAILED, error=_msg(job.src, f"Ray worker failed ({summarize(e, 200)})"))
                    continue
                if r.status == STATUS_OK:
                    try:
                        main = files.pop(job.dst.name, None)
                        for name, data in files.items():  # side files first, the main output last
                            write_bytes_atomic(job.dst.parent / name, data)
                        if main is not None:
                            write_bytes_atomic(job.dst, main)
                    except Photo3DError as e:
                        r.status, r.error = STATUS_FAILED, str(e)
                yield r

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            import ray

            for a in self._actors:
                ray.kill(a)
            self._actors = []
            if self._started:
                ray.shutdown()
                self._started = False


def make_executor(engine: str = "local", jobs: int = 1, address: str | None = None) -> Executor:
    """``jobs``: worker count; 0 = one per CPU (local) or per cluster CPU (ray)."""
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if jobs < 0:
        raise UsageError(f"--jobs must be 0 (all CPUs) or more, not {jobs}")
    if engine == "ray":
        return RayExecutor(address, jobs or None)
    if address:
        raise UsageError("--address needs --engine ray")
    jobs = jobs or (os.cpu_count() or 1)
    return SequentialExecutor() if jobs == 1 else PoolExecutor(jobs)


# --------------------------------------------------------------------------------------------
# The batch


@dataclass
class BatchReport:
    results: list[Result]
    engine: str = "local"
    workers: int = 1
    seconds: float = 0.0
    interrupted: bool = False
    fatal: str | None = None  # the error that stopped the batch (a broken model, a bad option)
    fatal_code: ExitCode = ExitCode.failed

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == STATUS_FAILED]

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.interrupted
        if self.fatal:
            return self.fatal_code
        return ExitCode.failed if self.failed else ExitCode.ok

    def summary(self, command: str | None = None) -> dict[str, Any]:
        from . import __version__

        workers: dict[str, float] = {}
        for r in self.results:
            if r.worker and r.peak_rss_mb is not None:
                workers[r.worker] = max(workers.get(r.worker, 0.0), r.peak_rss_mb)
        return {
            "photo3d": __version__,
            "command": command,
            "engine": self.engine,
            "workers": self.workers,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "fatal": self.fatal,
            "counts": {s: self.count(s) for s in (STATUS_OK, STATUS_SKIPPED, STATUS_FAILED, STATUS_NOT_RUN)},
            "peak_rss_mb_per_worker": {k: round(v, 1) for k, v in sorted(workers.items())},
            "results": [r.record() for r in self.results],
        }

    def write_summary(self, path: Path, command: str | None = None) -> None:
        text = json.dumps(self.summary(command), indent=2, ensure_ascii=False) + "\n"
        write_bytes_atomic(path, text.encode("utf-8", "backslashreplace"))


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    with contextlib.suppress(Exception):  # numpy scalars
        return obj.item()
    return str(obj)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def say(console: Console, text: str, kind: str = "error") -> None:
    """Print one message line: ``error: ...`` / ``warning: ...`` (control characters escaped)."""
    colour = {"error": "red", "warning": "yellow"}.get(kind)
    head = f"[{colour}]{kind}:[/{colour}] " if colour else ""
    console.print(head + escape(printable(text)), markup=True, highlight=False, soft_wrap=True)


def run_batch(
    jobs: Sequence[Job],
    task: TaskSpec,
    executor: Executor | None = None,
    console: Console | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_result: Callable[[Result], None] | None = None,
) -> BatchReport:
    """Run ``task`` over ``jobs``: skip existing outputs (unless ``overwrite``), print each
    failure as it happens, stop early only for a fatal (model) error or an interrupt.
    An existing output whose side files are missing (``--html`` added on a re-run) gets just
    those written, by the task's ``finish`` hook, here.
    Results come back in the planned order whatever order the workers finished in;
    ``on_result`` sees each file's Result as soon as it is done (e.g. to print a line).
    On a terminal a progress bar (or, for one file, a spinner) shows; in a pipe nothing does."""
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    executor = executor or SequentialExecutor()
    t_start = time.perf_counter()
    results: dict[int, Result] = {}
    todo: list[Job] = []
    finish: list[int] = []
    index: dict[tuple[str, str], int] = {}
    for i, job in enumerate(jobs):
        if job.error:
            results[i] = Result(job.src, job.dst, STATUS_FAILED, error=job.error)
            say(console, job.error)
        elif not overwrite and job.dst.exists():
            if any(not p.exists() for p in job.sides):
                finish.append(i)
                continue
            size = job.dst.stat().st_size if job.dst.is_file() else 0
            results[i] = Result(job.src, job.dst, STATUS_SKIPPED, bytes=size)
        else:
            todo.append(job)
            index[(str(job.src), str(job.dst))] = i
    remove_stale_temps(jobs)
    skipped = sum(1 for r in results.values() if r.status == STATUS_SKIPPED)
    interrupted = False
    fatal: str | None = None
    fatal_code = ExitCode.failed
    counts = {STATUS_OK: 0, STATUS_FAILED: sum(1 for r in results.values() if r.status == STATUS_FAILED)}

    show = progress and console.is_terminal and len(todo) + len(finish) > 0
    if len(todo) + len(finish) > 1:
        columns = [
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]} ok[/] [yellow]{task.fields[skipped]} skipped[/] "
                       "[red]{task.fields[failed]} failed[/]"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        description = task.name
    else:  # one file: a spinner with its name and the time so far, gone when it is done
        columns = [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
        one = jobs[finish[0]] if finish else (todo[0] if todo else None)
        description = escape(printable(f"{task.name} {one.src.name}")) if one else task.name

    def done(r: Result, bar_ui: Progress, bar) -> None:
        if r.status == STATUS_FAILED:
            say(bar_ui.console, r.error or _msg(r.src, "failed"))
        for w in r.info.get("warnings", ()):
            say(bar_ui.console, _msg(r.src, w), "warning")
        counts[r.status] = counts.get(r.status, 0) + 1
        bar_ui.update(bar, advance=1, ok=counts[STATUS_OK], failed=counts[STATUS_FAILED])
        if on_result is not None:
            on_result(r)

    with Progress(*columns, console=console, transient=len(todo) + len(finish) <= 1, disable=not show) as bar_ui, \
            _sigterm_as_interrupt():
        bar = bar_ui.add_task(description, total=len(todo) + len(finish), ok=0, skipped=skipped,
                              failed=counts[STATUS_FAILED])
        stream = executor.run(task, todo)
        try:
            for i in finish:  # quick (from the existing output), so here in the driver
                job = jobs[i]
                results[i] = r = execute(task, job.src, job.dst, finish=True)
                done(r, bar_ui, bar)
            for r in stream:
                i = index[(str(r.src), str(r.dst))]
                results[i] = r
                if r.status == STATUS_FAILED and r.info.get("fatal"):
                    # not this file's fault: stop, the file was not really tried
                    fatal, fatal_code = r.error, ExitCode(r.info["fatal"])
                    del results[i]
                    break
                done(r, bar_ui, bar)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if interrupted or fatal:
                executor.stop()
                with contextlib.suppress(BaseException):
                    stream.close()
            else:
                stream.close()
                executor.close()
    for i, job in enumerate(jobs):
        if i not in results:
            results[i] = Result(job.src, job.dst, STATUS_NOT_RUN)
    return BatchReport(
        results=[results[i] for i in range(len(jobs))],
        engine=executor.name,
        workers=executor.workers,
        seconds=time.perf_counter() - t_start,
        interrupted=interrupted,
        fatal=fatal,
        fatal_code=fatal_code,
    )


def print_report(report: BatchReport, console: Console) -> None:
    """Close a batch: the fatal error, the failed files again, and the counts."""
    if report.fatal:
        say(console, report.fatal)
    failed = report.failed
    n = len(report.results)
    if n > 1 or report.interrupted:
        if failed:
            console.print(f"[red]{len(failed)} of {n} input(s) failed:[/red]", markup=True, highlight=False, soft_wrap=True)
            for r in failed:
                say(console, f"  {r.error}", kind="")
        completed = sum(1 for r in report.results if r.status == STATUS_OK and "finished" in r.info)
        parts = [f"{report.count(STATUS_OK) - completed} converted", f"{report.count(STATUS_SKIPPED)} skipped (output exists)",
                 f"{len(failed)} failed"]
        if completed:
            parts.insert(1, f"{completed} completed (missing outputs added)")
        if report.count(STATUS_NOT_RUN):
            parts.append(f"{report.count(STATUS_NOT_RUN)} not run")
        console.print(", ".join(parts) + f" in {report.seconds:.1f} s", highlight=False, soft_wrap=True)
    elif n == 1 and report.count(STATUS_SKIPPED):
        say(console, f"{report.results[0].dst} exists, kept (--overwrite rewrites it)", kind="")
    if report.interrupted:
        console.print("interrupted: run the same command again to continue where it stopped", highlight=False, soft_wrap=True)


def batch_command(
    task: TaskSpec,
    inputs: Sequence[Path],
    output: Path,
    suffix: str | Sequence[str],
    *,
    jobs: int = 1,
    engine: str = "local",
    address: str | None = None,
    overwrite: bool | None = None,
    globs: Sequence[str] = (),
    summary: Path | None = None,
    console: Console | None = None,
    command: str | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> int:
    """The whole INPUT... command, shared by ``photo3d depth`` and ``photo3d convert``:
    plan, run, report, write the summary; returns the exit code.

    ``overwrite=None`` (the default) rewrites the output of a single explicit file (you asked for
    that file), and skips existing outputs for folders and several inputs (resume).
    Several ``suffix`` values: one job per input and suffix (each output resumes on its own)."""
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    plan = plan_outputs(inputs, output, [suffix] if isinstance(suffix, str) else suffix, globs, task_outputs(task))
    if summary is not None:
        check_summary_path(Path(summary), plan)
    if overwrite is None:
        overwrite = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    executor = make_executor(engine, jobs, address)
    if not plan:  # nothing to do is a failure: a wrong folder or --glob, not a success
        say(console, f"no images found in {', '.join(map(str, inputs))}"
            + (f" matching {' or '.join(globs)}" if globs else ""))
        report = BatchReport([], fatal="no images found")
    else:
        report = run_batch(plan, task, executor, console=console, overwrite=overwrite, on_result=on_result)
        print_report(report, console)
    if summary is not None:
        try:
            report.write_summary(summary, command)
        except Photo3DError as e:
            say(console, str(e))
            return int(ExitCode.failed)
    return int(report.exit_code)
