"""Pack a training bundle: photos (JPEG) + both teachers' log-disparity at the same size.

    python -m photo3d.train.pack --out bundle/ [--photos ../shared/data/photos] [--shard 0/2]
        [--teacher ../shared/data/tiefenrausch | --teacher prior] [--fastdepth FILE.onnx | --fastdepth none]
        [--size 384] [--max-mib 0]

``--zoom K`` packs the K-th zoomed view of each photo instead (entries ``NAME~zK``, index files
``index.zK…json``): a crop of 55–85 % of each side at a position drawn from the photo's name and K,
labelled by the teachers on exactly that crop. The student meets new framings with the teachers'
own answers to them, not crops of their answer to the whole photo (which a small network can
memorise): "consistent" distillation, more labelled views from the same photos.

Photos listed in ``holdout.txt`` are never packed. Scene sets come first (osie, bsds500,
urban100, sun_hays80, kodak24, mcmaster), then object photos, until the size cap is reached.
Each photo is resized (INTER_AREA) so its longer side is ``--size`` (the runtime's input) and
centre-cropped so both sides are multiples of 32; the teachers run on exactly that image.
Tiefenrausch's output is itself 8-bit quantized, so its codes are stored losslessly as an 8-bit
PNG (value = (code − zero_point) × scale); so are its codes on the mirror image, mirrored back
(``target_flip``: the label averages the two, see :func:`photo3d.train.teachers.mirror_average`;
a bundle packed before these existed gets them on the next run). FastDepth's log-disparity is stored as a 16-bit PNG
over its own range (``fd_lo``, ``fd_hi`` in the index). The label both are combined into is
chosen at training time (:func:`photo3d.train.teachers.combine`). Resumable: existing entries
are kept; the index is rewritten every 50 photos. ``--shard K/N`` packs every N-th photo into
``index.K.json`` so N processes can label in parallel; :class:`photo3d.train.data.Bundle` reads
all index files of a folder.

``--teacher prior`` is a stand-in teacher ("lower rows nearer" + a little image structure) for
tests and machines without the Tiefenrausch files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import torch

from photo3d.errors import Photo3DError
from photo3d.io import write_bytes_atomic
from photo3d.train.teachers import FastDepthTeacher, PriorTeacher, TiefenrauschTeacher, on_mirror

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PHOTO3D_SHARED", REPO.parent / "shared"))
SET_ORDER = ["osie", "bsds500", "urban100", "sun_hays80", "kodak24", "mcmaster", "imagenet_det", "imagenet_sample"]


def photo_root(photos: Path) -> Path:
    """The folder whose ``holdout.txt`` applies to ``photos``: ``photos`` itself or the nearest folder
    above it that has one (``--photos ../shared/data/photos/osie`` packed that set's hold-out photos,
    under names other than a whole pack's); ``photos`` when there is none. Entry names are relative to it."""
    photos = photos.resolve()
    for d in (photos, *photos.parents):
        if (d / "holdout.txt").is_file():
            return d
    return photos


def list_photos(photos: Path) -> list[Path]:
    root = photo_root(photos)
    holdout_file = root / "holdout.txt"
    holdout = set(holdout_file.read_text().split()) if holdout_file.is_file() else set()
    files = sorted(p for p in photos.resolve().rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    files = [p for p in files if p.relative_to(root).as_posix() not in holdout]

    def key(p: Path):
        s = p.relative_to(root).parts[0]
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


ZOOM_RANGE = (0.55, 0.85)  # a zoomed view's share of each side


def zoom_view(bgr: np.ndarray, name: str, k: int) -> np.ndarray:
    """The ``k``-th zoomed view of a photo: the photo's aspect, 55–85 % of each side, a position
    drawn from ``name`` and ``k`` (the same view on every run and machine)."""
    rng = np.random.default_rng(zlib.crc32(f"{name}~z{k}".encode()))
    h, w = bgr.shape[:2]
    s = rng.uniform(*ZOOM_RANGE)
    ch, cw = max(32, round(h * s)), max(32, round(w * s))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return bgr[y0:y0 + ch, x0:x0 + cw]


def encode(logd: np.ndarray, scale: float, zero: int) -> np.ndarray:
    return np.clip(np.round(logd / scale) + zero, 0, 255).astype(np.uint8)


def encode16(logd: np.ndarray) -> tuple[np.ndarray, float, float]:
    lo, hi = float(logd.min()), float(logd.max())
    code = np.round((logd - lo) / max(hi - lo, 1e-6) * 65535).astype(np.uint16)
    return code, lo, hi


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m photo3d.train.pack", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "bundle")
    ap.add_argument("--photos", type=Path, default=SHARED / "data" / "photos")
    ap.add_argument("--teacher", default=str(SHARED / "data" / "tiefenrausch"),
                    help="Tiefenrausch folder, or 'prior' for the stand-in teacher")
    ap.add_argument("--fastdepth", default=str(SHARED / "data" / "fastdepth" / "fastdepth_7.onnx"),
                    help="FastDepth ONNX file (second teacher), or 'none'")
    ap.add_argument("--size", type=int, default=384, help="longer side of packed photos")
    ap.add_argument("--max-mib", type=float, default=0.0, help="stop when the bundle reaches this size (0: no cap)")
    ap.add_argument("--limit", type=int, default=0, help="at most this many photos (0 = no limit)")
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality")
    ap.add_argument("--shard", default="0/1", help="K/N: pack every N-th photo starting at K into index.K.json")
    ap.add_argument("--zoom", type=int, default=0,
                    help="K > 0: pack each photo's K-th zoomed view (a crop the teachers label anew), not the photo")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        k, n = (int(v) for v in args.shard.split("/"))
        if not 0 <= k < n:
            raise ValueError
    except ValueError:
        ap.error(f"--shard must be K/N with 0 <= K < N (e.g. 0/2), not {args.shard!r}")
    if not args.photos.is_dir():
        ap.error(f"--photos {args.photos}: no such folder")
    root = photo_root(args.photos)
    if not (root / "holdout.txt").is_file():
        print(f"note: no holdout.txt in {args.photos} or above: every photo is packed", file=sys.stderr)

    try:
        teacher = PriorTeacher() if args.teacher == "prior" else TiefenrauschTeacher(Path(args.teacher))
    except Photo3DError as e:
        ap.error(f"--teacher: {e}")
    fd = None
    if args.fastdepth != "none":
        if Path(args.fastdepth).is_file():
            try:
                fd = FastDepthTeacher(Path(args.fastdepth), threads=args.threads)
            except ModuleNotFoundError as e:
                ap.error(f"FastDepth needs {e.name} (pip install -e '.[train]'), or pack with --fastdepth none")
        elif args.fastdepth != ap.get_default("fastdepth"):
            ap.error(f"{args.fastdepth}: no such FastDepth ONNX file")
        else:
            print(f"note: {args.fastdepth} absent: packing with one teacher", file=sys.stderr)
    out: Path = args.out
    for sub in ("img", "tgt", "fd"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if args.zoom < 0:
        ap.error("--zoom must be 0 (whole photos) or a view number K > 0")
    zoom = f"z{args.zoom}" if args.zoom else ""
    tag = "-".join(t for t in (zoom, f"{k}" if n > 1 else "") if t)  # index.json, index.K.json, index.zK[-K].json
    index_path = out / (f"index.{tag}.json" if tag else "index.json")
    packed = json.loads(index_path.read_text()) if index_path.is_file() else {}
    items: list[dict] = packed.get("items", [])
    # a re-run adds to the bundle as it was packed (the mirrored labels of older entries too): the
    # same input size and teacher, or its labels would silently mix two of them
    for key, ours in (("size", args.size), ("teacher", teacher.name), ("second_teacher", fd.name if fd else None)):
        if items and packed.get(key, ours) != ours:
            ap.error(f"{index_path}: packed with {key} {packed[key]}, not {ours}; pack into another --out")
    done = {it["name"] for it in items}
    total = sum((out / it["image"]).stat().st_size + (out / it["target"]).stat().st_size for it in items)

    (out / "tgt_flip").mkdir(exist_ok=True)

    def write_mirrored(name: str, rgb: np.ndarray) -> int:
        """The teacher's codes of the mirror image, mirrored back, written beside ``name``'s; their bytes."""
        ok, png = cv2.imencode(".png", encode(on_mirror(teacher, rgb), teacher.scale, teacher.zero_point),
                               [cv2.IMWRITE_PNG_COMPRESSION, 9])
        assert ok
        (out / "tgt_flip" / f"{name}.png").write_bytes(png.tobytes())
        return len(png)

    def write_index() -> None:
        info = {"version": 2, "size": args.size, "teacher": teacher.name, "second_teacher": fd.name if fd else None,
                "photos": str(args.photos), "items": items}
        write_bytes_atomic(index_path, json.dumps(info, indent=0).encode())

    files = list_photos(args.photos)[k::n]
    t0, n_new = time.time(), 0
    by_name = {p.relative_to(root).with_suffix("").as_posix().replace("/", "__"): p for p in files}
    for it in items:  # entries packed before the mirrored codes existed
        if "target_flip" in it:
            continue
        bgr = cv2.imread(str(by_name[it["name"]]), cv2.IMREAD_COLOR) if it["name"] in by_name else None
        if bgr is None:
            print(f"{it['name']}: its photo is gone or unreadable: no mirrored label (training with --tr-flip "
                  "leaves it out)", file=sys.stderr)
            continue
        write_mirrored(it["name"], prepare(bgr, args.size))
        it["target_flip"] = f"tgt_flip/{it['name']}.png"
        n_new += 1
        if n_new % 50 == 0:
            write_index()
            print(f"{n_new} mirrored labels added, {(time.time() - t0) / n_new:.2f} s/photo", flush=True)
    if n_new:
        write_index()
        t0, n_new = time.time(), 0
    for p in files:
        if args.limit and len(items) >= args.limit:
            break
        if args.max_mib and total > args.max_mib * 2**20:
            break
        base = p.relative_to(root).with_suffix("").as_posix().replace("/", "__")
        name = f"{base}~{zoom}" if zoom else base
        if name in done:
            continue
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"{p}: unreadable, skipped", file=sys.stderr)
            continue
        rgb = prepare(zoom_view(bgr, base, args.zoom) if zoom else bgr, args.size)
        code = encode(teacher(rgb), teacher.scale, teacher.zero_point)
        ok1, jpg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        ok2, png = cv2.imencode(".png", code, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        assert ok1 and ok2
        item = {"name": name, "image": f"img/{name}.jpg", "target": f"tgt/{name}.png",
                "target_flip": f"tgt_flip/{name}.png", "scale": teacher.scale, "zero_point": teacher.zero_point}
        total += write_mirrored(name, rgb)
        if fd is not None:
            c16, lo, hi = encode16(fd(rgb))
            ok3, png16 = cv2.imencode(".png", c16, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            assert ok3
            (out / "fd" / f"{name}.png").write_bytes(png16.tobytes())
            item.update(fd=f"fd/{name}.png", fd_lo=lo, fd_hi=hi)
            total += len(png16)
        (out / "img" / f"{name}.jpg").write_bytes(jpg.tobytes())
        (out / "tgt" / f"{name}.png").write_bytes(png.tobytes())
        total += len(jpg) + len(png)
        items.append(item)
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
