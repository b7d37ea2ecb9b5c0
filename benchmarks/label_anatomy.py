"""What the two-teacher training label is made of, on the hold-out photos: the median per-photo
Pearson r of log-disparity between the label and each teacher, Tiefenrausch's low band alone, and
the plain mean of both teachers (the share of photos with r >= 0.85 in brackets).  With ``--model``,
also where a student's disagreement with the label lies: its low and high bands (the label's own
split, ``teachers.LOW_SIGMA``) each swapped for the label's, and its map with the best plane or
quadric added per photo (an oracle: how much of the gap is the scene's global tilt), and how well
its tilts follow the label's; with ``--bundle``, the same on that many training photos (a student
that fits its training photos no better than the hold-out is under-fitted, not over-fitted).

    python benchmarks/label_anatomy.py [--label split] [--no-tr-flip] [--model M [--bundle B --train-photos N]]

Reads the teachers' cached hold-out outputs that ``python -m photo3d.train.evaluate MODEL`` writes
(``runs/holdout_teacher.npz``, ``runs/holdout_teacher_mirrored.npz``, ``runs/holdout_fastdepth.npz``):
run that once first. The label's Tiefenrausch map is mirror-averaged as in training (since session 18). A student that
matched Tiefenrausch's layout alone would score about as high as that row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from photo3d.train.evaluate import SOURCE_KEY
from photo3d.train.metrics import pearson
from photo3d.train.teachers import LOW_SIGMA, combine, lowpass, mirror_average, normalize

RUNS = Path(__file__).resolve().parents[1] / "runs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label", default="split", help="how the label combines the teachers (teachers.combine)")
    ap.add_argument("--no-tr-flip", dest="tr_flip", action="store_false",
                    help="the label without mirror-averaging Tiefenrausch (the training label until session 18)")
    ap.add_argument("--model", type=Path, default=None, help="a student (TorchScript file or checkpoint) to dissect")
    ap.add_argument("--bundle", type=Path, default=None, help="with --model: also on training photos of this bundle")
    ap.add_argument("--train-photos", type=int, default=322, help="how many of the bundle's photos (evenly spread)")
    args = ap.parse_args(argv)
    files = [RUNS / "holdout_teacher.npz", RUNS / "holdout_fastdepth.npz", RUNS / "holdout_teacher_mirrored.npz"]
    if not all(f.is_file() for f in files):
        print(f"{files[0].parent}: no cached teacher outputs; run python -m photo3d.train.evaluate MODEL first",
              file=sys.stderr)
        return 1
    with np.load(files[0]) as tr_z, np.load(files[1]) as fd_z, np.load(files[2]) as mir_z:
        labels: dict[str, np.ndarray] = {}
        rows: dict[str, list[float]] = {"Tiefenrausch": [], "Tiefenrausch mirror-averaged": [], "FastDepth": [],
                                        "Tiefenrausch's low band": [], "mean of both teachers": []}
        for k in tr_z.files:
            if k == SOURCE_KEY or k not in fd_z.files or k not in mir_z.files:
                continue
            tr, fd = tr_z[k].astype(np.float32), fd_z[k].astype(np.float32)
            avg = mirror_average(tr, mir_z[k].astype(np.float32))
            label = combine(avg if args.tr_flip else tr, fd, args.label)
            labels[k] = label
            rows["Tiefenrausch"].append(pearson(tr, label))
            rows["Tiefenrausch mirror-averaged"].append(pearson(avg, label))
            rows["FastDepth"].append(pearson(fd, label))
            rows["Tiefenrausch's low band"].append(pearson(lowpass(normalize(tr), LOW_SIGMA), label))
            rows["mean of both teachers"].append(pearson(combine(tr, fd, "mean"), label))
    what = f"{args.label!r}{', Tiefenrausch mirror-averaged' if args.tr_flip else ''}"
    print(f"{len(rows['Tiefenrausch'])} hold-out photos, label {what}: median r with the label (share >= 0.85)")
    for name, rs in rows.items():
        r = np.asarray(rs)
        print(f"  {name:28s} {np.median(r):.3f} ({(r >= 0.85).mean():.2f})")
    if args.model is not None:
        from photo3d.train.evaluate import student_runner

        run, _ = student_runner(args.model)
        student_gap(args.model, hold_out_pairs(run, labels), "hold-out")
        if args.bundle is not None:
            student_gap(args.model, bundle_pairs(run, args.bundle, args.train_photos, args), "training")
    return 0


def hold_out_pairs(run, labels: dict[str, np.ndarray]):
    """(student, label) log-disparities of the hold-out photos with a label, on the teacher's grid."""
    import cv2

    from photo3d.train.evaluate import SHARED, holdout_photos

    for f in holdout_photos(SHARED / "data" / "photos"):
        if f.name in labels:
            yield run(cv2.imread(str(f), cv2.IMREAD_COLOR)[:, :, ::-1], labels[f.name].shape), labels[f.name]


