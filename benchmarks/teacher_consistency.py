"""How consistent is Tiefenrausch with itself under what training does to a photo? Median (and
10th-percentile) per-photo Pearson r of log-disparity between Tiefenrausch on the photo as the label
saw it (384 px) and Tiefenrausch on the same photo flipped, colour-augmented, JPEG-compressed, cropped
to its centre 75 %, or given at a smaller input size, compared on the common pixels.

    python benchmarks/teacher_consistency.py [--limit 24]

A student trained on flipped or cropped views is asked for the layout the teacher gives the whole,
unflipped photo; where the teacher itself changes its mind under those views, the target is blurred,
which bounds what the student can agree with.
"""

from __future__ import annotations

import argparse
import warnings

import cv2
import numpy as np
import torch

from photo3d.depth.runtime import load_model, preprocess
from photo3d.train.data import AugmentConfig, photometric
from photo3d.train.evaluate import SHARED, holdout_photos
from photo3d.train.metrics import pearson


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=24, help="an even sample of N hold-out photos")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "qnnpack"
    tr = load_model(SHARED / "data" / "tiefenrausch").module

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit / quantized deprecation notices
            return tr(x)[0, 0].dequantize().numpy()

    g = torch.Generator().manual_seed(1)
    rows: dict[str, list[float]] = {}
    for f in holdout_photos(SHARED / "data" / "photos", args.limit):
        rgb = cv2.imread(str(f), cv2.IMREAD_COLOR)[:, :, ::-1]
        x = preprocess(rgb, 384)
        y = run(x)
        rows.setdefault("horizontal flip", []).append(pearson(run(x.flip(3))[:, ::-1], y))
        xa, _ = photometric(x.clone(), g, AugmentConfig(p_border=0))
        rows.setdefault("colour and old-photo augmentation", []).append(pearson(run(xa), y))
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 30])
        rows.setdefault("JPEG quality 30", []).append(pearson(run(preprocess(cv2.imdecode(buf, 1)[:, :, ::-1], 384)), y))
        h, w = rgb.shape[:2]
        yc = run(preprocess(rgb[h // 8:h - h // 8, w // 8:w - w // 8], 384))
        yc = cv2.resize(yc, (int(y.shape[1] * 0.75), int(y.shape[0] * 0.75)), interpolation=cv2.INTER_LINEAR)
        oy, ox = (y.shape[0] - yc.shape[0]) // 2, (y.shape[1] - yc.shape[1]) // 2
        rows.setdefault("centre crop 75 %", []).append(pearson(yc, y[oy:oy + yc.shape[0], ox:ox + yc.shape[1]]))
        for side in (256, 192):
            ys = cv2.resize(run(preprocess(rgb, side)), (y.shape[1], y.shape[0]), interpolation=cv2.INTER_LINEAR)
            rows.setdefault(f"input {side} px instead of 384", []).append(pearson(ys, y))
    print(f"Tiefenrausch against itself on {len(rows['horizontal flip'])} hold-out photos (median r, p10 in brackets)")
    for name, rs in rows.items():
        print(f"  {name:36s} {np.median(rs):.3f} ({np.percentile(rs, 10):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
