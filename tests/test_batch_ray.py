"""``--engine ray``: the same per-file task on a Ray cluster gives the same outputs and summary as
the local engines.  A small local Ray instance (2 CPUs) is started by the test; the CLI joins it
with ``--address``.  Skipped when Ray is not installed (``pip install "photo3d[ray]"``)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from photo3d.batch import RayExecutor, SequentialExecutor, Status, plan_jobs, run_batch  # noqa: E402

from helpers.batch_tasks import THUMB, THUMB_SAID  # noqa: E402
from helpers.cli import cli_command  # noqa: E402
from helpers.paths import REPO, TESTS  # noqa: E402
from helpers.photos import BAD, GOOD, make_album  # noqa: E402

pytestmark = pytest.mark.slow  # end to end: a Ray cluster


@pytest.fixture(scope="module")
def ray_cluster():
    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join([str(REPO), str(TESTS)])
    ctx = ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=80 * 1024**2,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


def _ray_lines(text: str) -> list[str]:
    """Lines of Ray's own logging ("2026-... INFO worker.py:2038 -- Started a local Ray instance.")."""
    return [ln for ln in text.splitlines() if re.search(r"\b(DEBUG|INFO|WARNING|ERROR)\b.*\.py:\d+ -- |\bRay\b", ln)]


