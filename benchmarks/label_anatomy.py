"""What the two-teacher training label is made of, on the hold-out photos: the median per-photo
Pearson r of log-disparity between the label and each teacher, Tiefenrausch's low band alone, and
the plain mean of both teachers (the share of photos with r >= 0.85 in brackets).

    python benchmarks/label_anatomy.py [--label split] [--no-tr-flip]

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

from photo3d.train.metrics import pearson
from photo3d.train.teachers import LOW_SIGMA, combine, lowpass, mirror_average, normalize

RUNS = Path(__file__).resolve().parents[1] / "runs"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label", default="split", help="how the label combines the teachers (teachers.combine)")
    ap.add_argument("--no-tr-flip", dest="tr_flip", action="store_false",
                    help="the label without mirror-averaging Tiefenrausch (the training label until session 18)")
    args = ap.parse_args(argv)
    files = [RUNS / "holdout_teacher.npz", RUNS / "holdout_fastdepth.npz", RUNS / "holdout_teacher_mirrored.npz"]
    if not all(f.is_file() for f in files):
        print(f"{files[0].parent}: no cached teacher outputs; run python -m photo3d.train.evaluate MODEL first",
              file=sys.stderr)
        return 1
    with np.load(files[0]) as tr_z, np.load(files[1]) as fd_z, np.load(files[2]) as mir_z:
        rows: dict[str, list[float]] = {"Tiefenrausch": [], "Tiefenrausch mirror-averaged": [], "FastDepth": [],
                                        "Tiefenrausch's low band": [], "mean of both teachers": []}
        for k in tr_z.files:
            if k not in fd_z.files or k not in mir_z.files:
                continue
            tr, fd = tr_z[k].astype(np.float32), fd_z[k].astype(np.float32)
            avg = mirror_average(tr, mir_z[k].astype(np.float32))
            label = combine(avg if args.tr_flip else tr, fd, args.label)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
