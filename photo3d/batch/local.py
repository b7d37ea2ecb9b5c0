"""Local executors: the same task in this process or in a pool of worker processes, and the
signal handling that lets a pool stop cleanly (Ctrl-C, ``kill``, a dead parent)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import ExitCode, ignore_library_noise, install_one_line_warnings
from .plan import Job
from .result import Result, Status, msg
from .task import Task, execute, set_threads, warm_up


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. ``taskset`` or a container's
    cpuset), not all the machine's."""
    count = getattr(os, "process_cpu_count", None)  # Python 3.13
    if count is not None:
        return count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class Executor:
    """Runs ``execute(task, src, dst)`` for jobs and yields the Results as they complete."""

    name = "local"
    workers = 1  # after run(): the workers it really used (never more than there were files)
    worker_deaths = 0  # after run(): workers that died (kill -9, out of memory) and may have left temp files

    def run(self, task: Task, jobs: Sequence[Job]) -> Iterator[Result]:  # pragma: no cover
        raise NotImplementedError

    def stop(self) -> None:
        """Stop as fast as possible (interrupt): running files are abandoned."""

    def finished(self) -> list[Result]:
        """Results of files that finished after the last one :meth:`run` yielded (the batch is
        stopping: they are not lost as "not run"); none by default."""
        return []

    def close(self) -> None:
        """Release workers after a normal end."""

    def shutdown(self) -> None:
        """What :meth:`close` and :meth:`stop` leave for after the closing line and the summary (Ray's
        local cluster); nothing by default."""


class SequentialExecutor(Executor):
    """One file after the other in this process (``--jobs 1``): no start-up cost."""

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def run(self, task: Task, jobs: Sequence[Job]) -> Iterator[Result]:
        self.workers = 1 if jobs else 0
        set_threads(self.threads)
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


#: Signals that stop a batch as Ctrl-C does (the 'interrupted' line, temp files removed, exit 130):
#: ``kill`` (SIGTERM) and a closed terminal (SIGHUP, sent to the whole process group, workers too).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def ignored(sig: int) -> bool:
    """Whether ``sig`` is ignored (``nohup`` ignores SIGHUP; a worker process inherits it)."""
    try:
        return signal.getsignal(sig) == signal.SIG_IGN
    except (ValueError, OSError):
        return False


@contextlib.contextmanager
def signals_handled(signals: Sequence[int], handler) -> Iterator[None]:
    """``signals`` go to ``handler`` meanwhile, then back to what they were (only the main thread
    may set handlers: elsewhere nothing changes).  A signal the process was started ignoring stays
    ignored: ``nohup photo3d ...`` (SIGHUP ignored) went on stopping when its terminal closed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handler) for sig in signals if not ignored(sig)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def stop_signals_ignored() -> contextlib.AbstractContextManager[None]:
    """Ctrl-C, ``kill`` and a hang-up ignored meanwhile (in the main thread): a batch that is
    already stopping ends its workers, removes their temp files, says so and writes its summary
    whatever is pressed again (a second Ctrl-C while the workers were stopped ended the command
    without a word, the summary not written)."""
    return signals_handled((signal.SIGINT, *STOP_SIGNALS), signal.SIG_IGN)


_IN_TASK = False
_STOPPED = False


def _worker_sigterm(signum, frame):  # noqa: ARG001
    """Stop a pool worker: inside a task, unwind first (atomic_output removes its temp file)."""
    global _STOPPED
    _STOPPED = True
    if _IN_TASK:
        raise KeyboardInterrupt
    os._exit(128 + signum)


def _pool_execute(task: Task, src: Path, dst: Path) -> Result:
    """One job in a pool worker; a stop signal ends the worker (the parent counts the job not run).
    The stop is kept as a flag, not only as the KeyboardInterrupt it raises: a second signal (a closed
    terminal's SIGHUP, then the parent's SIGTERM) landing while the first unwinds a lock's wait turned
    it into "RuntimeError: release unlocked lock", a failed result; the worker then took the next
    photo and wrote it after the batch had said it stopped (helper-87)."""
    global _IN_TASK
    _IN_TASK = True
    try:
        result = execute(task, src, dst)
    except KeyboardInterrupt:  # stopped by the parent, or the parent died: leave now
        os._exit(128 + signal.SIGTERM)
    finally:
        _IN_TASK = False
    if _STOPPED:
        os._exit(128 + signal.SIGTERM)
    return result


@contextlib.contextmanager
def _sigint_deferred():
    """SIGINT blocked in this thread while worker processes may be started: they inherit the
    blocked mask across exec, so a Ctrl-C during their start-up (before their initializer ignores
    it) cannot print a KeyboardInterrupt traceback from each of them; this process gets the
    Ctrl-C as soon as the block ends (the parent stops the workers itself)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