def test_a_ray_batch_shows_only_our_lines(tmp_path: Path) -> None:
    """``--engine ray`` starting its own local Ray: the terminal gets our result lines and closing
    line, none of Ray's ("Started a local Ray instance", its token notice, usage stats)."""
    if ray.is_initialized():
        ray.shutdown()
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(2)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(src / f"p{i}.jpg")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    for k in ("RAY_ADDRESS", "RAY_USAGE_STATS_ENABLED"):
        env.pop(k, None)
    p = subprocess.run(cli_command("depth", str(src), "-o", str(tmp_path / "out"), "--engine", "ray", "--jobs", "1"),
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png"]
    assert p.stdout == "" and _ray_lines(p.stderr) == [], p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 3, p.stderr  # one per photo, and the closing line
    assert all(ln.startswith(f"{src / f'p{i}.jpg'} -> ") for i, ln in enumerate(lines[:2])), p.stderr
    assert re.fullmatch(r"2 depth map\(s\) written, 0 skipped \(output exists\), 0 failed in [0-9.]+ s", lines[2]), p.stderr


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _records(summary: dict, root_in: Path, root_out: Path) -> list[dict]:
    out = []
    for r in summary["results"]:
        r = dict(r, seconds=None)
        r["input"] = str(Path(r["input"]).relative_to(root_in))
        r["output"] = str(Path(r["output"]).relative_to(root_out))
        r["outputs"] = [str(Path(o).relative_to(root_out)) for o in r["outputs"]]
        if "not_made" in r:
            r["not_made"] = [str(Path(o).relative_to(root_out)) for o in r["not_made"]]
        if r["error"]:
            r["error"] = r["error"].replace(str(root_in), "IN")
        out.append(r)
    return out


def test_ray_engine_matches_local(ray_cluster, tmp_path: Path) -> None:
    album = make_album(tmp_path / "album")
    jobs_local = plan_jobs([album], tmp_path / "local", ".png")
    jobs_ray = plan_jobs([album], tmp_path / "ray", ".png")
    local = run_batch(jobs_local, THUMB, SequentialExecutor(), progress=False)
    remote = run_batch(jobs_ray, THUMB, RayExecutor(workers=2), progress=False)
    assert remote.engine == "ray" and remote.workers == 2
    assert remote.count(Status.ok) == len(GOOD) and remote.count(Status.failed) == len(BAD)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert _records(remote.summary(), album, tmp_path / "ray") == _records(local.summary(), album, tmp_path / "local")
    # error messages name the real input, not the worker's temporary copy
    for r in remote.failed:
        assert r.error.startswith(f"{r.src}: ")
    # two actors shared the work
    assert len(remote.summary()["peak_rss_mb_per_worker"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("command", ["depth", "convert"])
def test_cli_on_ray_cluster_matches_local(ray_cluster, tmp_path: Path, command: str) -> None:
    suffix = ".png" if command == "depth" else ".glb"
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        rgb = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
        rgb[:, : 100 + 20 * i] //= 3
        Image.fromarray(rgb).save(src / ("sub" if i % 2 else ".") / f"p {i}.jpg")
    (src / "broken.jpg").write_text("nope")
    runs = {}
    for name, extra in (("local", ["--jobs", "2"]), ("ray", ["--engine", "ray", "--address", ray_cluster, "--jobs", "2"])):
        out = tmp_path / name
        p = subprocess.run(
            cli_command(command, str(src), "-o", str(out), "--summary", str(tmp_path / f"{name}.json"),
                 *extra),
            capture_output=True, text=True, timeout=600,
        )
        assert p.returncode == 1, p.stderr
        assert f"{src / 'broken.jpg'}: not an image" in p.stderr
        assert _ray_lines(p.stderr + p.stdout) == [], p.stderr  # (joining a cluster: no "Connecting to ...")
        runs[name] = (out, json.loads((tmp_path / f"{name}.json").read_text()))
    (lo, ls), (ro, rs) = runs["local"], runs["ray"]
    assert rs["engine"] == "ray" and ls["engine"] == "local"
    names = [f"p 0{suffix}", f"p 2{suffix}", f"sub/p 1{suffix}", f"sub/p 3{suffix}"]
    assert sorted(_files(lo)) == sorted(_files(ro)) == names
    assert _files(lo) == _files(ro)  # byte for byte

    def norm(s, root):
        recs = _records(s, src, root)
        for r in recs:
            r.pop("report", None)  # per-stage timings differ
        return recs

    assert norm(rs, ro) == norm(ls, lo)


@pytest.mark.slow
def test_ray_renders_the_other_formats_from_the_batchs_glb(ray_cluster, tmp_path: Path) -> None:
    """``--format glb --format gif`` on Ray: each GIF is rendered from the GLB the batch just wrote
    for the same photo (as on the local pool), not from a second conversion of the photo."""
    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        rgb[:, : 60 + 30 * i] //= 3
        Image.fromarray(rgb).save(src / f"p{i}.jpg")

    def run(out: str, *formats: str) -> list[dict]:  # the summary's records of a Ray run writing these formats
        p = subprocess.run(
            cli_command("convert", str(src), "-o", str(tmp_path / out), *(a for f in formats for a in ("--format", f)),
                        "--engine", "ray", "--address", ray_cluster, "--jobs", "2", "--summary", str(tmp_path / f"{out}.json")),
            capture_output=True, text=True, timeout=600,
        )
        assert p.returncode == 0, p.stderr
        return json.loads((tmp_path / f"{out}.json").read_text())["results"]

    records = run("out", "glb", "gif")
    gifs = [r for r in records if r["output"].endswith(".gif")]
    assert len(gifs) == 2 and all(r["status"] == "ok" for r in records)
    for r in gifs:
        assert r["report"]["from_glb"] == str(Path(r["output"]).with_suffix(".glb"))
        assert Path(r["output"]).stat().st_size > 0
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["p0.gif", "p0.glb", "p1.gif", "p1.glb"]
    # --format html --format gif: the page holds the GLB; the GIF is rendered from it (it converted again)
    records = run("pages", "gif", "html")
    assert [r["report"].get("from_glb") for r in records if r["output"].endswith(".gif")] == \
        [str(tmp_path / "pages" / f"p{i}.html") for i in range(2)], records
    assert sorted(f.name for f in (tmp_path / "pages").iterdir()) == ["p0.gif", "p0.html", "p1.gif", "p1.html"]


@pytest.mark.slow
def test_ray_keeps_an_existing_side_page(ray_cluster, tmp_path: Path) -> None:
    """A folder run without --overwrite keeps an existing NAME.html on Ray too (the worker has no
    copy of it: the driver does not write the page it sent back, nor name it); a page photo3d did
    not write fails its photo, untouched, as locally (helper-98)."""
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(src / "p.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p.html").write_text("my page")
    p = subprocess.run(
        cli_command("convert", str(src), "-o", str(out), "--html", "--engine", "ray", "--address", ray_cluster,
                    "--summary", str(tmp_path / "s.json")),
        capture_output=True, text=True, timeout=600,
    )
    assert p.returncode == 1 and f"the existing {out / 'p.html'} is not a viewer page photo3d wrote" in p.stderr, p.stderr
    assert (out / "p.html").read_text() == "my page" and not (out / "p.glb").exists()
    assert json.loads((tmp_path / "s.json").read_text())["results"][0]["status"] == "failed"
    # an empty page is no page (what a crash left): written, as locally
    (out / "p.html").write_bytes(b"")
    p = subprocess.run(cli_command("convert", str(src), "-o", str(out), "--html", "--engine", "ray", "--address", ray_cluster),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert (out / "p.html").read_text().startswith("<!doctype html>") and (out / "p.glb").is_file()
    # the GLB rebuilt with another --parallax: the page kept says so, as locally
    (out / "p.glb").unlink()
    page = (out / "p.html").read_bytes()
    p = subprocess.run(cli_command("convert", str(src), "-o", str(out), "--html", "--parallax", "0.08", "--engine", "ray",
                                   "--address", ray_cluster), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and (out / "p.html").read_bytes() == page, p.stderr
    assert f"{out / 'p.html'} kept: it shows the 3D photo built with --parallax 0.04 (this one: 0.08)" in p.stderr, p.stderr
    # rebuilt without --html: the page beside it is stale, said as locally (the worker's folder held no page)
    p = subprocess.run(cli_command("convert", str(src), "-o", str(out), "--overwrite", "--parallax", "0.12", "--engine", "ray",
                                   "--address", ray_cluster), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert f"{out / 'p.html'} beside it still shows the 3D photo built with --parallax 0.04 (this one: 0.12)" in p.stderr, p.stderr


def test_ray_stops_at_a_full_disk_as_a_local_run_does(ray_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver writes what the workers send back: a full disk there failed each remaining photo
    in turn (a local run stops at the first); now it stops the batch with the same line."""
    import photo3d.batch.ray_executor as rx
    from photo3d.io import atomic_output

    def write(path, data):  # the system's own ENOSPC (/dev/full) for the photo named *full*
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
            if "full" in Path(path).name:
                with open("/dev/full", "wb") as disk:
                    disk.write(b"x")
                    disk.flush()

    monkeypatch.setattr(rx, "write_bytes_atomic", write)
    src = tmp_path / "in"
    src.mkdir()
    for n in ["a0.jpg", "b full.jpg", "c0.jpg", "c1.jpg", "c2.jpg", "c3.jpg"]:
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(src / n)
    out = tmp_path / "out"
    rep = run_batch(plan_jobs([src], out, ".png"), THUMB, RayExecutor(workers=1), progress=False)
    assert rep.fatal == (f"{out / 'b full.png'}: cannot write (No space left on device); stopped: free some space, "
                         "then run the same command again to continue")
    assert rep.exit_code == 1 and rep.failed == [] and rep.count(Status.not_run) >= 4
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_more_jobs_than_the_clusters_cpus_are_lowered_not_left_waiting(ray_cluster, tmp_path: Path) -> None:
    """``--jobs 3`` on a 2-CPU cluster: the third actor (1 CPU each) was never placed, and the files
    sent to it waited for good (helper-67).  Lowered to 2 with a warning, as a local run is."""
    album = make_album(tmp_path / "album")
    said: list[str] = []
    remote = run_batch(plan_jobs([album], tmp_path / "ray", ".png"), THUMB, RayExecutor(workers=3, warn=said.append),
                       progress=False)
    assert remote.workers == 2 and remote.count(Status.ok) == len(GOOD) and remote.count(Status.failed) == len(BAD)
    assert said == ["--jobs 3 lowered to 2: the Ray cluster has 2 CPUs for photo3d's workers"], said


def test_a_ray_workers_errors_name_the_users_file_also_when_escaped(tmp_path: Path) -> None:
    """The actor works on a copy in a temp folder and names the user's paths in its messages again;
    a name with a tab or a byte that is not UTF-8 is escaped in a message ("tab\\tx.jpg"), so the
    raw path was not found in it and "/tmp/photo3d-ray-.../in/tab\\tx.jpg" reached the user (helper-67).
    (The actor's class, run here in this process.)"""
    from photo3d.batch.ray_executor import _RayWorker
    from photo3d.errors import printable

    worker = _RayWorker(THUMB, 1)
    for name in ("tab\tx.jpg", "lat\udce9.jpg", "plain.jpg"):
        src, dst = tmp_path / name, tmp_path / "out" / (name[:-4] + ".png")
        r, files = worker.run(str(src), b"\xff\xd8\xff\xe0 not a whole jpeg", str(dst))
        assert r.status == Status.failed and files == {}, r
        assert r.error.startswith(f"{printable(src)}: ") and "photo3d-ray-" not in r.error, r.error
    # a report's paths stay real paths, its messages name them escaped (an output folder with a tab
    # in its name went into the summary's "outputs" as "out\\tdir/ok.png": code review, session 23)
    worker = _RayWorker(THUMB_SAID, 1)
    for folder in ("out\tdir", "plain"):
        src, dst = tmp_path / "ok.png", tmp_path / folder / "ok.png"
        buf = io.BytesIO()
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(buf, "PNG")
        r, files = worker.run(str(src), buf.getvalue(), str(dst))
        assert r.status == Status.ok and list(files) == ["ok.png"], r
        assert r.report["outputs"] == [str(dst)] and r.report["warnings"] == [f"{printable(dst)}: written"], r.report


def test_an_address_where_a_web_server_answers_fails_at_once(tmp_path: Path) -> None:
    """``--address`` at a port where something else listens (Ray's dashboard, 8265, is an easy
    mistake): ray.init retried for minutes, printing Ray's raw log lines, before any word of ours.
    Now one line at once: a Ray cluster answers the gRPC greeting, a web server does not."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        src = tmp_path / "in"
        src.mkdir()
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(src / "p.jpg")
        address = f"127.0.0.1:{server.server_address[1]}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
        summary = tmp_path / "s.json"
        r = subprocess.run(cli_command("convert", str(src), "-o", str(tmp_path / "out"), "--engine", "ray",
                                       "--address", address, "--summary", str(summary)),
                           capture_output=True, text=True, env=env, timeout=120)
    finally:
        server.shutdown()
    data = json.loads(summary.read_text())  # the run's own outcome, not "finished": null
    assert data["fatal"] == r.stderr.strip().removeprefix("error: ") and data["counts"]["not run"] == 1, data
    assert r.returncode == 2 and r.stderr.startswith(f"error: --address {address}: "), r.stderr
    assert "a web server answers there" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists(), r.stderr


def test_the_driver_reads_no_input_whole_before_its_header_is_checked(tmp_path: Path) -> None:
    """The driver read each input whole to send it to a worker, before any check: a 2 GB file of
    zeros named .jpg (sparse: kilobytes on disk) took 4.4 GB of memory and a minute to fail as "not
    an image", which a local run says in under a second (helper-54).  Now its header is read first,
    and a photo padded far beyond what its pixels take is refused by name, not read."""
    import tracemalloc

    from helpers.memory import pad_to
    from photo3d.batch.ray_executor import _input_bytes
    from photo3d.errors import InputFileError

    junk = tmp_path / "junk.jpg"
    pad_to(junk, 1 << 30)
    padded = tmp_path / "padded.jpg"
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(padded)
    size = padded.stat().st_size
    pad_to(padded, 256 << 20)
    ok = tmp_path / "ok.jpg"
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(ok)
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError) as e:
            _input_bytes(junk)
        assert str(e.value) == f"{junk}: not an image (unknown or unsupported format; photo3d reads JPEG, PNG, TIFF, WebP, BMP, GIF, HEIC and AVIF)"
        with pytest.raises(InputFileError) as e:
            _input_bytes(padded)
        assert str(e.value) == f"{padded}: too large for a 160x120 image (268,435,456 bytes): not sent to the cluster"
        assert len(_input_bytes(ok)) == size
        pages = tmp_path / "pages.tif"  # 30 uncompressed pages: far larger than its first page, and a photo
        frames = [Image.fromarray(np.full((120, 160, 3), 8 * i, np.uint8)) for i in range(30)]
        frames[0].save(pages, save_all=True, append_images=frames[1:])
        assert len(_input_bytes(pages)) == pages.stat().st_size
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB"


def test_a_dead_ray_worker_is_replaced_and_its_photo_run_again(ray_cluster, tmp_path: Path) -> None:
    """A Ray worker killed (kill -9, out of memory): its photo failed "Ray worker failed" without a rerun,
    a warning or a count, and once its one restart was used every photo sent to it failed at once
    (helper-90: 24 of 40). The dead worker is replaced, its photo run once more (failed if it dies
    again), and the deaths are counted as a local pool counts them."""
    from photo3d.batch import Task
    from helpers.batch_tasks import ThumbOptions, batch_task_crashy

    src = tmp_path / "in"
    src.mkdir()
    names = [f"p{i}.jpg" for i in range(6)] + ["crash.jpg"]
    for n in names:
        Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(src / n)
    jobs = plan_jobs([src], tmp_path / "out", ".png")
    buf = io.StringIO()
    from rich.console import Console

    rep = run_batch(jobs, Task("batch_task_crashy", batch_task_crashy, ThumbOptions()), RayExecutor(workers=2),
                    console=Console(file=buf, width=300), progress=False)
    status = {r.src.name: (r.status, r.error) for r in rep.results}
    crash = status.pop("crash.jpg")
    assert crash[0] == Status.failed and "died twice" in crash[1], crash
    assert all(v == (Status.ok, None) for v in status.values()), status
    assert rep.fatal is None and rep.worker_deaths == 2 and rep.summary()["worker_deaths"] == 2
    assert "warning: a worker process died 2 times" in buf.getvalue(), buf.getvalue()


def test_ray_workers_sweep_the_scratch_folders_of_workers_gone(tmp_path: Path) -> None:
    """A stopped or killed batch kills its workers with a photo in hand: each left a copy of it in
    /tmp (photo3d-ray-*), never removed (helper-90: 17 after a few stops). A worker's scratch folder
    names its process; a worker starting removes those whose process is gone, on this machine."""
    from photo3d.batch.ray_executor import _sweep_scratch
    from photo3d.io import HOST_TAG

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead, live, other = (tmp_path / f"photo3d-ray-{pid}-{tag}-abc123" for pid, tag in
                         ((gone.pid, HOST_TAG), (os.getpid(), HOST_TAG), (gone.pid, "0" * 8 if HOST_TAG != "0" * 8 else "1" * 8)))
    for d in (dead, live, other):
        (d / "in").mkdir(parents=True)
        (d / "in" / "photo.jpg").write_bytes(b"a private photo")
    assert _sweep_scratch(str(tmp_path)) == 1
    assert not dead.exists() and live.exists() and other.exists()


def test_a_stop_while_ray_starts_waits_for_ray_to_be_up() -> None:
    """A stop signal inside ``ray.init`` left Ray half started (the command hung in Ray's teardown, or
    ended with exit 1 and orphaned workers), and Ray's own SIGTERM handler ended it with exit 15 or a
    stack dump (helper-90). While Ray starts a stop is only noted, Ray's handlers stay out, and ours
    are back afterwards; the batch then stops (and shuts Ray down) as it does later."""
    import signal

    from photo3d.batch.ray_executor import _stops_held

    def ours(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, ours)
    try:
        with _stops_held() as noted:
            os.kill(os.getpid(), signal.SIGTERM)  # (delivered here: no KeyboardInterrupt inside)
            signal.signal(signal.SIGTERM, lambda *a: os._exit(15))  # what Ray's start does
            os.kill(os.getpid(), signal.SIGTERM)
        assert noted == [signal.SIGTERM, signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, before)


def test_address_auto_without_a_cluster_says_what_to_do(monkeypatch) -> None:
    """``--address auto`` on a machine where no Ray runs gave Ray's own text, "Please specify the one
    to connect to by setting `--address` flag", to a user who had (helper-106).  Now what to do:
    start one, or leave --address out.  (ray.init is stood in for: a real cluster of this module's
    may be running, which auto would find.)"""
    from photo3d.errors import UsageError

    def no_cluster(*a, **k):
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to by "
                              "setting `--address` flag or `RAY_ADDRESS` environment variable.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_cluster)
    with pytest.raises(UsageError) as e:
        RayExecutor(address="auto")._connect()
    assert str(e.value) == ("--address auto: no Ray cluster runs on this machine (start one with `ray start --head`, "
                            "or leave --address out for a Ray of this run's own)")
