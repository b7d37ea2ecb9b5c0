"""Per-layer triangulation of a depth grid: adaptive, crack-free, cut at discontinuities.

A restricted (2:1 balanced) quadtree over the vertex grid: a cell stays whole while the bilinear
approximation of its inverse depth moves no point by more than ``tol_px`` at full parallax and it
holds no cut and no invalid vertex; otherwise it is split down to single pixels.  Leaves are
fan-triangulated toward finer neighbours, so there are no T-junctions (no cracks).  Pixel cells
touching a cut keep only the triangles none of whose edges crosses a discontinuity; with skirts,
the near side draws the rest up to the photo's edge, its silhouette placed by vertex alpha.

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
# the share of a cut edge the near side's soft edge covers where the photo does not tell where its edge lies (_skirts)
SKIRT_REACH = 0.5


@dataclass
class LayerMesh:
    grid_yx: np.ndarray  # (n, 2) int32: grid position of each vertex
    faces: np.ndarray  # (m, 3) int32, counter-clockwise seen from the camera
    alpha: np.ndarray  # (n,) uint8: 255, but along the cuts' soft edges (see _skirts)
    inv: np.ndarray  # (n,) float32: inverse depth of each vertex (a skirt's outer vertices: its side's)

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
    tris, keep, _ = _pixel_split(inv, valid, cuts, cells)
    return np.concatenate([t[k] for t, k in zip(tris, keep)])


def _pixel_split(inv, valid, cuts: Cuts, cells: np.ndarray) -> tuple[list[np.ndarray], ...]:
    """The two triangles of the diagonal each single-pixel cell is split along (the diagonal that
    keeps more of them whole, else the one across the smaller depth change), each as (k, 3)
    grid-flat vertex ids, whether it is kept (valid and crossing no cut), and which of its edges
    (v0-v1, v1-v2, v2-v0) cross no cut."""
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
    ad_ = use_ad[:, None]
    first = np.where(ad_, np.stack([a, c, d], 1), np.stack([a, c, b], 1))
    second = np.where(ad_, np.stack([a, d, b], 1), np.stack([b, c, d], 1))
    links = [np.where(ad_, np.stack([ac, cd, ad], 1), np.stack([ac, bc, ab], 1)),
             np.where(ad_, np.stack([ad, bd, ab], 1), np.stack([bc, cd, bd], 1))]
    return [first, second], [np.where(use_ad, t1, t3), np.where(use_ad, t2, t4)], links


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
    max_level: int | None = None,
    shift_px: float = TEXTURE_SHIFT_PX,
    skirt: bool = False,
    rgb: np.ndarray | None = None,
) -> LayerMesh:
    """Adaptive triangulation of the vertex grid ``inv`` (h, w) restricted to ``valid`` vertices.

    ``cuts``: grid edges not to connect (None = none).  ``tol_inv``: largest inverse-depth error a
    merged cell may make.  ``shift_px``: largest texture shift (grid pixels) a merged cell may make
    (:func:`_texture_shift`).  ``skirt``: soft edges along the cuts (:func:`_skirts`), placed by the
    photo ``rgb`` at the grid's size.
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
    pairs, keep, links = _pixel_split(inv_p, valid_p, cp, px)
    tris += [t[k] for t, k in zip(pairs, keep)]
    n = H * W
    if skirt:
        rgb_p = None if rgb is None else _pad(rgb.astype(np.float32), (H, W) + rgb.shape[2:], 0.0)
        sk_faces, extra, reach = _skirts(inv_p, valid_p, np.concatenate(pairs), ~np.concatenate(keep),
                                         np.concatenate(links), W, rgb_p)
        tris.append(sk_faces)
    faces = np.concatenate(tris).astype(np.int64)
    # counter-clockwise seen from the camera = negative signed area in image (x right, y down)
    fy, fx = faces % n // W, faces % W
    area = (fx[:, 1] - fx[:, 0]) * (fy[:, 2] - fy[:, 0]) - (fy[:, 1] - fy[:, 0]) * (fx[:, 2] - fx[:, 0])
    faces[area > 0] = faces[area > 0][:, ::-1]
    faces = faces[area != 0]
    ids, faces = np.unique(faces, return_inverse=True)
    faces = faces.reshape(-1, 3).astype(np.int32)
    cell = ids % n
    grid_yx = np.stack([cell // W, cell % W], 1).astype(np.int32)
    alpha = np.full(len(ids), 255, np.uint8)
    vinv = inv_p.ravel()[cell].astype(np.float32)
    if skirt:  # the skirts' alpha crosses one half where the photo's edge lies (reach, see _skirts)
        outer = ids >= n
        rv = reach[ids]
        r = np.nan_to_num(rv)
        a_near = np.round(127.5 / np.maximum(1.0 - r, 0.5))
        a_copy = np.round(np.maximum(0.0, 255.0 - 127.5 / np.maximum(r, 0.5)))
        alpha = np.where(np.isnan(rv), alpha, np.where(outer, a_copy, a_near)).astype(np.uint8)
        vinv[outer] = extra[ids[outer] - n]
    return LayerMesh(grid_yx, faces, alpha, vinv)


def _skirts(inv, valid, tris: np.ndarray, dropped: np.ndarray, links: np.ndarray, W: int,
            rgb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A soft edge on the near side of every cut: each single-pixel triangle left out because it
    crosses a cut is drawn by its near side, its vertices beyond the cut replaced by copies at the
    near side's depth with alpha 0 (ids ``n + id``, ``n`` = grid size).  The alpha test at one half
    puts the silhouette between the near corners and the copies, where the near corners' alpha
    says: at the photo's own edge (``rgb``: on each cut edge N-F, with A one pixel inside N and B
    one beyond F, the far colour's shares m_N and m_F of a box-filtered step give its position
    1.5 - m_N - m_F pixels from N, within the edge), the whole edge where the photo is plain around
    it, ``SKIRT_REACH`` where nothing tells; each near corner and each copy takes the position
    nearest to the near side among its edges.  So the silhouette runs through the cut edges, not along a
    staircase of pixels; the pixels of mixed colour up to the edge move with the foreground, and no
    far colour does (a fringe); from the photo's own viewpoint the background layer shows on less
    of the seam.  (The far side drawing the rest carried the
    foreground's mixed colour as an outline on the background.)  Returns the faces, the inverse
    depth of the copies (indexed by id - n) and each grid vertex's reach (NaN: no skirt)."""
    n = valid.size
    sel = dropped & valid.ravel()[tris].all(1)
    t, links = tris[sel], links[sel]  # links[:, k]: the edge from vertex k to vertex k + 1 crosses no cut
    d = inv.ravel()[t]
    near = np.argmax(d, 1)
    i = np.arange(len(t))
    o1, o2 = (near + 1) % 3, (near + 2) % 3
    l_n1, l_12, l_2n = links[i, near], links[i, o1], links[i, o2]
    group = np.zeros(t.shape, bool)  # joined to the nearest vertex without crossing a cut
    group[i, near] = True
    group[i, o1] = l_n1 | (l_2n & l_12)
    group[i, o2] = l_2n | (l_n1 & l_12)
    ok = ~group.all(1) & (np.where(group, -np.inf, d).max(1) < np.where(group, d, np.inf).min(1))
    t, group, d = t[ok], group[ok], d[ok]
    near_inv = np.where(group, d, -np.inf).max(1)
    extra = np.full(n, np.nan, np.float32)
    pick = np.broadcast_to(np.arange(len(t))[:, None], t.shape)
    np.fmax.at(extra, t[~group], near_inv[pick[~group]])  # a copy shared by two cells: the nearer
    reach = np.full(2 * n, np.nan, np.float32)  # near corners' (by id), then the copies' (by id - n)
    # every (near, far) corner pair of the skirts
    k, j, l = np.nonzero(group[:, :, None] & ~group[:, None, :])
    pn, pf = t[k, j], t[k, l]
    e = _edge_reach(rgb, valid, pn, pf, W)
    np.fmin.at(reach, pn, e)
    np.fmin.at(reach, n + pf, e)
    return np.where(group, t, n + t), extra, reach


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


SKIRT_PLAIN = 12.0  # the photo no farther apart than this around a cut edge (8-bit RGB distance): plain there


def _edge_reach(rgb: np.ndarray | None, valid: np.ndarray, pn: np.ndarray, pf: np.ndarray, W: int) -> np.ndarray:
    """Where the photo's edge lies on each grid edge from near vertex ``pn`` to far vertex ``pf``,
    as a share of the edge from ``pn`` in [0, 1] (see :func:`_skirts`): 1 where the photo is
    plain around it, ``SKIRT_REACH`` where it does not tell."""
    out = np.full(len(pn), SKIRT_REACH, np.float32)
    if rgb is None or not len(pn):
        return out
    H = valid.shape[0]
    yn, xn, yf, xf = pn // W, pn % W, pf // W, pf % W
    ya, xa, yb, xb = 2 * yn - yf, 2 * xn - xf, 2 * yf - yn, 2 * xf - xn
    ia = (ya >= 0) & (ya < H) & (xa >= 0) & (xa < W)
    ib = (yb >= 0) & (yb < H) & (xb >= 0) & (xb < W)
    ya, xa, yb, xb = np.where(ia, ya, yn), np.where(ia, xa, xn), np.where(ib, yb, yf), np.where(ib, xb, xf)
    known = ia & ib & valid[ya, xa] & valid[yb, xb]
    c = np.stack([rgb[ya, xa], rgb[yn, xn], rgb[yf, xf], rgb[yb, xb]])  # A, N, F, B
    ab = c[3] - c[0]
    ab2 = (ab * ab).sum(1)
    spread = np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1).max(axis=(0, 1)))
    told = known & (ab2 >= SKIRT_PLAIN**2)
    share = np.clip(((c[1:3] - c[0]) * ab).sum(2) / np.maximum(ab2, 1e-6), 0.0, 1.0)  # the far colour's, in N and F
    out[told] = np.clip(1.5 - share[0] - share[1], 0.0, 1.0)[told]
    out[known & (spread < SKIRT_PLAIN)] = 1.0
    return out