TRACKER_NOTE = "ignore:resource_tracker:UserWarning"


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (a helper process the pool needs) with SIGHUP
    blocked, a mask it keeps: it ignores SIGINT and SIGTERM, but a closed terminal (SIGHUP to the
    process group) killed it, and the pool's end then said 'resource_tracker: process died
    unexpectedly' with a KeyError traceback per semaphore.  It still ends with this process."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import resource_tracker

    # its note on the pool's semaphores after this process was killed outright (kill -9, the out-of-memory
    # killer) was a two-line Python warning; it cleans them up as it says, so the note is left out (the
    # tracker takes the interpreter's -W options)
    if TRACKER_NOTE not in sys.warnoptions:
        sys.warnoptions.append(TRACKER_NOTE)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _init_pool_worker(task: Task, threads: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    for sig in STOP_SIGNALS:  # kill, or the terminal closed (SIGHUP reaches the workers too; not under nohup)
        if not ignored(sig):
            signal.signal(sig, _worker_sigterm)
    install_one_line_warnings()
    ignore_library_noise()  # (before any task records warnings: see cli.main)
    _die_with_parent()
    set_threads(threads)
    warm_up(task)


def _first_outputs(jobs: Sequence[Job]) -> dict[Path, Job]:
    """Each input's first planned output, which its other outputs wait for (they are rendered from it)."""
    first: dict[Path, Job] = {}
    for job in jobs:
        first.setdefault(job.src, job)
    return first


def _next_ready(pending: list[Job], running: Iterable[Job], first: dict[Path, Job], window: int = 64) -> Job | None:
    """Take the next job in planned order (``pending`` is reversed) that may start now: not one
    whose input's first output is still ``running`` (that one is started first: it comes first)."""
    running = {id(j) for j in running}
    for k in range(len(pending) - 1, max(-1, len(pending) - 1 - window), -1):
        job = pending[k]
        if first[job.src] is job or id(first[job.src]) not in running:
            return pending.pop(k)
    return None


class PoolExecutor(Executor):
    """``--jobs N``: N worker processes on this machine, each loading the model once (in the
    pool initializer) and running files one at a time with ``available_cpus() // N`` threads.

    Processes are started with "spawn" (torch and fork do not mix).  At most ``2 N`` files are
    in flight, so millions of inputs cost no memory up front.  An input's first planned output is
    finished before its other outputs start (``--format glb --format mp4``: the video is rendered
    from the GLB, not converted a second time in parallel).  When a worker dies (out of
    memory, a crashing decoder) the pool is restarted and the files that were in flight are rerun
    one at a time: the one that kills its worker again fails, the others convert.  Workers that
    die three times in a row without finishing a file (a broken install) stop the batch.
    """

    def _threads_each(self) -> int:
        """Torch threads per worker: as asked, else the cores shared among the workers."""
        return self._threads or max(1, available_cpus() // self.workers)

    def __init__(self, workers: int, threads: int | None = None):
        self.max_workers = self.workers = max(1, workers)
        self._threads = threads
        self.threads = self._threads_each()
        self._pool = None
        self._inflight: dict[Any, Job] = {}  # futures submitted and not yet yielded (finished() reads it)

    def _new_pool(self, task: Task):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker,
            initargs=(task, self.threads),
        )

    def run(self, task: Task, jobs: Sequence[Job]) -> Iterator[Result]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        pending = list(reversed(jobs))  # pop() from the end keeps the planned order
        first = _first_outputs(jobs)
        suspects: list[Job] = []  # in flight when a worker died: rerun one at a time to find the culprit
        inflight = self._inflight = {}
        alone = False  # the one job in flight is a suspect running alone
        dead_pools = 0  # pools in a row that died without finishing a file
        self.workers = min(self.max_workers, len(jobs))  # never more processes than files
        if not jobs:
            return
        self.threads = self._threads_each()
        _start_resource_tracker()
        self._pool = self._new_pool(task)
        try:
            while pending or suspects or inflight:
                lost: list[Job] = []
                try:
                    with _sigint_deferred():  # submit() may start workers: they must not see Ctrl-C
                        if suspects:
                            if not inflight:
                                job = suspects.pop()
                                alone = True
                                inflight[self._pool.submit(_pool_execute, task, job.src, job.dst)] = job
                        else:
                            alone = False
                            while len(inflight) < 2 * self.workers and (job := _next_ready(pending, inflight.values(), first)):
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
                self.worker_deaths += 1
                if dead_pools >= 3:
                    yield Result(lost[0].src, lost[0].dst, Status.failed, fatal=ExitCode.failed,
                                 error="worker processes keep dying before finishing any file (see the messages above)")
                    return
                if alone and len(lost) == 1:
                    job = lost[0]
                    yield Result(job.src, job.dst, Status.failed,
                                 error=msg(job.src, "worker process died (out of memory or a crash)"))
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

    def _restart(self, task: Task) -> None:
        if self._pool is not None:
            procs = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            # Wait until the broken pool's workers are gone (the pool kills the survivors): a worker
            # killed while writing is seen dead (its pipe closed) while the kernel still tears it down,
            # and its temp file only counts as stale once its process has exited.
            for proc in procs:
                with contextlib.suppress(Exception):
                    proc.join(timeout=10)
        self._pool = self._new_pool(task)

    def finished(self) -> list[Result]:
        out = []
        for fut in list(self._inflight):
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                out.append(fut.result())
        return out

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
                if p.is_alive():  # deaf to SIGTERM (a long system call): kill, and wait until it is
                    p.kill()      # gone, so its temp file counts as stale (run_batch removes it)
                    p.join(5)
