"""How to combine the two depth teachers: dev-scene scores of each teacher and of their combinations.

    python benchmarks/teacher_combination.py ../shared/data/middlebury2006 [--modes tr fd mean split split-fd]

Tiefenrausch runs at the runtime's 384-px input, FastDepth at ``FD_SIZE`` with flip averaging
(as when packing labels); each combination (``photo3d.train.teachers.combine``) is upsampled to
full resolution bilinearly and with the runtime's guided filter, then scored (AbsRel, δ1,
edge-order; ``photo3d.train.metrics``). Needs ``../shared`` and onnxruntime (training extra).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from photo3d.depth.runtime import load_model
from photo3d.depth.upsample import bilinear_upsample, guided_upsample
from photo3d.train.metrics import evaluate, load_scenes, lower_rows_prior, mean_scores
from photo3d.train.teachers import FastDepthTeacher, combine, mirror_average, on_mirror

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PHOTO3D_SHARED", REPO.parent / "shared"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--modes", nargs="+", default=["tr", "fd", "mean", "split", "split-fd"])
    ap.add_argument("--sigmas", nargs="+", type=float, default=[0.08])
    ap.add_argument("--per-scene", action="store_true")
    ap.add_argument("--tr-flip", action="store_true",
                    help="Tiefenrausch with flip averaging too (its output on the mirror image, mirrored back, averaged in)")
    args = ap.parse_args(argv)
    scenes = load_scenes(args.data)
    if not scenes:
        print(f"{args.data}: no scenes", file=sys.stderr)
        return 1
    tr = load_model(SHARED / "data" / "tiefenrausch")
    fd = FastDepthTeacher(SHARED / "data" / "fastdepth" / "fastdepth_7.onnx")
    logs = []
    for s in scenes:
        a = tr.predict_log(s.rgb)
        if args.tr_flip:
            a = mirror_average(a, on_mirror(tr.predict_log, s.rgb))
        small = cv2.resize(s.rgb, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
        logs.append((a, fd(small)))
    print(f"{len(scenes)} scenes; AbsRel / δ1 / edge-order (mean)")
    prior = mean_scores([evaluate(lower_rows_prior(s.disparity.shape), s.disparity) for s in scenes])
    print(f"{'prior':<22} {prior.abs_rel:.3f} / {prior.delta1:.3f} / {prior.edge_order:.3f}")
    for mode in args.modes:
        for sigma in (args.sigmas if mode.startswith("split") else [args.sigmas[0]]):
            for up in ("bilinear", "guided"):
                scores = []
                for s, (a, b) in zip(scenes, logs):
                    lab = combine(a, b, mode, sigma)
                    full = guided_upsample(lab, s.rgb) if up == "guided" else bilinear_upsample(lab, s.rgb.shape[1::-1])
                    scores.append(evaluate(np.exp(full), s.disparity))
                m = mean_scores(scores)
                name = f"{mode}{f' σ{sigma}' if mode.startswith('split') else ''} {up}"
                print(f"{name:<22} {m.abs_rel:.3f} / {m.delta1:.3f} / {m.edge_order:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
