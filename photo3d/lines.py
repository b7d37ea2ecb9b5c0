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
"""

from __future__ import annotations

import cv2
import numpy as np

OFFSETS = (1.5, 2.5, 3.5)  # working pixels off the segment at which each side's depth is sampled
MAX_RESIDUAL = 0.2  # a side whose depth departs from its affine fit by more (share of the map's range) is left alone
SPREAD = 0.013  # the residuals spread over the pixels around the segments: Gaussian sigma, share of the longer side
ITERATIONS = 3  # neighbouring segments' residuals mix in the spreading: fit again on the corrected depth


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


def straighten_lines(inv: np.ndarray, rgb: np.ndarray, min_len: float) -> np.ndarray:
    """``inv`` (h×w inverse depth) made affine along the straight lines of ``rgb`` (the photo at the
    same size) at least ``min_len`` (share of the longer side) long; ``inv`` itself when there are none."""
    h, w = inv.shape
    side = max(h, w)
    seg = line_segments(rgb, min_len * side) if min_len > 0 else np.zeros((0, 4), np.float32)
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
        ok = (usable & (worst <= MAX_RESIDUAL * max(span, 1e-6)))[grp]
        if not ok.any():
            break
        c = np.bincount(pix[ok], r[ok], h * w).reshape(h, w).astype(np.float32)
        wt = np.bincount(pix[ok], minlength=h * w).reshape(h, w).astype(np.float32)
        cb, wb = cv2.GaussianBlur(c, (0, 0), sigma), cv2.GaussianBlur(wt, (0, 0), sigma)
        # the mean residual around each pixel, at full strength within a sample's reach, fading beyond
        corr = np.where(wb > 1e-9, cb / np.maximum(wb, 1e-9), 0.0) * np.clip(wb / one, 0.0, 1.0)
        out += corr.astype(np.float32)
    return np.maximum(out, inv.min()).astype(np.float32) if np.isfinite(out).all() else inv