def bundle_pairs(run, bundle: Path, n: int, args):
    """(student, label) of ``n`` photos of a training bundle, evenly spread, the label as training makes it."""
    import cv2

    from photo3d.train.data import bundle_items, bundle_label

    items = [it for it in bundle_items(bundle) if "fd" in it and "target_flip" in it]
    for it in items[:: max(1, len(items) // n)][:n]:
        label = bundle_label(bundle, it, args.label, args.tr_flip)
        if label is not None:
            yield run(cv2.imread(str(bundle / it["image"]), cv2.IMREAD_COLOR)[:, :, ::-1], label.shape), label


def student_gap(model: Path, pairs, where: str) -> None:
    """Print where the student's disagreement with the label lies on these (student, label) pairs."""
    rows: dict[str, list[float]] = {"student": [], "its low band only": [], "its low band + the label's high band": [],
                                    "the label's low band + its high band": [], "+ the best plane (oracle)": [],
                                    "+ the best quadric (oracle)": []}
    tilts = []
    for y, label in pairs:
        y, label = y.astype(np.float64), label.astype(np.float64)
        yl, ll = lowpass(y), lowpass(label)
        z = (y - y.mean()) / (y.std() + 1e-9)
        lz = (label - label.mean()) / (label.std() + 1e-9)
        h, w = y.shape
        gy, gx = (g.ravel() / max(h, w) for g in np.mgrid[:h, :w])
        gx, gy = gx - gx.mean(), gy - gy.mean()
        rows["student"].append(pearson(y, label))
        rows["its low band only"].append(pearson(yl, label))
        rows["its low band + the label's high band"].append(pearson(yl + (label - ll), label))
        rows["the label's low band + its high band"].append(pearson(ll + (y - yl), label))
        res = (lz - (z * lz).mean() * z).ravel()
        for name, basis in (("+ the best plane (oracle)", [gx, gy]), ("+ the best quadric (oracle)", [gx, gy, gx * gx, gy * gy, gx * gy])):
            a = np.stack([np.ones_like(gx)] + basis, 1)
            fit = a @ np.linalg.lstsq(a, res, rcond=None)[0]
            rows[name].append(pearson((lz.ravel() - res) + fit, lz.ravel()))
        a = np.stack([gx, gy], 1)
        tilts.append(np.concatenate([np.linalg.lstsq(a, z.ravel(), rcond=None)[0], np.linalg.lstsq(a, lz.ravel(), rcond=None)[0]]))
    t = np.asarray(tilts)
    print(f"{model.name} on {len(rows['student'])} {where} photos: median r with the label (share >= 0.85)")
    for name, rs in rows.items():
        r = np.asarray(rs)
        print(f"  {name:40s} {np.median(r):.3f} ({(r >= 0.85).mean():.2f})")
    print(f"  correlation of its tilt with the label's over the photos: left-right {np.corrcoef(t[:, 0], t[:, 2])[0, 1]:.2f}, "
          f"up-down {np.corrcoef(t[:, 1], t[:, 3])[0, 1]:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
