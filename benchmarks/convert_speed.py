"""End-to-end speed and size of ``photo3d convert`` on a 12 MP JPEG (target: <= 4 s, GLB <= 2 MB).

Measures the whole process (``photo3d convert IN.jpg -o OUT.glb --model M``, interpreter start
and imports included) as wall time and as CPU time (user + system, all threads: what the process
needs, even while other jobs load the machine) over several runs, the in-process stage breakdown
(``model`` = waiting for the model's background load beyond the photo's decoding), and, in the
same run, a floor baseline: a process that only imports torch, decodes the JPEG and encodes the
4096-px texture (what any converter must pay at least).

    python benchmarks/convert_speed.py [--model PATH] [--photo IN.jpg] [--runs 3]

Without --photo, a 12 MP test photo is made in a temp folder by upscaling a shared photo (with
a little sensor-like grain, so its JPEG size is realistic).  Without --model, the bundled model is used (Tiefenrausch: convert it once with
``photo3d model import ../shared/data/tiefenrausch -o tr.pt`` and pass ``--model tr.pt``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("PHOTO3D_SHARED", REPO.parent / "shared"))

FLOOR = """
import sys, io, time, atexit, gc
atexit.register(gc.freeze)  # as photo3d's CLI does: no exit-time GC over torch's objects
import torch  # the converter needs it too
from PIL import Image
im = Image.open(sys.argv[1]); im.load()
im.thumbnail((4096, 4096))
buf = io.BytesIO(); im.save(buf, format="JPEG", quality=85)
"""


def make_photo(path: Path, width: int = 4000, height: int = 3000) -> None:
    import cv2
    from PIL import Image

    src = sorted((SHARED / "data" / "photos" / "kodak24").glob("*.jpg"))
    if src:
        base = np.asarray(Image.open(src[min(3, len(src) - 1)]).convert("RGB"))
    else:  # no shared data: a synthetic scene
        base = np.zeros((300, 400, 3), np.uint8)
        base[:] = (90, 140, 200)
        base[150:] = (120, 100, 60)
        cv2.circle(base, (200, 150), 60, (200, 60, 40), -1)
    big = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = np.random.default_rng(0).normal(0, 3, big.shape)
    Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8)).save(path, quality=92)


def wall(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the child) of one run of ``cmd``."""
    import resource

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--photo", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="photo3d-speed-") as d:  # (removed afterwards: it was left behind)
        return _measure(args, Path(d))


def _measure(args, tmp: Path) -> int:
    photo = args.photo or tmp / "photo12mp.jpg"
    if args.photo is None:
        make_photo(photo)
    if args.model is None:
        from photo3d.depth.modelfile import bundled_model_path
    model = args.model or bundled_model_path()
    from PIL import Image

    w, h = Image.open(photo).size
    print(f"photo: {photo} ({w}x{h} = {w * h / 1e6:.1f} MP, {photo.stat().st_size / 1e6:.2f} MB JPEG)")
    print(f"model: {model}")
    out = tmp / "out.glb"
    exe = [sys.executable, "-c", "import photo3d; photo3d.main()"]
    convert = exe + ["convert", str(photo), "-o", str(out), "--model", str(model)]
    floor = [sys.executable, "-c", FLOOR, str(photo)]
    wall(floor)  # warm the file cache
    t_conv, t_floor, c_conv, c_floor = [], [], [], []
    load0 = os.getloadavg()[0]
    for _ in range(args.runs):
        w_, c_ = wall(convert)
        t_conv.append(w_)
        c_conv.append(c_)
        w_, c_ = wall(floor)
        t_floor.append(w_)
        c_floor.append(c_)
    # stage breakdown from one in-process run (model already loaded = what a batch pays per photo)
    report_json = tmp / "report.json"
    code = (
        "import atexit, gc, json, sys, time\n"
        "atexit.register(gc.freeze)\n"
        "from photo3d.pipeline import ConvertOptions, convert_file\n"
        "from photo3d.depth.runtime import load_model\n"
        "t = time.perf_counter(); load_model(sys.argv[2]); t_load = time.perf_counter() - t\n"
        "t = time.perf_counter(); r = convert_file(sys.argv[1], sys.argv[3], ConvertOptions(model=sys.argv[2]))\n"
        "r['total'] = time.perf_counter() - t; r['load_model'] = t_load\n"
        "json.dump(r, open(sys.argv[4], 'w'))\n"
    )
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(photo), str(model), str(out), str(report_json)], check=True)
    t_proc = time.perf_counter() - t
    rep = json.loads(report_json.read_text())
    med_c, med_f = statistics.median(t_conv), statistics.median(t_floor)
    print(f"photo3d convert, whole process: median {med_c:.2f} s over {args.runs} runs {[round(x, 2) for x in t_conv]}")
    print(f"floor (import torch + decode + encode texture): median {med_f:.2f} s  -> convert / floor = {med_c / med_f:.2f}x")
    cpu_c, cpu_f = statistics.median(c_conv), statistics.median(c_floor)
    print(f"CPU time (user + sys, all threads): convert median {cpu_c:.2f} s {[round(x, 2) for x in c_conv]}, "
          f"floor {cpu_f:.2f} s; on {os.cpu_count()} cores a convert needs >= {cpu_c / (os.cpu_count() or 1):.2f} s of wall time")
    print(f"GLB: {rep['glb_bytes'] / 1e6:.2f} MB, {rep['vertices']:,} vertices, {rep['faces']:,} faces, "
          f"{rep['layers']} layers, grid {rep['grid']}, texture {rep['texture']}")
    stages = rep["seconds"]
    print(f"in-process: load model {rep['load_model']:.2f} s, convert {rep['total']:.2f} s; process total {t_proc:.2f} s "
          f"(imports + interpreter = {t_proc - rep['total'] - rep['load_model']:.2f} s)")
    for k, v in stages.items():
        print(f"  {k:8s} {v:6.3f} s  {100 * v / rep['total']:5.1f} %")
    print(f"load average: {load0:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs "
          "(wall times stretch with the load; CPU times much less)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
