"""Per-layer triangulation of a depth grid: adaptive, crack-free, cut at discontinuities.

A restricted (2:1 balanced) quadtree over the vertex grid: a cell stays whole while the bilinear
approximation of its inverse depth moves no point by more than ``tol_px`` at full parallax and it
holds no cut and no invalid vertex; otherwise it is split down to single pixels.  Leaves are
fan-triangulated toward finer neighbours, so there are no T-junctions (no cracks).  Pixel cells
touching a cut keep only the triangles none of whose edges crosses a discontinuity.

Vertices lie on the camera rays of their pixels, so texture coordinates are the pixel's image
position.  Everything is vectorized (no per-pixel Python loops).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layers import Cuts

MAX_LEVEL = 5  # largest cells: 32 x 32 pixels
# largest texture shift (grid pixels) a merged cell may make: a flat 3D triangle carries its texture
# linearly, while the photo is its projection (benchmarks/texture_swim.py)
TEXTURE_SHIFT_PX = 0.5
SOFT_ALPHA = 128  # silhouette vertices: with alphaCutoff 0.5 the edge runs through them (the far side is the background layer's)


@dataclass
class LayerMesh:
    grid_yx: np.ndarray  # (n, 2) int32: grid position of each vertex
    faces: np.ndarray  # (m, 3) int32, counter-clockwise seen from the camera
    alpha: np.ndarray  # (n,) uint8: 0 on soft silhouette vertices, 255 elsewhere

    @property
    def num_vertices(self) -> int:
        return len(self.grid_yx)


def _pool_any(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    return a.reshape(h // 2, 2, w // 2, 2).any(axis=(1, 3))


def _bilinear_error(inv: np.ndarray, s: int) -> np.ndarray:
    """Max |inv - bilinear(corners)| over each s x s cell (edges included); inv is (n*s+1, m*s+1)."""
    H, W = inv.shape
    c = inv[::s, ::s]
    ix = np.arange(W - 1) // s
    wx = ((np.arange(W - 1) % s) / s).astype(np.float32)
    ix = np.append(ix, c.shape[1] - 2)
    wx = np.append(wx, np.float32(1.0))
    iy = np.arange(H - 1) // s
    wy = ((np.arange(H - 1) % s) / s).astype(np.float32)
    iy = np.append(iy, c.shape[0] - 2)
    wy = np.append(wy, np.float32(1.0))
    cx = c[:, ix] * (1 - wx) + c[:, ix + 1] * wx
    approx = cx[iy] * (1 - wy)[:, None] + cx[iy + 1] * wy[:, None]
    e = np.abs(inv - approx)
    e[:-1] = np.maximum(e[:-1], e[1:])
    e[:, :-1] = np.maximum(e[:, :-1], e[:, 1:])
    e = e[:-1, :-1]
    return e.reshape(H // s, s, W // s, s).max(axis=(1, 3))


def _texture_shift(inv: np.ndarray, s: int) -> np.ndarray:
    """Largest texture shift (grid pixels) inside each s x s cell drawn as flat 3D triangles.

    Along a line of L pixels whose ends have inverse depths i_lo <= i_hi, texture interpolated
    linearly on the 3D triangle lands up to L (1 - sqrt(r)) / (1 + sqrt(r)) pixels off the photo's
    projection, r = i_lo / i_hi; L is the cell's diagonal."""
    c = inv[::s, ::s]
    corners = np.stack([c[:-1, :-1], c[:-1, 1:], c[1:, :-1], c[1:, 1:]])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    r = np.sqrt(np.clip(lo / np.maximum(hi, 1e-12), 0.0, 1.0))
    return s * np.sqrt(2.0) * (1.0 - r) / (1.0 + r)


def _pad(a: np.ndarray, shape: tuple[int, int], value) -> np.ndarray:
    out = np.full(shape, value, dtype=a.dtype)
    out[: a.shape[0], : a.shape[1]] = a
    return out


