"""Depth model latency at 384×288 and peak memory (RSS high-water mark) on this machine.

    python benchmarks/depth_latency.py --model ../shared/data/tiefenrausch
    python benchmarks/depth_latency.py --model photo3d/models/X.pt --baseline ../shared/data/tiefenrausch

Latency: median wall time (and process CPU time) over ``--runs`` forward passes of the network on a 1×3×288×384 input after
``--warmup`` passes; with ``--baseline`` the two models run interleaved in the same process and
the ratio model/baseline is printed.  "end-to-end" adds preprocessing and the edge-aware
upsampling for a 384×288 photo (``DepthModel.predict``).  Peak memory: each model is loaded and
run in a fresh child process and its VmHWM (peak RSS) is read, beside that of a child that only
imports torch (no model).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

W, H = 384, 288


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _inputs():
    import torch

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    x = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0))
    return rgb, x


def _forward(model, x) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward pass."""
    import torch

    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        model.module(x)
    return time.perf_counter() - t0, time.process_time() - c0


def _child(model_path: str, runs: int) -> None:
    """Run in a fresh process: load the model, run it, report peak RSS as JSON."""
    import torch

    if model_path == "-":
        print(json.dumps({"peak_rss_mb": _peak_rss_mb()}))
        return
    from photo3d.depth.runtime import load_model

    model = load_model(Path(model_path))
    rgb, x = _inputs()
    for _ in range(runs):
        _forward(model, x)
    model.predict(rgb)
    print(json.dumps({"peak_rss_mb": _peak_rss_mb(), "threads": torch.get_num_threads()}))


def _measure_memory(model_path: str, runs: int = 3) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--_child", model_path, "--runs", str(runs)],
        check=True, capture_output=True, text=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_rss_mb"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=str, default=None, help="TorchScript file or Tiefenrausch folder (default: bundled)")
    ap.add_argument("--baseline", type=str, default=None, help="second model, timed in the same process")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--_child", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child is not None:
        _child(args._child, args.runs if args.runs < 5 else 3)
        return 0

    import torch

    from photo3d.depth.runtime import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = [args.model] + ([args.baseline] if args.baseline else [])
    models = [load_model(None if p is None else Path(p)) for p in paths]
    rgb, x = _inputs()
    for m in models:
        for _ in range(args.warmup):
            _forward(m, x)
        m.predict(rgb)
    net: list[list[float]] = [[] for _ in models]
    cpu: list[list[float]] = [[] for _ in models]
    e2e: list[list[float]] = [[] for _ in models]
    for _ in range(args.runs):  # interleaved, so both see the same machine load
        for i, m in enumerate(models):
            wall, c = _forward(m, x)
            net[i].append(wall)
            cpu[i].append(c)
            t0 = time.perf_counter()
            m.predict(rgb)
            e2e[i].append(time.perf_counter() - t0)
    idle = _measure_memory("-")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{W}x{H} input, {args.runs} runs after {args.warmup} warm-up, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads of {os.cpu_count()} CPUs, engine {torch.backends.quantized.engine}, "
          f"load average {load:.1f}")
    print(f"{'model':<40} {'net median ms':>14} {'min ms':>8} {'CPU ms':>8} {'end-to-end ms':>14} {'peak RSS MB':>12}")
    med = []
    for p, m, n, c, e in zip(paths, models, net, cpu, e2e):
        mem = _measure_memory(str(m.path) if m.path else "")
        med.append(statistics.median(n))
        label = (p or f"bundled ({m.name})")[-40:]
        print(f"{label:<40} {1e3 * statistics.median(n):14.1f} {1e3 * min(n):8.1f} {1e3 * statistics.median(c):8.1f} "
              f"{1e3 * statistics.median(e):14.1f} {mem:12.0f}")
    print(f"{'(python + torch, no model)':<40} {'':>14} {'':>8} {'':>8} {'':>14} {idle:12.0f}")
    if len(models) == 2:
        print(f"latency ratio model/baseline: {med[0] / med[1]:.3f}")
    return 0


if __name__ == "__main__":
    from photo3d.errors import run_script

    run_script(main)
