"""Pack a training bundle: photos (JPEG) + the teacher's log-disparity at the same size.

    python -m photo3d.train.pack --out bundle/ [--photos ../shared/data/photos]
        [--teacher ../shared/data/tiefenrausch | --teacher prior] [--size 320] [--max-mib 63]

Photos listed in ``holdout.txt`` are never packed. Scene sets come first (osie, bsds500,
urban100, sun_hays80, kodak24, mcmaster), then object photos, until the size cap is reached.
Each photo is resized (INTER_AREA) so its longer side is ``--size`` and centre-cropped so both
sides are multiples of 32; the teacher runs on exactly that image. Tiefenrausch's output is
itself 8-bit quantized, so its codes are stored losslessly as an 8-bit PNG (value =
(code − zero_point) × scale), which is 5–10× smaller than float16. Resumable: existing entries
are kept; ``index.json`` is rewritten every 50 photos.

``--teacher prior`` is a stand-in teacher ("lower rows nearer" + a little image structure) for
tests and machines without the Tiefenrausch files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from photo3d.io import write_bytes_atomic

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PHOTO3D_SHARED", REPO.parent / "shared"))
SET_ORDER = ["osie", "bsds500", "urban100", "sun_hays80", "kodak24", "mcmaster", "imagenet_det", "imagenet_sample"]
PRIOR_SCALE, PRIOR_ZERO = 0.0187, 128


def list_photos(photos: Path) -> list[Path]:
    holdout_file = photos / "holdout.txt"
    holdout = set(holdout_file.read_text().split()) if holdout_file.is_file() else set()
    files = sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    files = [p for p in files if p.relative_to(photos).as_posix() not in holdout]

    def key(p: Path):
        s = p.relative_to(photos).parts[0]
        return (SET_ORDER.index(s) if s in SET_ORDER else len(SET_ORDER), p.name)

    # interleave within the priority order: scene sets first, then the rest
    return sorted(files, key=key)


def prepare(bgr: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is ``size`` and centre-crop both sides to multiples of 32 → RGB uint8."""
    h, w = bgr.shape[:2]
    s = size / max(h, w)
    nh, nw = max(32, round(h * s)), max(32, round(w * s))
    img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    ch, cw = nh // 32 * 32, nw // 32 * 32
    y0, x0 = (nh - ch) // 2, (nw - cw) // 2
    return np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw, ::-1])


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


class PriorTeacher:
    """Stand-in teacher: lower rows nearer, plus blurred luminance (no real depth knowledge)."""

    scale, zero_point = PRIOR_SCALE, PRIOR_ZERO

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        ramp = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None].repeat(w, 1)
        lum = cv2.GaussianBlur(rgb.mean(2).astype(np.float32) / 255.0, (0, 0), 3)
        return ramp + 0.5 * (lum - lum.mean())


class TiefenrauschTeacher:
    def __init__(self, folder: Path):
        from photo3d.depth.tiefenrausch import import_tiefenrausch, read_graph

        graph = read_graph(folder)
        last = [s for s in graph.steps if s.kind == "conv"][-1]
        self.scale, self.zero_point = float(last.scale), int(last.zero_point)
        self.net = import_tiefenrausch(folder)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.net(to_tensor(rgb))[0, 0].numpy()


def encode(logd: np.ndarray, scale: float, zero: int) -> np.ndarray:
    return np.clip(np.round(logd / scale) + zero, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m photo3d.train.pack", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bundle")
    ap.add_argument("--photos", type=Path, default=SHARED / "data" / "photos")
    ap.add_argument("--teacher", default=str(SHARED / "data" / "tiefenrausch"),
                    help="Tiefenrausch folder, or 'prior' for the stand-in teacher")
    ap.add_argument("--size", type=int, default=320, help="longer side of packed photos")
    ap.add_argument("--max-mib", type=float, default=63.0, help="stop when the bundle reaches this size")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (0 = no limit)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    teacher = PriorTeacher() if args.teacher == "prior" else TiefenrauschTeacher(Path(args.teacher))
    out: Path = args.out
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "tgt").mkdir(parents=True, exist_ok=True)
    index_path = out / "index.json"
    items: list[dict] = json.loads(index_path.read_text())["items"] if index_path.is_file() else []
    done = {it["name"] for it in items}
    total = sum((out / it["image"]).stat().st_size + (out / it["target"]).stat().st_size for it in items)

    def write_index() -> None:
        info = {"version": 1, "size": args.size, "teacher": "prior" if args.teacher == "prior" else "tiefenrausch-int8",
                "photos": str(args.photos), "items": items}
        write_bytes_atomic(index_path, json.dumps(info, indent=0).encode())

    files = list_photos(args.photos)
    t0, n_new = time.time(), 0
    for p in files:
        if args.limit and len(items) >= args.limit:
            break
        if total > args.max_mib * 2**20:
            break
        name = p.relative_to(args.photos).with_suffix("").as_posix().replace("/", "__")
        if name in done:
            continue
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"{p}: unreadable, skipped", file=sys.stderr)
            continue
        rgb = prepare(bgr, args.size)
        code = encode(teacher(rgb), teacher.scale, teacher.zero_point)
        ok1, jpg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        ok2, png = cv2.imencode(".png", code, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        assert ok1 and ok2
        (out / "img" / f"{name}.jpg").write_bytes(jpg.tobytes())
        (out / "tgt" / f"{name}.png").write_bytes(png.tobytes())
        total += len(jpg) + len(png)
        items.append({"name": name, "image": f"img/{name}.jpg", "target": f"tgt/{name}.png",
                      "scale": teacher.scale, "zero_point": teacher.zero_point})
        n_new += 1
        if n_new % 50 == 0:
            write_index()
            el = time.time() - t0
            print(f"{len(items)} photos, {total / 2**20:.1f} MiB, {el / n_new:.2f} s/photo", flush=True)
    write_index()
    print(f"bundle {out}: {len(items)} photos, {total / 2**20:.1f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
