"""Straight lines stay straight: network depth made affine along the photo's long straight lines.

A straight line in the scene projects to a straight line in the photo, and along it inverse depth is
an affine function of the position (1/Z of a 3D line is affine in its image coordinate). A network's
depth wobbles along such lines (a facade's ribs, a beam, a door frame), and the 3D photo's views bend
them: at the viewer's extremes every pixel moves in proportion to its inverse depth, so a wobble of
the depth along a line is a wobble of the line. :func:`straighten_lines` finds the photo's long line
segments (OpenCV's LSD), samples the depth on each side of each segment a few pixels off it (each
side apart: a segment is often an occlusion edge, whose two sides lie at different depths), fits an
affine function of the position along it, and spreads the residuals (the fit minus the depth) over
the pixels around the segments with a Gaussian, a few times over. Sides whose depth is far from affine
(the segment crosses a real depth step, or is no scene line) are left as they are.

A thin straight object (a pole, a post, a mast: two parallel segments a few pixels apart, with the same
depth beyond both) has no depth of its own in a network's map: it takes what lies behind it, sky above
the horizon and a wall below, and the views kink it where that changes. :func:`straighten_strips` gives
it inverse depth affine along its length across its whole width, fitted to what the network gave it.
"""

from __future__ import annotations

import cv2
import numpy as np

OFFSETS = (1.5, 2.5, 3.5)  # working pixels off the segment at which each side's depth is sampled
MAX_RESIDUAL = 0.2  # a side whose depth departs from its affine fit by more (share of the map's range) is left alone ...
MAX_RESIDUAL_ONE_DEPTH = 0.3  # ... or by more than this along a line between surfaces at about one depth:
ONE_DEPTH = 0.15  # its sides' inverse depths differ by less than this share of the nearer (median along it) ...
END_STEP = 0.2  # ... and neither end lies where the map's range is this share of its value (a step) ...
STEP_REACH = 0.01  # ... within this share of the longer side
SPREAD = 0.013  # the residuals spread over the pixels around the segments: Gaussian sigma, share of the longer side
ITERATIONS = 3  # neighbouring segments' residuals mix in the spreading: fit again on the corrected depth
STRIP_ANGLE = 3.0  # degrees: two segments this parallel ...
STRIP_WIDTH = (2.0, 0.02)  # ... this far apart (pixels, and share of the longer side) bound a thin object ...
STRIP_TWIN = 0.03  # ... where the depth just beyond both edges agrees (share of the map's range): one background behind it
STRIP_MARGIN = 2  # pixels beyond its edges that go with it (the edges' mixed colour)
STRIP_ROW_ANGLE = 10.0  # degrees: ... and this parallel to it
STRIP_NEIGHBOUR = 0.04  # share of the longer side (or three widths): a parallel line this close beside it makes it one of a row
MERGE_PX = 1.5  # collinear pieces of one edge (LSD breaks an edge where what lies behind it changes) this close ...
MERGE_GAP = 0.05  # ... and this far apart at most (share of the longer side) are one edge


