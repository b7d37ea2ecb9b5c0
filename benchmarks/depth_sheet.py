"""Depth contact sheet: hold-out photos × (photo, each model, Tiefenrausch, FastDepth, the label).

    python benchmarks/depth_sheet.py -o sheet.png [--model models/p3d-s.pt --model runs/v2/last.pt ...]
        [--photos ../shared/data/photos] [--names kodak24/kodak24_0003.jpg ...] [--height 150]

Every map goes through the runtime's path (``photo3d depth``: network at 384 px, guided upsampling,
robust [0, 1] normalisation) and is drawn with the preview's turbo colours (red = near). A
``--model`` may be an INT8 TorchScript file or a training checkpoint (float). FastDepth (ONNX, a
training-only dependency) and the two-teacher label are added when ../shared holds it.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from photo3d.depth.maps import colorize
from photo3d.depth.runtime import load_model, normalize, operating_point
from photo3d.depth.upsample import NETWORK_RADIUS, guided_upsample
from photo3d.train.teachers import combine, mirror_average, on_mirror

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PHOTO3D_SHARED", REPO.parent / "shared"))
# portrait ×2, room, street, building, landscape ×2, close-up ×3, old black-and-white ×2 (all in holdout.txt)
DEFAULT_NAMES = [
    "kodak24/kodak24_0003.jpg", "kodak24/kodak24_0017.jpg", "osie/osie_0015.jpg", "kodak24/kodak24_0007.jpg",
    "urban100/urban100_0026.jpg", "sun_hays80/sun_hays80_0026.jpg", "kodak24/kodak24_0012.jpg",
    "kodak24/kodak24_0002.jpg", "osie/osie_0103.jpg", "osie/osie_0136.jpg",
    "imagenet_sample/imagenet_sample_0840.jpg", "imagenet_det/imagenet_det_0532.jpg",
]


def _student(path: Path):
    """A callable rgb → log-disparity at the network grid, from a TorchScript file or a checkpoint."""
    from photo3d.train.evaluate import load_student

    module, meta = load_student(path)
    size = int(meta.get("input_size", 384))

    def run(rgb: np.ndarray) -> np.ndarray:
        torch.backends.quantized.engine = "qnnpack"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = operating_point(module, meta, rgb, size)[0, 0]  # (as the runtime runs it)
        return y.float().numpy()

    return run


def _panel(log: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    disp, _, _ = normalize(np.exp(guided_upsample(log, rgb, radius=NETWORK_RADIUS)))
    return colorize(disp)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--model", action="append", type=Path, default=[], help="model or checkpoint (repeatable)")
    ap.add_argument("--label", action="append", default=[], help="column title per --model")
    ap.add_argument("--photos", type=Path, default=SHARED / "data" / "photos")
    ap.add_argument("--names", nargs="+", default=DEFAULT_NAMES)
    ap.add_argument("--height", type=int, default=150, help="row height in pixels")
    ap.add_argument("--no-teachers", action="store_true")
    args = ap.parse_args(argv)

    columns: list[tuple[str, object]] = []
    for i, m in enumerate(args.model or [None]):
        title = args.label[i] if i < len(args.label) else ("bundled p3d-s" if m is None else m.stem)
        columns.append((title, _student(m) if m is not None else load_model(None).predict_log))
    tr = None
    if args.no_teachers:
        pass
    elif not (SHARED / "data" / "tiefenrausch").is_dir():
        print(f"warning: no teachers' columns: {SHARED / 'data' / 'tiefenrausch'} not found", file=sys.stderr)
    else:
        tr = load_model(SHARED / "data" / "tiefenrausch").predict_log
        columns.append(("Tiefenrausch", tr))
        onnx_file = SHARED / "data" / "fastdepth" / "fastdepth_7.onnx"
        if onnx_file.is_file():
            from photo3d.train.teachers import FastDepthTeacher

            fdt = FastDepthTeacher(onnx_file)

            columns.append(("FastDepth", lambda rgb: fdt.on_network_grid(rgb, 384)))
            columns.append(("label (both teachers)", None))  # combined from the two columns before it

    def label(rgb: np.ndarray, tr_log: np.ndarray, fd_log: np.ndarray) -> np.ndarray:
        """The training label: Tiefenrausch mirror-averaged, with FastDepth (``teachers.combine``)."""
        return combine(mirror_average(tr_log, on_mirror(tr, rgb)), fd_log)

    rows = []
    h = args.height
    cell_w = round(h * 1.5)
    for name in args.names:
        bgr = cv2.imread(str(args.photos / name), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"{name}: unreadable, skipped")
            continue
        s = min(h / bgr.shape[0], cell_w / bgr.shape[1])
        bgr = cv2.resize(bgr, (max(32, round(bgr.shape[1] * s)), max(32, round(bgr.shape[0] * s))), interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        logs = []
        for _, fn in columns:  # each network runs once per photo; the label reuses both teachers' maps
            logs.append(fn(rgb) if fn is not None else label(rgb, logs[-2], logs[-1]))
        cells = [rgb] + [_panel(log, rgb) for log in logs]
        rows.append(np.hstack([np.pad(c, ((0, h + 4 - c.shape[0]), (0, cell_w + 4 - c.shape[1]), (0, 0)),
                                      constant_values=255) for c in cells]))
    if not rows:
        print(f"error: none of the {len(args.names)} photos could be read under {args.photos} (--photos)", file=sys.stderr)
        return 1
    sheet = np.vstack(rows)
    width = sheet.shape[1]
    header = np.full((22, width, 3), 255, np.uint8)
    for i, title in enumerate(["photo"] + [t for t, _ in columns]):
        x = 4 + i * (cell_w + 4)
        cv2.putText(header, title, (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    out = np.vstack([header, sheet])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), out[:, :, ::-1])
    print(f"{args.out}: {len(rows)} photos × {len(columns) + 1} columns (turbo colours: red = near, blue = far)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
