"""Batch throughput: photos per minute on a folder of ~3 MP photos with ``--jobs 1`` and
``--jobs 2``, and the peak memory of each worker.

    python benchmarks/batch_throughput.py                     # convert, 50 photos, jobs 1 and 2
    python benchmarks/batch_throughput.py --task depth --photos 20 --jobs 1 2

The photos are made from ``../shared/data/photos`` (scene sets, resized to ~3 MP, saved as JPEG
into a temporary folder that is deleted afterwards; nothing is written into the repository).
Each configuration runs the real CLI in a fresh process (``photo3d TASK DIR -o OUT --jobs N
--summary S``), so the figures include start-up and model loading, as a user sees them.

What is compared: ``--jobs 1`` runs in-process with torch using every core for each photo
(intra-op threads); ``--jobs N`` runs N worker processes with ``cores // N`` threads each, one
model per worker.  Peak memory per worker is each worker's own ``ru_maxrss`` (reported in the
summary); "tree" is the largest process of the run as seen by ``wait4``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PHOTO3D_SHARED", REPO.parent / "shared"))
SCENE_SETS = ("osie", "urban100", "sun_hays80", "bsds500", "kodak24")


def make_photos(folder: Path, n: int, megapixels: float, seed: int = 0) -> list[Path]:
    import cv2

    src = [p for s in SCENE_SETS for p in sorted((SHARED / "data" / "photos" / s).glob("*.jpg"))]
    if not src:
        sys.exit(f"no photos under {SHARED / 'data' / 'photos'} (set PHOTO3D_SHARED)")
    random.Random(seed).shuffle(src)
    out = []
    for i, p in enumerate(src[:n]):
        im = cv2.imread(str(p), cv2.IMREAD_COLOR)
        h, w = im.shape[:2]
        s = (megapixels * 1e6 / (w * h)) ** 0.5
        im = cv2.resize(im, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
        dst = folder / f"roll {i // 10}" / f"photo {i:03d}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), im, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(dst)
    return out


def run(task: str, photos: Path, out: Path, jobs: int, model: str | None, extra: list[str]) -> dict:
    summary = out.parent / f"{out.name}.json"
    cmd = [sys.executable, "-c", "import photo3d; photo3d.main()", task, str(photos),
           "-o", str(out), "--jobs", str(jobs), "--summary", str(summary), *extra]
    if model:
        cmd += ["--model", model]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd)} exited {code}:\n{stderr[-3000:]}")
    s = json.loads(summary.read_text())
    per_file = [r["seconds"] for r in s["results"] if r["status"] == "ok"]
    return {
        "jobs": jobs,
        "photos": len(per_file),
        "wall_s": wall,
        "photos_per_min": 60.0 * len(per_file) / wall,
        "mean_s_per_photo_in_worker": sum(per_file) / max(1, len(per_file)),
        "peak_rss_mb_per_worker": s["peak_rss_mb_per_worker"],
        "peak_rss_mb_tree": usage.ru_maxrss / 1024.0,
    }


THREADS_ALT = r"""
import sys, time, torch, cv2
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from photo3d.batch import plan_jobs, warm_up
task_name, src, out, n, model = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5] or None
if task_name == "convert":
    from photo3d.pipeline import ConvertOptions as O, convert_task as make_task
else:
    from photo3d.depth import DepthOptions as O, depth_task as make_task
task = make_task(O(model=Path(model) if model else None))
torch.set_num_threads(1); cv2.setNumThreads(1)
warm_up(task)  # one model, shared by the threads
jobs = plan_jobs([src], out, ".glb" if task_name == "convert" else ".png")
with ThreadPoolExecutor(n) as pool:
    list(pool.map(lambda j: task.run(j.src, j.dst, task.options), jobs))
"""


def run_threads_alternative(task: str, photos: Path, out: Path, threads: int, model: str | None) -> dict:
    """The design not taken: one process, one shared model, N threads (torch releases the GIL)."""
    cmd = [sys.executable, "-c", THREADS_ALT, task, str(photos), str(out), str(threads), model or ""]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"threads alternative failed:\n{err[-3000:]}")
    n = sum(1 for _ in out.rglob("*.glb" if task == "convert" else "*.png"))
    return {"threads": threads, "photos": n, "wall_s": wall, "photos_per_min": 60.0 * n / wall,
            "peak_rss_mb": usage.ru_maxrss / 1024.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="convert", choices=["convert", "depth"])
    ap.add_argument("--photos", type=int, default=50)
    ap.add_argument("--megapixels", type=float, default=3.0)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default=None,
                    help="depth model (default: the bundled one)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--threads-alternative", type=int, default=0, metavar="N",
                    help="also time one process sharing one model between N threads (the design not taken)")
    ap.add_argument("extra", nargs="*", help="more options for the command (after --)")
    args = ap.parse_args()
    model = args.model  # None: the bundled model
    tmp = Path(tempfile.mkdtemp(prefix="photo3d-bench-"))
    try:
        photos = tmp / "photos"
        t = time.perf_counter()
        made = make_photos(photos, args.photos, args.megapixels)
        print(f"made {len(made)} photos of ~{args.megapixels:g} MP in {time.perf_counter() - t:.1f} s "
              f"(task {args.task}, model {model or 'bundled'}, {os.cpu_count()} CPUs)", flush=True)
        rows = []
        for jobs in args.jobs:
            r = run(args.task, photos, tmp / f"out-jobs{jobs}", jobs, model, args.extra)
            rows.append(r)
            workers = ", ".join(f"{v:.0f}" for v in r["peak_rss_mb_per_worker"].values())
            print(f"--jobs {jobs}: {r['photos']} photos in {r['wall_s']:.1f} s = {r['photos_per_min']:.1f} photos/min; "
                  f"{r['mean_s_per_photo_in_worker']:.2f} s/photo in a worker; peak RSS per worker [{workers}] MB; "
                  f"largest process {r['peak_rss_mb_tree']:.0f} MB", flush=True)
        base = rows[0]
        for r in rows[1:]:
            print(f"--jobs {r['jobs']} vs --jobs {base['jobs']}: {r['photos_per_min'] / base['photos_per_min']:.2f}x throughput")
        alt = None
        if args.threads_alternative:
            alt = run_threads_alternative(args.task, photos, tmp / "out-threads", args.threads_alternative, model)
            print(f"alternative, 1 process x {alt['threads']} threads sharing one model: {alt['photos']} photos in "
                  f"{alt['wall_s']:.1f} s = {alt['photos_per_min']:.1f} photos/min "
                  f"({alt['photos_per_min'] / base['photos_per_min']:.2f}x --jobs {base['jobs']}); "
                  f"peak RSS {alt['peak_rss_mb']:.0f} MB", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"task": args.task, "model": model, "cpus": os.cpu_count(), "rows": rows,
                                             "threads_alternative": alt}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