def line_segments(rgb: np.ndarray, min_len: float) -> np.ndarray:
    """(n, 4) float32 segments x1, y1, x2, y2 of the photo's straight lines at least ``min_len`` pixels long."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8:  # (LSD takes 8-bit grey)
        img = np.clip(img * (255.0 if img.dtype.kind == "f" and img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    gray = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    if min(gray.shape[:2]) < 8:
        return np.zeros((0, 4), np.float32)
    found = cv2.createLineSegmentDetector().detect(gray)[0]
    if found is None:
        return np.zeros((0, 4), np.float32)
    seg = found.reshape(-1, 4).astype(np.float32)
    return seg[np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]) >= min_len]


def _samples(seg: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample points (x, y), their position t along the segment and their group (one per segment,
    side and offset), one per pixel of length, inside the grid."""
    xs, ys, ts, gs = [], [], [], []
    g = 0
    for x1, y1, x2, y2 in seg:
        n = float(np.hypot(x2 - x1, y2 - y1))
        ux, uy = (x2 - x1) / n, (y2 - y1) / n
        t = np.arange(0.0, n, 1.0, dtype=np.float32)
        for side in (-1.0, 1.0):
            for off in OFFSETS:
                x = x1 + t * ux - side * off * uy
                y = y1 + t * uy + side * off * ux
                xs.append(x), ys.append(y), ts.append(t), gs.append(np.full(t.shape, g, np.int32))
                g += 1
    if not xs:
        return (np.zeros(0, np.float32),) * 3 + (np.zeros(0, np.int32),)
    x, y, t, grp = (np.concatenate(a) for a in (xs, ys, ts, gs))
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return x[inside], y[inside], t[inside], grp[inside]


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = img.shape
    x0 = np.minimum(np.floor(x).astype(np.int32), w - 2) if w > 1 else np.zeros(x.shape, np.int32)
    y0 = np.minimum(np.floor(y).astype(np.int32), h - 2) if h > 1 else np.zeros(y.shape, np.int32)
    fx, fy = x - x0, y - y0
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _profile(inv: np.ndarray, start: np.ndarray, u: np.ndarray, normal: np.ndarray, off: float, t: np.ndarray) -> np.ndarray:
    """``inv`` along the line ``start + t u``, ``off`` pixels toward ``normal`` (clipped to the map)."""
    h, w = inv.shape
    x = np.clip(start[0] + t * u[0] + off * normal[0], 0, w - 1).astype(np.float32)
    y = np.clip(start[1] + t * u[1] + off * normal[1], 0, h - 1).astype(np.float32)
    return _bilinear(inv, x, y)


def straighten_lines(inv: np.ndarray, rgb: np.ndarray, min_len: float) -> np.ndarray:
    """``inv`` (h×w inverse depth) made affine along the straight lines of ``rgb`` (the photo at the
    same size) at least ``min_len`` (share of the longer side) long, and across the thin straight objects
    as long (:func:`straighten_strips`); ``inv`` itself when there are none."""
    h, w = inv.shape
    side = max(h, w)
    pieces = line_segments(rgb, 0.5 * min_len * side) if min_len > 0 else np.zeros((0, 4), np.float32)
    seg = pieces[np.hypot(pieces[:, 2] - pieces[:, 0], pieces[:, 3] - pieces[:, 1]) >= min_len * side]
    out = _straighten_along(inv, seg)
    return straighten_strips(out, merge_collinear(pieces, MERGE_GAP * side), min_len * side)