def _pixel_triangles(inv, valid, cuts: Cuts, cells: np.ndarray) -> np.ndarray:
    """Triangles (grid-flat vertex ids) of the single-pixel cells ``cells`` (k, 2) [y, x]."""
    W = valid.shape[1]
    y, x = cells[:, 0], cells[:, 1]
    a, b, c, d = y * W + x, y * W + x + 1, (y + 1) * W + x, (y + 1) * W + x + 1
    va, vb, vc, vd = valid[y, x], valid[y, x + 1], valid[y + 1, x], valid[y + 1, x + 1]
    ab, cd = ~cuts.h[y, x], ~cuts.h[y + 1, x]
    ac, bd = ~cuts.v[y, x], ~cuts.v[y, x + 1]
    ad, bc = ~cuts.d1[y, x], ~cuts.d2[y, x]
    # diagonal a-d: (a, c, d), (a, d, b); diagonal b-c: (a, c, b), (b, c, d)
    t1 = va & vc & vd & ac & cd & ad
    t2 = va & vd & vb & ad & bd & ab
    t3 = va & vc & vb & ac & bc & ab
    t4 = vb & vc & vd & bc & cd & bd
    n_ad = t1.astype(int) + t2
    n_bc = t3.astype(int) + t4
    flat = inv.ravel()
    prefer_ad = np.abs(flat[a] - flat[d]) <= np.abs(flat[b] - flat[c])
    use_ad = (n_ad > n_bc) | ((n_ad == n_bc) & prefer_ad)
    tris = [
        np.stack([a, c, d], 1)[use_ad & t1],
        np.stack([a, d, b], 1)[use_ad & t2],
        np.stack([a, c, b], 1)[~use_ad & t3],
        np.stack([b, c, d], 1)[~use_ad & t4],
    ]
    return np.concatenate(tris)


def _cell_triangles(inv, level_leaves, split_same, s: int, W: int) -> np.ndarray:
    """Fan-triangulate leaf cells of size s; split_same: split flags of same-level cells."""
    cy, cx = np.nonzero(level_leaves)
    if len(cy) == 0:
        return np.zeros((0, 3), np.int64)
    sp = np.pad(split_same, 1)
    # neighbour split across top, right, bottom, left
    nb = [sp[cy, cx + 1], sp[cy + 1, cx + 2], sp[cy + 2, cx + 1], sp[cy + 1, cx]]
    y0, x0, h2 = cy * s, cx * s, s // 2
    tl, tr = y0 * W + x0, y0 * W + x0 + s
    bl, br = (y0 + s) * W + x0, (y0 + s) * W + x0 + s
    ctr = (y0 + h2) * W + x0 + h2
    mids = [y0 * W + x0 + h2, (y0 + h2) * W + x0 + s, (y0 + s) * W + x0 + h2, (y0 + h2) * W + x0]
    sides = [(tl, tr), (tr, br), (br, bl), (bl, tl)]
    simple = ~(nb[0] | nb[1] | nb[2] | nb[3])
    flat = inv.ravel()
    prefer = np.abs(flat[tl] - flat[br]) <= np.abs(flat[tr] - flat[bl])
    out = [
        np.stack([tl, bl, br], 1)[simple & prefer],
        np.stack([tl, br, tr], 1)[simple & prefer],
        np.stack([tl, bl, tr], 1)[simple & ~prefer],
        np.stack([tr, bl, br], 1)[simple & ~prefer],
    ]
    fan = ~simple
    for (p0, p1), m, n in zip(sides, mids, nb):
        out.append(np.stack([ctr, p0, p1], 1)[fan & ~n])
        out.append(np.stack([ctr, p0, m], 1)[fan & n])
        out.append(np.stack([ctr, m, p1], 1)[fan & n])
    return np.concatenate(out)


