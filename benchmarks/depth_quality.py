"""Depth quality on Middlebury-style scenes: AbsRel, δ1, edge-order accuracy (photo3d.train.metrics).

    python benchmarks/depth_quality.py ../shared/data/middlebury2006 --model ../shared/data/tiefenrausch
    python benchmarks/depth_quality.py DATA --model A.pt --model B.pt --per-scene
    python benchmarks/depth_quality.py DATA --radius 2 --radius 4 --radius 8 --radius 12

DATA is a folder of scenes (or one scene) holding ``view1.png`` and ``disp1.png`` (disparity × 3,
0 = unknown).  For every model it scores the full-resolution output of ``photo3d depth`` (the
runtime's edge-aware upsampling) and, with ``--bilinear``, the same network with plain bilinear
upsampling, and with ``--radius R`` the guided filter at a window of R network pixels
(``photo3d depth`` uses ``photo3d.depth.upsample.NETWORK_RADIUS``); the "lower rows are nearer" prior is always listed as the trivial baseline.
Metrics are averaged over scenes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from photo3d.train.metrics import Scores, evaluate, load_scenes, lower_rows_prior, mean_scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="folder of Middlebury-style scenes")
    ap.add_argument("--model", action="append", type=Path, default=[],
                    help="TorchScript file or Tiefenrausch folder (repeatable); default: the bundled model")
    ap.add_argument("--bilinear", action="store_true", help="also score plain bilinear upsampling")
    ap.add_argument("--radius", action="append", type=int, default=[],
                    help="also score guided upsampling with this window, in network pixels (repeatable)")
    ap.add_argument("--per-scene", action="store_true", help="print every scene")
    args = ap.parse_args(argv)

    from photo3d.depth.runtime import load_model

    if not args.data.is_dir():
        ap.error(f"{args.data}: no such folder")
    scenes = load_scenes(args.data)
    if not scenes:
        print(f"{args.data}: no scenes (folders with view1.png + disp1.png)", file=sys.stderr)
        return 1
    rows: list[tuple[str, list[Scores], float]] = []
    rows.append(("lower rows are nearer (prior)", [evaluate(lower_rows_prior(s.disparity.shape), s.disparity) for s in scenes], 0.0))
    for path in args.model or [None]:
        model = load_model(path)
        label = model.name if path is None else str(path)
        modes = ["bilinear", "guided"] if args.bilinear else ["guided"]
        for mode in modes:
            scores, t = [], 0.0
            for s in scenes:
                t0 = time.perf_counter()
                pred = model.predict_result(s.rgb, upsample=mode).disparity
                t += time.perf_counter() - t0
                scores.append(evaluate(pred, s.disparity))
            name = f"{model.name} ({'plain bilinear' if mode == 'bilinear' else 'photo3d depth, guided'})"
            rows.append((name if args.model else f"{label} ({mode})", scores, t / len(scenes)))
        for r in args.radius:
            scores, t = [], 0.0
            for s in scenes:
                t0 = time.perf_counter()
                pred = model.predict_result(s.rgb, radius=r).disparity
                t += time.perf_counter() - t0
                scores.append(evaluate(pred, s.disparity))
            rows.append((f"{model.name} (guided, radius {r})", scores, t / len(scenes)))

    print(f"{len(scenes)} scenes from {args.data}")
    if args.per_scene:
        print(f"\n{'scene':<12} " + "  ".join(f"{n[:28]:>28}" for n, _, _ in rows) + "   (AbsRel / δ1 / edge-order)")
        for i, s in enumerate(scenes):
            cells = [f"{sc[i].abs_rel:.3f}/{sc[i].delta1:.3f}/{sc[i].edge_order:.3f}" for _, sc, _ in rows]
            print(f"{s.name:<12} " + "  ".join(f"{c:>28}" for c in cells))
        print()
    w = max(len(n) for n, _, _ in rows)
    print(f"{'method':<{w}}  {'AbsRel':>7}  {'δ1':>6}  {'edge-order':>10}  {'s/scene':>7}")
    for name, scores, t in rows:
        m = mean_scores(scores)
        print(f"{name:<{w}}  {m.abs_rel:7.4f}  {m.delta1:6.4f}  {m.edge_order:10.4f}  {t:7.2f}")
    return 0


if __name__ == "__main__":
    from photo3d.errors import run_script

    run_script(main)
