"""Is a side-by-side pair's view order told right?  (photo3d reads a cross-eyed pair, the right view
first, the other way round when its occluded strips say so: ``embedded._views_swapped``.)

    python benchmarks/stereo_order.py ../shared/data/middlebury2006

For each scene's view1 / view5 (a rectified pair, left view first), three layouts: in order; swapped
(a cross-eyed pair); in order with the right view moved 80 px right (a stereo window behind
everything: every match to the left, as in a swapped pair).  Printed: the strips' votes (for, against
the order) and whether the pair is read as swapped; the last line counts the right calls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from photo3d.depth import embedded as E


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", type=Path)
    args = ap.parse_args()
    right_calls = {"in order": 0, "swapped": 0, "window": 0}
    n = 0
    for d in sorted(p for p in args.scenes.iterdir() if (p / "view1.png").is_file()):
        left, right = (cv2.imread(str(d / f"view{i}.png"))[:, :, ::-1].copy() for i in (1, 5))
        shift = 80
        moved = np.zeros_like(right)
        moved[:, shift:] = right[:, :-shift]
        layouts = {"in order": (left, right), "swapped": (right, left), "window": (left[:, shift:], moved[:, shift:])}
        try:
            depths = {k: E.stereo_disparity(a, b) for k, (a, b) in layouts.items()}
        except E.EmbeddedDepthError as e:
            print(f"{d.name:12s} {e}")
            continue
        n += 1
        row = []
        for k, depth in depths.items():
            swapped = E._views_swapped(depth)
            right_calls[k] += swapped == (k == "swapped")
            row.append(f"{k} {depth.meta['order_votes']} {'swapped' if swapped else 'kept'}")
        print(f"{d.name:12s} " + " | ".join(row), flush=True)
    print(f"right calls of {n} pairs: " + ", ".join(f"{k} {v}" for k, v in right_calls.items()))


if __name__ == "__main__":
    main()