def _straighten_along(inv: np.ndarray, seg: np.ndarray) -> np.ndarray:
    h, w = inv.shape
    side = max(h, w)
    x, y, t, grp = _samples(seg, h, w)
    if not len(x):
        return inv
    groups = int(grp.max()) + 1
    n = np.bincount(grp, minlength=groups).astype(np.float64)
    st = np.bincount(grp, t, groups)
    stt = np.bincount(grp, t * t, groups)
    det = n * stt - st * st
    usable = (n >= 10) & (det > 1e-9)
    pix = np.round(y).astype(np.int64) * w + np.round(x).astype(np.int64)
    # a segment between two surfaces at about one depth, neither end at a step of the map, is no
    # occlusion edge (a door's frame in its wall): a larger departure from affine along it is the
    # network's blob, and is straightened too (a facade's rib that ends at the sky is not: its end
    # lies in the sky's blurred step, and straightening pulled the facade's edge into spikes)
    one_depth = np.repeat(_one_depth(inv, seg), 2 * len(OFFSETS))[:groups]  # (groups: per segment, side, offset)
    limit = np.where(one_depth, MAX_RESIDUAL_ONE_DEPTH, MAX_RESIDUAL)
    sigma = max(1.0, SPREAD * side)
    one = 1.0 / (2 * np.pi * sigma * sigma)  # a single sample's weight at its own pixel after the blur
    out = inv.astype(np.float32).copy()
    for _ in range(ITERATIONS):
        v = _bilinear(out, x, y).astype(np.float64)
        sv, stv = np.bincount(grp, v, groups), np.bincount(grp, t * v, groups)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(usable, (n * stv - st * sv) / det, 0.0)
            icpt = np.where(usable, (sv - slope * st) / np.maximum(n, 1), 0.0)
        r = icpt[grp] + slope[grp] * t - v
        worst = np.zeros(groups)
        np.maximum.at(worst, grp, np.abs(r))
        span = float(out.max() - out.min())
        ok = (usable & (worst <= limit * max(span, 1e-6)))[grp]
        if not ok.any():
            break
        c = np.bincount(pix[ok], r[ok], h * w).reshape(h, w).astype(np.float32)
        wt = np.bincount(pix[ok], minlength=h * w).reshape(h, w).astype(np.float32)
        cb, wb = cv2.GaussianBlur(c, (0, 0), sigma), cv2.GaussianBlur(wt, (0, 0), sigma)
        # the mean residual around each pixel, at full strength within a sample's reach, fading beyond
        corr = np.where(wb > 1e-9, cb / np.maximum(wb, 1e-9), 0.0) * np.clip(wb / one, 0.0, 1.0)
        out += corr.astype(np.float32)
    return np.maximum(out, inv.min()).astype(np.float32) if np.isfinite(out).all() else inv


