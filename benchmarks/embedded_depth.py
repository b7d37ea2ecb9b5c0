"""Measured depth vs the networks: how well does each agree with the depth a photo carries?

    python benchmarks/embedded_depth.py ../shared/data/embedded/pug.heic --model ../shared/data/tiefenrausch

For a photo with an embedded depth map (HEIF depth image, GDepth, Dynamic Depth), the reference is
that map converted to disparity.  Each row is brought to the map's own resolution (INTER_AREA)
and scored by the Pearson correlation of log-disparity with it (scale-free, as the networks'
disparity is only known up to scale), plus Spearman's rank correlation (order only):

- ``photo3d depth`` with the embedded depth (the default ``--depth-source auto``): the
  full-resolution, guided-upsampled map photo3d writes, read back through its metadata;
- the bundled model and every ``--model`` (``--depth-source model``), their full-resolution
  output in their own disparity units.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from photo3d.train.metrics import pearson


def _ranks(a: np.ndarray) -> np.ndarray:
    r = np.empty(a.size)
    r[np.argsort(a.ravel(), kind="stable")] = np.arange(a.size)
    return r


def scores(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    p = cv2.resize(pred.astype(np.float32), (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_AREA)
    p = np.maximum(p, 1e-6)
    return pearson(np.log(p), np.log(ref)), pearson(_ranks(p), _ranks(ref))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photo", type=Path, help="a photo with an embedded depth map")
    ap.add_argument("--model", action="append", type=Path, default=[],
                    help="TorchScript file or Tiefenrausch folder (repeatable); the bundled model is always scored")
    args = ap.parse_args(argv)

    from photo3d.depth.embedded import depth_for, find_depth
    from photo3d.depth.runtime import load_model
    from photo3d.io import load_image

    photo = load_image(args.photo)
    found = find_depth(args.photo, photo, "embedded")
    if found.source != "embedded":
        print(f"{args.photo}: no usable embedded depth ({'; '.join(found.warnings)})", file=sys.stderr)
        return 1
    ref = found.depth.disparity.astype(np.float64)
    print(f"{args.photo}: {photo.width}x{photo.height}, embedded {found.kind} {ref.shape[1]}x{ref.shape[0]}")
    rows = []
    out = depth_for(found, photo.rgb)
    disp = out.disparity_min + out.disparity * (out.disparity_max - out.disparity_min)
    rows.append(("embedded depth (`photo3d depth`, default auto)", *scores(disp, ref)))
    for path in [None, *args.model]:
        model = load_model(path)
        res = model.predict_result(photo.rgb)
        disp = res.disparity_min + res.disparity * (res.disparity_max - res.disparity_min)
        label = f"{model.name} ({'bundled' if path is None else path}), `--depth-source model`"
        rows.append((label, *scores(disp, ref)))
    print(f"\n| depth of {args.photo.name} | Pearson r, log-disparity | Spearman ρ |")
    print("|---|---|---|")
    for name, p, s in rows:
        print(f"| {name} | {p:.4f} | {s:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