def triangulate(
    inv: np.ndarray,
    valid: np.ndarray,
    cuts: Cuts | None,
    tol_inv: float,
    soft_edge: np.ndarray | None = None,
    max_level: int | None = None,
    shift_px: float = TEXTURE_SHIFT_PX,
) -> LayerMesh:
    """Adaptive triangulation of the vertex grid ``inv`` (h, w) restricted to ``valid`` vertices.

    ``cuts``: grid edges not to connect (None = none).  ``tol_inv``: largest inverse-depth error a
    merged cell may make.  ``soft_edge``: vertices whose alpha is 0 (soft silhouettes).  ``shift_px``:
    largest texture shift (grid pixels) a merged cell may make (:func:`_texture_shift`).
    """
    h, w = inv.shape
    if max_level is None:  # the largest cells that tile the grid exactly (at least 8 px, padding if needed)
        g = int(np.gcd(h - 1, w - 1))
        max_level = max(3, min(MAX_LEVEL, (g & -g).bit_length() - 1 if g else MAX_LEVEL))
    s_max = 2**max_level
    H = -(-(h - 1) // s_max) * s_max + 1
    W = -(-(w - 1) // s_max) * s_max + 1
    if cuts is None:
        z = np.zeros
        cuts = Cuts(z((h, w - 1), bool), z((h - 1, w), bool), z((h - 1, w - 1), bool), z((h - 1, w - 1), bool))
    inv_p = _pad(np.where(valid, inv, 0).astype(np.float32), (H, W), 0.0)
    # pad by edge replication so the error estimate stays sane near the border
    inv_p[h:, :] = inv_p[h - 1 : h, :]
    inv_p[:, w:] = inv_p[:, w - 1 : w]
    valid_p = _pad(valid, (H, W), False)
    cp = Cuts(
        _pad(cuts.h, (H, W - 1), True), _pad(cuts.v, (H - 1, W), True),
        _pad(cuts.d1, (H - 1, W - 1), True), _pad(cuts.d2, (H - 1, W - 1), True),
    )
    # level-0 cells (pixels) that are not clean force their ancestors to split
    dirty = ~(valid_p[:-1, :-1] & valid_p[:-1, 1:] & valid_p[1:, :-1] & valid_p[1:, 1:])
    dirty |= cp.h[:-1] | cp.h[1:] | cp.v[:, :-1] | cp.v[:, 1:] | cp.d1 | cp.d2
    split = [None]  # split[l]: (H-1)/2^l x (W-1)/2^l flags, level 0 never split
    d = dirty
    for lvl in range(1, max_level + 1):
        d = _pool_any(d)
        sp = d | (_bilinear_error(inv_p, 2**lvl) > tol_inv) | (_texture_shift(inv_p, 2**lvl) > shift_px)
        if lvl > 1:
            sp |= _pool_any(split[lvl - 1])
        split.append(sp)
    # 2:1 balance: a split cell's edge neighbours must exist, i.e. their parents are split
    for lvl in range(1, max_level):
        sp = np.pad(split[lvl], 1)
        grown = split[lvl] | sp[:-2, 1:-1] | sp[2:, 1:-1] | sp[1:-1, :-2] | sp[1:-1, 2:]
        split[lvl + 1] |= _pool_any(grown)
    tris = []
    for lvl in range(max_level, 0, -1):
        exists = np.ones_like(split[lvl]) if lvl == max_level else np.kron(split[lvl + 1], np.ones((2, 2), bool))
        leaves = exists & ~split[lvl]
        tris.append(_cell_triangles(inv_p, leaves, split[lvl], 2**lvl, W))
    px = np.argwhere(np.kron(split[1], np.ones((2, 2), bool)))
    tris.append(_pixel_triangles(inv_p, valid_p, cp, px))
    faces = np.concatenate(tris).astype(np.int64)
    # counter-clockwise seen from the camera = negative signed area in image (x right, y down)
    fy, fx = faces // W, faces % W
    area = (fx[:, 1] - fx[:, 0]) * (fy[:, 2] - fy[:, 0]) - (fy[:, 1] - fy[:, 0]) * (fx[:, 2] - fx[:, 0])
    faces[area > 0] = faces[area > 0][:, ::-1]
    faces = faces[area != 0]
    ids, faces = np.unique(faces, return_inverse=True)
    faces = faces.reshape(-1, 3).astype(np.int32)
    grid_yx = np.stack([ids // W, ids % W], 1).astype(np.int32)
    alpha = np.full(len(ids), 255, np.uint8)
    if soft_edge is not None:
        alpha[soft_edge[grid_yx[:, 0], grid_yx[:, 1]]] = SOFT_ALPHA
    return LayerMesh(grid_yx, faces, alpha)


def grid_to_image(grid_yx: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Normalized image position (s, t) in [0, 1] of grid vertices (pixel centres, borders on the edge)."""
    h, w = shape
    s = (grid_yx[:, 1] + 0.5) / w
    t = (grid_yx[:, 0] + 0.5) / h
    s[grid_yx[:, 1] == 0], s[grid_yx[:, 1] == w - 1] = 0.0, 1.0
    t[grid_yx[:, 0] == 0], t[grid_yx[:, 0] == h - 1] = 0.0, 1.0
    return np.stack([s, t], 1)


def unproject(st: np.ndarray, inv: np.ndarray, focal: float, size: tuple[int, int]) -> np.ndarray:
    """3D points (camera at origin looking down -Z, +Y up) of image positions st with inverse depth inv.

    ``focal`` and ``size`` (width, height) in the same pixel units.
    """
    W, H = size
    z = 1.0 / inv
    x = (st[:, 0] * W - W / 2) / focal * z
    y = -(st[:, 1] * H - H / 2) / focal * z
    return np.stack([x, y, -z], 1).astype(np.float32)
