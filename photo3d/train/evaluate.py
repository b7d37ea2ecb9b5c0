"""Hold-out check: does the student agree with the teacher in the large?

    python -m photo3d.train.evaluate MODEL [--photos ../shared/data/photos] [--limit N]

MODEL is a TorchScript file (e.g. ``photo3d/models/p3d-s.pt``) or a checkpoint from
``photo3d.train.fit`` (``runs/x/last.pt``, evaluated in float). For every photo in
``holdout.txt`` (never trained on), both networks run on the runtime's preprocessing (longer
side 384, sides multiples of 32) and the Pearson correlation of their log-disparities is taken;
reported against the training label (both teachers combined as in training,
``photo3d.train.teachers.combine``) and against Tiefenrausch alone; the median over photos is the
figure of merit (issue 8 asks ≥ 0.85 with the label, ≥ 0.80 with Tiefenrausch). Teacher outputs
are cached in ``runs/holdout_teacher.npz``, ``runs/holdout_teacher_mirrored.npz`` and
``runs/holdout_fastdepth.npz``. Since session 18 the label's Tiefenrausch map is the average of its
maps of the photo and of its mirror image (as in training); the agreement with the label made
without that is reported beside it (``unmirrored_median_r``; ``--no-tr-flip`` makes it the label).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from photo3d.depth.runtime import load_model, operating_point, preprocess
from photo3d.io import atomic_output
from photo3d.depth.modelfile import DEFAULT_INPUT_SIZE as INPUT_SIZE
from photo3d.errors import Photo3DError
from photo3d.train.metrics import pearson
from photo3d.train.teachers import on_mirror

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("PHOTO3D_SHARED", REPO.parent / "shared"))


def holdout_photos(photos: Path, limit: int = 0) -> list[Path]:
    names = (photos / "holdout.txt").read_text().split()
    if limit:
        names = names[:: max(1, len(names) // limit)][:limit]
    return [photos / n for n in names]


def load_student(path: Path):
    """(callable (1,3,H,W) → (1,1,H,W) log-disparity, metadata) from a TorchScript file or a training checkpoint."""
    from photo3d.train.fit import load_checkpoint, model_from_checkpoint

    try:  # (a TorchScript archive is tried as a checkpoint first; weights only: a pickle runs nothing)
        ckpt = load_checkpoint(path)
    except Exception:
        ckpt = None
    if ckpt is not None:
        return model_from_checkpoint(ckpt, strict=False).eval(), {}
    dm = load_model(path)
    return dm.module, dm.meta


def student_runner(student_path: Path, input_size: int = 0):
    """(run, input size): ``run(rgb, shape=None)`` is the student's log-disparity of the photo ``rgb``
    as ``photo3d depth`` runs it (its operating point, QNNPACK), resized to ``shape`` when given;
    ``input_size`` 0: the metadata's (or 384)."""
    student, meta = load_student(student_path)
    if not input_size:
        input_size = int(meta.get("input_size", INPUT_SIZE))
    torch.backends.quantized.engine = "qnnpack"

    def run(rgb: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = operating_point(student, meta, rgb, input_size)[0, 0].numpy()  # as the runtime runs it
        if shape is not None and y.shape != tuple(shape):
            y = cv2.resize(y, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        return y
    return run, input_size


SOURCE_KEY = "__source__"  # a cache's entry naming what made it (the teacher file and the photos folder)


def _cached_outputs(files: list[Path], cache: Path, compute, source: str = "") -> dict[str, np.ndarray]:
    """Per-photo outputs by file name, from the ``cache`` .npz; ``compute(rgb)`` makes the missing
    ones (float16), and the cache is rewritten with them. ``source`` (the teacher and the photos'
    folder) is kept in the cache: one made from another teacher or other photos is made again, not
    read as this one (it was keyed by file name only, helper-88); a cache from before it existed is
    taken as the default teacher's."""
    out: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache) as z:
            made_by = str(z[SOURCE_KEY]) if SOURCE_KEY in z.files else None
            if made_by in (None, source) or not source:
                out = {k: z[k] for k in z.files if k != SOURCE_KEY}
    todo = [f for f in files if f.name not in out]
    if todo:
        for f in todo:
            rgb = cv2.imread(str(f), cv2.IMREAD_COLOR)[:, :, ::-1]
            out[f.name] = compute(rgb).astype(np.float16)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(cache) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **out, **({SOURCE_KEY: np.array(source)} if source else {}))
    return out


def _source(what: Path, photos: Path) -> str:
    return f"{Path(what).resolve()} on {Path(photos).resolve()}"


def teacher_outputs(files: list[Path], teacher: Path, cache: Path, mirrored: bool = False,
                    photos: Path | None = None) -> dict[str, np.ndarray]:
    """Tiefenrausch's log-disparity of each photo (``mirrored``: of its mirror image, mirrored back,
    for the mirror-averaged label)."""
    net = None

    def compute(rgb: np.ndarray) -> np.ndarray:
        nonlocal net
        net = net or load_model(teacher).module
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            def run(x: np.ndarray) -> np.ndarray:
                return net(preprocess(x, INPUT_SIZE))[0, 0].dequantize().numpy()

            return on_mirror(run, rgb) if mirrored else run(rgb)

    return _cached_outputs(files, cache, compute, _source(teacher, photos) if photos else "")


