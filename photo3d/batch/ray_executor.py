"""``--engine ray``: the same task on a Ray cluster, files travelling as bytes."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import ExitCode, InputFileError, Photo3DError, UsageError, printable, summarize
from ..io import HEIF_AVAILABLE, HEIF_SUFFIXES, confined_to, input_file, load_image, open_image, output_state, write_bytes_atomic
from .local import Executor, _first_outputs, _next_ready
from .plan import Job
from .result import Result, Status, msg
from .task import Task, disk_stop, execute, set_threads, warm_up


def _input_bytes(src: Path) -> bytes:
    """A photo's bytes for a worker, checked as a local run checks it (:func:`photo3d.io.input_file`):
    a named pipe or device is refused without reading it (the read would hang), a missing file or a
    broken link says so.  Its header is read first: a file that is no image fails with the line a
    local run gives, and one far larger than its pixels can take (64 MiB and 16 bytes a pixel: a
    photo padded with gigabytes, a sparse file of kilobytes on disk) is refused, not read whole into
    the driver's memory and the cluster's object store."""
    st = input_file(src, "an image")
    try:
        with open_image(src, header_only=True) as im:
            w, h = im.size
            frames = max(1, int(getattr(im, "n_frames", 1) or 1))  # (a TIFF's pages, an animation's frames)
    except Exception:  # not an image Pillow opens here: the local run's own line (read from its header) ...
        w = h = frames = 0
        if not (src.suffix.lower() in HEIF_SUFFIXES and not HEIF_AVAILABLE):  # (... but HEIC: the workers may read it)
            load_image(src, max_megapixels=None, max_side=1)
    if w and st.st_size > (64 << 20) + 16 * w * h * frames:
        raise InputFileError(f"too large for a {w}x{h} image ({st.st_size:,} bytes): not sent to the cluster", src)
    try:
        return src.read_bytes()
    except PermissionError:
        raise InputFileError("unreadable (permission denied)", src) from None
    except OSError as e:
        raise InputFileError(f"unreadable ({e.strerror or e})", src) from None


@contextlib.contextmanager
def _stops_held() -> Iterator[list[int]]:
    """While Ray starts, a stop signal (Ctrl-C, kill, a hang-up) is only noted, and Ray's own handlers
    stay out; the caller stops once Ray is up. A KeyboardInterrupt inside ``ray.init`` left Ray half
    started: the command hung for good in Ray's teardown, or ended with Ray's log line and exit 1 and
    orphaned workers; Ray's SIGTERM handler ended it with exit 15 or a stack dump (helper-90). Yields
    the list of signals noted."""
    from .local import STOP_SIGNALS, signals_handled

    stops = (signal.SIGINT, *STOP_SIGNALS)
    noted: list[int] = []
    real = signal.signal

    def keep_ours(sig, handler):  # Ray's own handlers stay out while it starts (nohup's ignored one too)
        return signal.getsignal(sig) if sig in stops else real(sig, handler)

    with signals_handled(stops, lambda signum, frame: noted.append(signum)):
        signal.signal = keep_ours
        try:
            yield noted
        finally:
            signal.signal = real


#: a worker's scratch folder: ``photo3d-ray-<pid>-<host tag>-<random>`` (its owner, for a later sweep)
_SCRATCH = re.compile(r"photo3d-ray-(?P<pid>\d{1,7})-(?P<host>[0-9a-f]{8})-[a-z0-9_]+")


def _sweep_scratch(base: str | None = None) -> int:
    """Remove the scratch folders of workers that are gone (a batch stopped or killed kills its workers
    with the photo in hand: each left a copy of it in /tmp, helper-90); the number removed."""
    import shutil

    from ..io import owner_gone

    base = base or tempfile.gettempdir()
    n = 0
    with contextlib.suppress(OSError), os.scandir(base) as it:
        for entry in it:
            m = _SCRATCH.fullmatch(entry.name)
            if m and entry.is_dir(follow_symlinks=False) and owner_gone(int(m["pid"]), m["host"], entry):
                shutil.rmtree(entry.path, ignore_errors=True)
                n += 1
    return n


class _RayWorker:
    """A Ray actor: loads the model once, then converts files sent to it as bytes.

    Files travel as bytes (input in, outputs back) so the cluster's machines need no shared
    filesystem; the driver writes the outputs atomically, so nothing is written outside OUTDIR
    and results are the same as local runs.
    """

    def __init__(self, task: Task, threads: int | None):
        self.task = task
        _sweep_scratch()
        set_threads(threads)
        warm_up(task)

    def run(self, src: str, data: bytes, dst: str, glb: bytes | None = None) -> tuple[Result, dict[str, bytes]]:
        """``glb``: the GLB this batch already wrote for the same photo (as NAME.glb, or inside
        NAME.html: the task's ``reuse_suffix``), for the other formats to be rendered from (as on
        the local pool) instead of converting the photo again."""
        src_p, dst_p = Path(src), Path(dst)
        from ..io import HOST_TAG

        with tempfile.TemporaryDirectory(prefix=f"photo3d-ray-{os.getpid()}-{HOST_TAG}-") as tmp:
            tmp_in = Path(tmp) / "in" / src_p.name
            tmp_out = Path(tmp) / "out" / dst_p.name
            tmp_in.parent.mkdir()
            tmp_out.parent.mkdir()
            tmp_in.write_bytes(data)
            source = getattr(self.task.options, "reuse_suffix", ".glb")
            given = tmp_out.with_suffix(source) if glb is not None and tmp_out.suffix.lower() != source else None
            if given is not None:  # (under its own name, as the driver's folder has it)
                if source == ".html":
                    from ..viewer import write_viewer

                    write_viewer(given, glb, title=src_p.stem)
                else:
                    given.write_bytes(glb)
                since = getattr(self.task.options, "reuse_glb_since", None) or 0.0
                t = max(time.time(), since)  # counts as this batch's GLB whatever this machine's clock says
                os.utime(given, (t, t))
            r = execute(self.task, tmp_in, tmp_out)
            files: dict[str, bytes] = {}
            if r.status == Status.ok:
                for f in sorted(tmp_out.parent.iterdir()):
                    if f.is_file() and not f.name.startswith(".") and f != given:
                        files[f.name] = f.read_bytes()
            r.src, r.dst = src_p, dst_p
            raw = {str(tmp_in): str(src_p), str(tmp_out): str(dst_p), str(tmp_out.parent): str(dst_p.parent)}
            # messages name paths escaped (a tab in a name is "\t"), and are mapped in that form, else
            # "/tmp/photo3d-ray-.../in/tab\tx.jpg" reached the user (helper-67); the report's paths
            # (outputs, from_glb) stay real paths (the summary's "outputs" got escaped ones)
            said = {printable(a): printable(b) for a, b in raw.items()}
            r.error = _replace_paths(r.error, said)
            r.report = {k: _replace_paths(v, raw if k in _PATH_FIELDS else said) for k, v in (r.report or {}).items()}
            return r, files


#: report fields that hold paths (the others are messages, which name paths escaped)
_PATH_FIELDS = ("outputs", "from_glb")


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


# the HTTP/2 client greeting gRPC servers answer: the preface, then an empty SETTINGS frame
# (length 0: 3 bytes, type 4, flags 0, stream 0: 4 bytes)
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HTTP2_SETTINGS = 0x04
_HTTP2_EMPTY_SETTINGS = bytes(3) + bytes([_HTTP2_SETTINGS, 0]) + bytes(4)


class RayExecutor(Executor):
    """``--engine ray``: one actor per worker on a Ray cluster (``address`` as for
    ``ray.init``: "auto", "ray://host:10001", or None for a local instance started here).
    ``workers`` defaults to the cluster's CPU count; each actor takes ``threads`` CPUs."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int = 1,
                 init_kwargs: dict[str, Any] | None = None, warn=None):
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
        self._warn = warn

    def _check_reachable(self) -> None:
        """Fail fast on a wrong host:port (ray.init would retry for minutes)."""
        import socket

        addr = self.address or ""
        hostport = addr.split("://", 1)[-1]
        if addr == "auto" or ":" not in hostport:
            return
        host, _, port = hostport.rpartition(":")
        try:
            conn = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError) as e:
            raise UsageError(f"--address {addr}: no Ray cluster answers there ({e})") from e
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):  # (a TLS cluster greets in TLS first)
            conn.close()
            return
        # something listens: a Ray cluster (its GCS, or its client server) speaks gRPC, so it answers
        # the HTTP/2 greeting with its settings; anything else (the dashboard, another web server)
        # left ray.init retrying for minutes, printing Ray's raw log lines
        with conn:
            answer = b""
            try:
                conn.settimeout(5)
                conn.sendall(_HTTP2_PREFACE + _HTTP2_EMPTY_SETTINGS)
                while len(answer) < 9:
                    chunk = conn.recv(9 - len(answer))
                    if not chunk:
                        break
                    answer += chunk
            except OSError:
                pass
        if len(answer) < 9 or answer[3] != _HTTP2_SETTINGS:  # (the server's first frame: its SETTINGS)
            what = ("a web server answers there" if answer.startswith((b"HTTP/", b"<")) else
                    "something answers there, but not as a Ray cluster does")
            raise UsageError(f"--address {addr}: {what}; give the head node's address (port 6379 unless it was "
                             "started with another --port; the dashboard's 8265 is not it)")

    def _connect(self):
        import ray

        if not ray.is_initialized():
            self._check_reachable()
            kwargs = dict(self._init_kwargs)
            # Ray's own lines ("Started a local Ray instance", its token and usage notices, the
            # workers' output) stay out of the user's terminal: our bar and our lines say it all
            kwargs.setdefault("include_dashboard", False)
            kwargs.setdefault("log_to_driver", False)
            kwargs.setdefault("logging_level", logging.ERROR)
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # (and no usage report sent home)
            if self.address:  # a cluster: its machines must have photo3d installed
                kwargs.pop("num_cpus", None)
            else:  # a local instance: its workers import photo3d the same way as this process
                kwargs.setdefault("runtime_env", {"env_vars": {"PYTHONPATH": os.pathsep.join(
                    p for p in sys.path if p and os.path.isdir(p))}})
            with _stops_held() as stopped:
                try:
                    ray.init(address=self.address, **kwargs)
                except Exception as e:
                    if stopped:  # (a closed terminal's hang-up reached Ray's own processes too: they never came up)
                        raise KeyboardInterrupt from None
                    if self.address == "auto" and "Could not find any running Ray instance" in str(e):
                        # (Ray's own text told the user to set --address, which they had)
                        raise UsageError("--address auto: no Ray cluster runs on this machine (start one with `ray start "
                                         "--head`, or leave --address out for a Ray of this run's own)") from e
                    raise UsageError(f"--engine ray: cannot connect to {self.address or 'a local Ray'} ({e})") from e
            self._started = True
            if stopped:  # (Ray is up now: the batch's stop shuts it down cleanly)
                raise KeyboardInterrupt
        most = max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads)
        if not self._requested:
            self.workers = most
        elif self._requested > most:  # an actor beyond the cluster's CPUs is never placed: its files waited forever
            if self._warn is not None:
                self._warn(f"--jobs {self._requested} lowered to {most}: the Ray cluster has {most} CPU"
                           f"{'s' if most != 1 else ''} for photo3d's workers")
            self._requested = self.workers = most
        return ray

    def run(self, task: Task, jobs: Sequence[Job]) -> Iterator[Result]:
        if not jobs:
            self.workers = 0
            return
        ray = self._connect()
        actor_cls = ray.remote(num_cpus=self.threads, max_restarts=0)(_RayWorker)  # (a dead one is replaced below)
        self.workers = n = min(self._requested or self.workers, len(jobs))  # never more actors than files
        self._actors = [actor_cls.remote(task, self.threads) for _ in range(n)]
        idle = list(self._actors)
        pending = list(reversed(jobs))
        inflight: dict[Any, tuple[Any, Job]] = {}
        first = _first_outputs(jobs)
        since = getattr(task.options, "reuse_glb_since", None)
        from ..pipeline import batch_glb

        rerun: set[Path] = set()  # outputs whose worker died: run once more
        dead_in_a_row = 0

        while pending or inflight:
            while pending and idle and (job := _next_ready(pending, (j for _, j in inflight.values()), first)):
                try:
                    data = _input_bytes(job.src)
                except Photo3DError as e:
                    yield Result(job.src, job.dst, Status.failed, error=str(e))
                    continue
                made = None
                if first[job.src] is not job and since is not None:  # this batch's 3D photo of the same photo
                    try:
                        made = batch_glb(job.src, job.dst, since, getattr(task.options, "reuse_suffix", ".glb"))
                    except Photo3DError as e:
                        yield Result(job.src, job.dst, Status.failed, error=str(e))
                        continue
                actor = idle.pop()
                inflight[actor.run.remote(str(job.src), data, str(job.dst), made[1] if made else None)] = (actor, job)
            if not inflight:
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                actor, job = inflight.pop(ref)
                try:
                    r, files = ray.get(ref)
                except Exception as e:  # the actor died (killed, out of memory) or the cluster lost the node
                    # a fresh worker in its place (the dead one failed every photo sent to it after its one
                    # restart), the photo run once more, and the death counted and said (helper-90)
                    self.worker_deaths += 1
                    dead_in_a_row += 1
                    with contextlib.suppress(Exception):
                        ray.kill(actor)
                    fresh = actor_cls.remote(task, self.threads)
                    self._actors = [a for a in self._actors if a is not actor] + [fresh]
                    idle.append(fresh)
                    if dead_in_a_row >= 3 * n:
                        yield Result(job.src, job.dst, Status.failed, fatal=ExitCode.failed,
                                     error=f"Ray workers keep dying before finishing any file ({summarize(e, 200)})")
                        return
                    if job.dst not in rerun:
                        rerun.add(job.dst)
                        pending.append(job)
                        continue
                    yield Result(job.src, job.dst, Status.failed, error=msg(job.src, f"Ray worker died twice on it ({summarize(e, 200)})"))
                    continue
                idle.append(actor)
                dead_in_a_row = 0
                if r.status == Status.ok:
                    try:
                        with confined_to(task.out):
                            main = files.pop(job.dst.name, None)
                            keep = getattr(task.options, "keep_existing", False)  # (as the task does locally)
                            for name, data in files.items():  # side files first, the main output last
                                side = job.dst.parent / name
                                if keep and output_state(side) == "done":  # an existing side page is kept, and not listed
                                    r.report["outputs"] = [o for o in r.report.get("outputs", []) if o != str(side)]
                                    from ..pipeline import kept_page_warning  # (the page a local run keeps warns alike)
                                    from ..viewer import page_glb

                                    if (glb := page_glb(data)) is not None and (w := kept_page_warning(side, glb)):
                                        r.report["warnings"] = [*r.report.get("warnings", ()), w]
                                    continue
                                write_bytes_atomic(side, data)
                            if main is not None:
                                write_bytes_atomic(job.dst, main)
                                from ..pipeline import ConvertOptions, stale_page_warning  # (the worker's folder held no page)

                                if isinstance(task.options, ConvertOptions) and (w := stale_page_warning(job.dst, main, task.options)):
                                    r.report["warnings"] = [*r.report.get("warnings", ()), w]
                    except Photo3DError as e:
                        r.status, r.error = Status.failed, str(e)
                        if (stop := disk_stop(e)) is not None:  # a full disk here: stop as a local run does
                            r.error, r.fatal = r.error + stop, ExitCode.failed
                yield r

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            import ray

            for a in self._actors:
                ray.kill(a)
            self._actors = []

    def shutdown(self) -> None:
        """Ray's own shutdown, after the closing line and the summary: it resets SIGTERM's handler to the
        system's default while it runs (a second or two) and Python still reports its own, so a ``kill``
        then ended the run at once (exit 143, no closing line, the summary of its start; helper-112).
        Now such a kill can cost only the exit code; the caller's ``signals_handled`` sets the handlers
        again as it ends (``batch_command``)."""
        if self._started:
            with contextlib.suppress(Exception):
                import ray

                ray.shutdown()
            self._started = False