def _one_depth(inv: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """For each segment, whether the inverse depth on its two sides (``OFFSETS``' middle one off it)
    differs by less than ``ONE_DEPTH`` of the nearer side's (median along it), and the map's range
    around each of its ends (``STEP_REACH``) is under ``END_STEP`` of its largest value there."""
    h, w = inv.shape
    side = max(h, w)
    k = 2 * max(1, int(STEP_REACH * side)) + 1
    hi = cv2.dilate(inv, np.ones((k, k), np.uint8))
    step = (hi - cv2.erode(inv, np.ones((k, k), np.uint8))) >= END_STEP * np.maximum(hi, 1e-6)
    off = OFFSETS[len(OFFSETS) // 2]
    out = np.zeros(len(seg), bool)
    seg = np.asarray(seg, np.float64).reshape(-1, 4)
    u, n = _directions(seg)
    for i, (x1, y1, x2, y2) in enumerate(seg):
        if any(step[min(h - 1, max(0, round(yy))), min(w - 1, max(0, round(xx)))] for xx, yy in ((x1, y1), (x2, y2))):
            continue
        t, normal = np.arange(0.0, n[i], 1.0), np.array([-u[i, 1], u[i, 0]])
        a, b = (_profile(inv, seg[i, 0:2], u[i], normal, s * off, t) for s in (-1.0, 1.0))
        out[i] = float(np.median(np.abs(a - b) / np.maximum(np.maximum(a, b), 1e-6))) < ONE_DEPTH
    return out


def _directions(seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = (seg[:, 2:4] - seg[:, 0:2]).astype(np.float64)
    n = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    return d / n[:, None], n


def _pairs(seg: np.ndarray) -> tuple[np.ndarray, ...]:
    """For every pair (i, j) of segments at once, j's end points against i's line: their offsets
    across it (o1, o2, signed along i's normal), their positions along it (t1, t2, from i's start),
    and the sine of the angle between the two (``cross``); also each segment's direction, normal and
    length."""
    u, n = _directions(seg)
    nrm = np.stack([-u[:, 1], u[:, 0]], 1)
    a, p = seg[:, None, 0:2], seg[None, :, :]
    o1, o2 = ((p[..., 0:2] - a) * nrm[:, None]).sum(-1), ((p[..., 2:4] - a) * nrm[:, None]).sum(-1)
    t1, t2 = ((p[..., 0:2] - a) * u[:, None]).sum(-1), ((p[..., 2:4] - a) * u[:, None]).sum(-1)
    cross = np.abs(u[:, None, 0] * u[None, :, 1] - u[:, None, 1] * u[None, :, 0])
    return u, nrm, n, o1, o2, t1, t2, cross


def merge_collinear(seg: np.ndarray, max_gap: float) -> np.ndarray:
    """``seg`` with the collinear pieces of one edge joined (within ``MERGE_PX`` of each other's line,
    ``STRIP_ANGLE`` of each other's direction, at most ``max_gap`` apart along it): LSD breaks a pole's
    edge where the background behind it changes, at the very place its depth does."""
    seg = np.asarray(seg, np.float64).reshape(-1, 4)
    if len(seg) < 2:
        return seg
    u, _, n, o1, o2, t1, t2, cross = _pairs(seg)
    gap = np.maximum(np.minimum(t1, t2) - n[:, None], -np.maximum(t1, t2))
    join = (cross <= np.sin(np.radians(STRIP_ANGLE))) & (np.maximum(np.abs(o1), np.abs(o2)) <= MERGE_PX) & (gap <= max_gap)
    join &= join.T
    parent = np.arange(len(seg))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(join, 1))):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(len(seg)):
        groups.setdefault(root(i), []).append(i)
    out = []
    for members in groups.values():
        k = max(members, key=lambda i: n[i])  # along the longest piece's line
        ends = np.concatenate([seg[members, 0:2], seg[members, 2:4]])
        t = (ends - seg[k, 0:2]) @ u[k]
        out.append(np.concatenate([seg[k, 0:2] + t.min() * u[k], seg[k, 0:2] + t.max() * u[k]]))
    return np.asarray(out, np.float64).reshape(-1, 4)


def thin_strips(inv: np.ndarray, seg: np.ndarray, min_len: float) -> list[tuple[np.ndarray, ...]]:
    """The strips (corner, direction, normal, length, width) between two parallel segments ``STRIP_WIDTH``
    apart along at least ``min_len`` pixels (and half the shorter one) whose depth just beyond both edges
    agrees and which the depth does not put behind that: the outline of a thin object in front of one
    background (not a band between two surfaces, nor a groove). One of a row of such lines is left out."""
    side = max(inv.shape)
    seg = np.asarray(seg, np.float64).reshape(-1, 4)
    if len(seg) < 2:
        return []
    span = max(float(inv.max() - inv.min()), 1e-6)
    u, nrm, n, o1, o2, t1, t2, cross = _pairs(seg)
    width = np.abs(o1 + o2) / 2
    overlap = np.minimum(n[:, None], np.maximum(t1, t2)) - np.maximum(0.0, np.minimum(t1, t2))
    cand = (cross <= np.sin(np.radians(STRIP_ANGLE))) & (o1 * o2 > 0) & (width >= STRIP_WIDTH[0]) & (width <= STRIP_WIDTH[1] * side)
    row = cross <= np.sin(np.radians(STRIP_ROW_ANGLE))  # (a facade's ribs seen in perspective fan out)
    cand &= overlap >= np.maximum(min_len, 0.5 * np.minimum(n[:, None], n[None, :]))
    out = []
    for i, j in zip(*np.nonzero(np.triu(cand, 1))):
        length, wij = overlap[i, j], width[i, j]
        # one of a row of parallel lines (a facade's ribs, a fence's slats): a pattern on a surface, not
        # one thin object in front of what lies behind it
        beside = (o1[i] + o2[i]) / 2 * np.sign(o1[i, j])
        reach = max(3.0 * wij, STRIP_NEIGHBOUR * side)
        near = ((beside < 0) & (beside >= -reach)) | ((beside > wij + 1.0) & (beside <= wij + reach))
        if (row[i] & near & (overlap[i] >= 0.5 * length)).any():
            continue
        normal = nrm[i] * np.sign(o1[i, j])
        corner = seg[i, 0:2] + max(0.0, min(t1[i, j], t2[i, j])) * u[i]
        t = np.arange(0.0, length, 1.0)
        beyond = [_profile(inv, corner, u[i], normal, off, t) for off in (-STRIP_MARGIN - 1.0, wij + STRIP_MARGIN + 1.0)]
        outside, inside = (beyond[0] + beyond[1]) / 2, _profile(inv, corner, u[i], normal, 0.5 * wij, t)
        # one background on both sides, and the strip not read as farther than it: a groove (the dark gap
        # between two boards, read as far) is no object in front of anything
        if np.median(np.abs(beyond[0] - beyond[1])) <= STRIP_TWIN * span and np.median(inside - outside) >= 0:
            out.append((corner, u[i], normal, length, wij))
    return out


def straighten_strips(inv: np.ndarray, seg: np.ndarray, min_len: float) -> np.ndarray:
    """``inv`` made affine along each thin straight object (:func:`thin_strips` of ``seg``, joined where
    they overlap in one direction) across its width and ``STRIP_MARGIN`` beyond: a least-squares fit to
    the depth the network gave its pixels, over its whole length. A bundle of parallel lines wider than
    a thin object (a window's bars) is left alone."""
    h, w = inv.shape
    side = max(h, w)
    strips = thin_strips(inv, seg, min_len)
    if not strips:
        return inv
    buckets = 12  # directions, 15 degrees each: strips of one object joined, a cross's two bars apart
    core = np.zeros((buckets, h, w), np.uint8)  # the strips (fitted) ...
    wide = np.zeros((buckets, h, w), np.uint8)  # ... and their edges' pixels beyond (moved with them)
    sums = np.zeros((buckets, 2))
    m = STRIP_MARGIN
    for corner, u, normal, length, width in strips:
        if length <= 4 * m:
            continue
        b = int((np.arctan2(u[1], u[0]) % np.pi) / np.pi * buckets) % buckets
        # not beyond its ends: where a line meets an object in front (a grain line running into a fruit),
        # the pixels past its end are that object's
        a0, a1 = corner + m * u, corner + (length - m) * u
        for mask, lo, hi in ((core[b], 0.0, width), (wide[b], -m, width + m)):
            quad = np.array([a0 + lo * normal, a1 + lo * normal, a1 + hi * normal, a0 + hi * normal])
            cv2.fillConvexPoly(mask, np.round(quad).astype(np.int32), 1)
        sums[b] += (u if u @ sums[b] >= 0 else -u) * length
    acc = np.zeros((h, w), np.float64)
    count = np.zeros((h, w), np.float64)
    for b in np.nonzero(sums.any(1))[0]:
        u = sums[b] / np.hypot(*sums[b])
        n_lab, lab, stats, _ = cv2.connectedComponentsWithStats(wide[b], connectivity=8)
        for c in range(1, n_lab):
            x0, y0, bw, bh, area = stats[c]
            box = (slice(y0, y0 + bh), slice(x0, x0 + bw))
            mine = lab[box] == c
            ys, xs = np.nonzero(mine & (core[b][box] > 0))
            if len(ys) < 20:
                continue
            ys, xs = ys + y0, xs + x0
            if np.ptp(ys * u[0] - xs * u[1]) > STRIP_WIDTH[1] * side + 2:
                continue  # a bundle of parallel lines (a window's bars) rather than one thin object
            slope, icpt = np.polyfit(xs * u[0] + ys * u[1], inv[ys, xs].astype(np.float64), 1)
            by, bx = np.nonzero(mine)
            by, bx = by + y0, bx + x0
            acc[by, bx] += icpt + slope * (bx * u[0] + by * u[1])
            count[by, bx] += 1
    if not count.any():
        return inv
    out = inv.astype(np.float32).copy()
    sel = count > 0
    out[sel] = (acc[sel] / count[sel]).astype(np.float32)
    return np.maximum(out, inv.min()) if np.isfinite(out).all() else inv