def fastdepth_outputs(files: list[Path], onnx_file: Path, ref: dict[str, np.ndarray], cache: Path,
                      photos: Path | None = None) -> dict[str, np.ndarray]:
    """FastDepth's log-disparity on the same 384-px grid as the Tiefenrausch reference."""
    fd = None

    def compute(rgb: np.ndarray) -> np.ndarray:
        nonlocal fd
        if fd is None:
            from photo3d.train.teachers import FastDepthTeacher

            fd = FastDepthTeacher(onnx_file)
        return fd.on_network_grid(rgb, INPUT_SIZE)

    return _cached_outputs(files, cache, compute, _source(onnx_file, photos) if photos else "")


def summary(rs: list[float], prefix: str = "") -> dict:
    a = np.array(rs)
    return {f"{prefix}median_r": float(np.median(a)), f"{prefix}mean_r": float(a.mean()),
            f"{prefix}p10_r": float(np.percentile(a, 10)), f"{prefix}share_ge_0.85": float((a >= 0.85).mean())}


def evaluate(student_path: Path, photos: Path, teacher: Path, limit: int = 0,
             cache: Path = REPO / "runs" / "holdout_teacher.npz", input_size: int = 0,
             fastdepth: Path | None = None, label: str = "split", tr_flip: bool = True) -> dict:
    """``input_size``: the student's input (longer side; 0 = its metadata's or 384); its output is
    resized to the teacher's 384-px grid before correlating. ``tr_flip``: the label's Tiefenrausch
    map is mirror-averaged (:func:`photo3d.train.teachers.mirror_average`, the training label since
    session 18); the agreement with the label made without it is reported too (``unmirrored_``)."""
    files = holdout_photos(photos, limit)
    ref = teacher_outputs(files, teacher, cache, photos=photos)
    labels, plain = {}, {}
    if fastdepth is not None and fastdepth.is_file():
        from photo3d.train.teachers import combine, mirror_average

        fd = fastdepth_outputs(files, fastdepth, ref, cache.with_name("holdout_fastdepth.npz"), photos=photos)
        plain = {k: combine(ref[k].astype(np.float32), fd[k].astype(np.float32), label) for k in ref}
        labels = plain
        if tr_flip:
            mir = teacher_outputs(files, teacher, cache.with_name("holdout_teacher_mirrored.npz"), mirrored=True,
                                  photos=photos)
            labels = {k: combine(mirror_average(ref[k].astype(np.float32), mir[k].astype(np.float32)),
                                 fd[k].astype(np.float32), label) for k in ref}
    run, input_size = student_runner(student_path, input_size)
    rs, rs_tr, rs_plain = [], [], []
    for f in files:
        t = ref[f.name].astype(np.float32)
        y = run(cv2.imread(str(f), cv2.IMREAD_COLOR)[:, :, ::-1], t.shape)
        rs_tr.append(pearson(y, t))
        if labels:
            rs.append(pearson(y, labels[f.name]))
            rs_plain.append(pearson(y, plain[f.name]))
    res = {"model": str(student_path), "input_size": input_size, "photos": len(rs_tr),
           "label": (label + (", Tiefenrausch mirror-averaged" if tr_flip else "")) if labels else "tiefenrausch"}
    res.update(summary(rs if labels else rs_tr))
    if labels and tr_flip:
        res.update(summary(rs_plain, "unmirrored_"))
    res.update(summary(rs_tr, "tr_"))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m photo3d.train.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--photos", type=Path, default=SHARED / "data" / "photos")
    ap.add_argument("--teacher", type=Path, default=SHARED / "data" / "tiefenrausch")
    ap.add_argument("--limit", type=int, default=0, help="evaluate an even sample of N hold-out photos")
    ap.add_argument("--input-size", type=int, default=0, help="student input size (0: from its metadata, else 384)")
    ap.add_argument("--fastdepth", type=Path, default=SHARED / "data" / "fastdepth" / "fastdepth_7.onnx",
                    help="second teacher: the label is both teachers combined (absent: Tiefenrausch alone)")
    ap.add_argument("--label", default="split", help="combination of the teachers (photo3d.train.teachers.combine)")
    ap.add_argument("--no-tr-flip", dest="tr_flip", action="store_false",
                    help="the label without mirror-averaging Tiefenrausch (the training label until session 18)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=REPO / "runs",
                    help="where the teachers' outputs on the hold-out photos are kept (default: runs/ in the repo)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.model.exists():  # (the argument first: without ../shared a missing model was told of the photos)
        ap.error(f"{args.model}: no such file")
    if not (args.photos / "holdout.txt").is_file():
        ap.error(f"--photos {args.photos}: no holdout.txt there (the folder of the training photos)")
    try:
        res = evaluate(args.model, args.photos, args.teacher, args.limit, input_size=args.input_size,
                       fastdepth=args.fastdepth, label=args.label, tr_flip=args.tr_flip,
                       cache=args.cache_dir / "holdout_teacher.npz")
    except Photo3DError as e:  # (a file that is not a model, a teacher folder without the teacher: one line)
        ap.error(str(e))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
