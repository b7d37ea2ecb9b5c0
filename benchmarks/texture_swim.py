"""Texture swim: how far a 3D photo seen from the photo's own viewpoint is from the photo.

Every vertex lies on the camera ray of its pixel and carries that pixel's texture coordinate, so
the vertices themselves land where they belong.  Inside a triangle whose corners have different
depths they do not: the viewer (and ``photo3d/render.py``) interpolates texture coordinates
perspective-correctly, i.e. linearly on the 3D triangle, while the photo is the *projection* of
that triangle.  The point that shows at screen position p has the texture of another position:
along an edge of L photo pixels whose ends have inverse depths i_min, i_max the largest shift is

    L * (1 - sqrt(r)) / (1 + sqrt(r)),   r = i_min / i_max          (about L * (1 - r) / 4)

so a large mesh cell on a steep plane (a facade, a floor) bends straight lines even at offset
zero (it is independent of ``--parallax``).  This script reports, for the visible layer of each
GLB (or of each photo converted with the bundled model): the largest shift of each triangle in
photo pixels (the maximum of its three edges and its centroid), as median, 95th percentile and
maximum, and the share of triangles over 1 px.

    python benchmarks/texture_swim.py PHOTO_OR_GLB... [--model M]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def triangle_swim(positions: np.ndarray, uv: np.ndarray, faces: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The largest texture shift (photo pixels) of each triangle seen from the origin."""
    P = positions.astype(np.float64)
    w, h = size
    q = np.stack([P[:, 0] / -P[:, 2], P[:, 1] / -P[:, 2], np.ones(len(P))], 1)
    A = np.linalg.lstsq(q, uv.astype(np.float64), rcond=None)[0]  # projection -> texture coordinates
    scale = np.array([w, h], np.float64)
    inv = 1.0 / -P[:, 2]
    worst = np.zeros(len(faces))
    for a, b in ((0, 1), (1, 2), (2, 0)):  # edges: the closed form
        ia, ib = inv[faces[:, a]], inv[faces[:, b]]
        r = np.minimum(ia, ib) / np.maximum(ia, ib)
        length = np.linalg.norm((uv[faces[:, a]] - uv[faces[:, b]]) * scale, axis=1)
        worst = np.maximum(worst, length * (1 - np.sqrt(r)) / (1 + np.sqrt(r)))
    c = P[faces].mean(axis=1)  # the centroid: its projection against its interpolated coordinate
    qc = np.stack([c[:, 0] / -c[:, 2], c[:, 1] / -c[:, 2], np.ones(len(c))], 1)
    return np.maximum(worst, np.linalg.norm((qc @ A - uv[faces].mean(axis=1)) * scale, axis=1))


def measure(glb: bytes) -> dict:
    from photo3d.render import scene_from_glb

    scene = scene_from_glb(glb)
    m = scene.meshes[0]  # the visible layer (what the photo's own viewpoint shows)
    e = triangle_swim(m.positions, m.uv, m.faces, tuple(scene.meta["source_size"]))
    return {"size": scene.meta["source_size"], "triangles": len(e), "median": float(np.median(e)), "p95": float(np.percentile(e, 95)),
            "max": float(e.max()), "over_1px": float((e > 1).mean())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path)
    ap.add_argument("--model", type=Path, default=None)
    args = ap.parse_args()
    from photo3d.pipeline import ConvertOptions, convert_file

    print("| input | size | triangles | median px | p95 px | max px | triangles > 1 px |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for src in args.inputs:
            if src.suffix.lower() == ".glb":
                glb = src.read_bytes()
            else:
                out = Path(tmp) / (src.name + ".glb")
                convert_file(src, out, ConvertOptions(model=args.model))
                glb = out.read_bytes()
            s = measure(glb)
            w, h = s["size"]
            print(f"| {src.name} | {w}x{h} | {s['triangles']:,} | {s['median']:.2f} | {s['p95']:.2f} | {s['max']:.2f} | "
                  f"{100 * s['over_1px']:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
