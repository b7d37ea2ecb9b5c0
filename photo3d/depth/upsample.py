"""Edge-aware upsampling of a low-resolution depth map, guided by the full-resolution photo.

We use the colour guided filter of He, Sun & Tang (ECCV 2010 / TPAMI 2013) in its "fast" form
(He & Sun, 2015): the local linear model q = a·I + b is fitted at a working resolution (the photo
reduced to at most ``2 × model size``), the coefficient maps a, b are box-averaged, bilinearly
upsampled to the photo's size and applied to the full-resolution photo I.  Depth edges therefore
follow colour edges of the photo, while flat regions get a smooth (de-quantized) depth: the INT8
network outputs only 256 log-disparity levels, so plain bilinear upsampling leaves exact ties
between neighbouring pixels on either side of many depth edges.

The filter runs on log-disparity (the network's own output), so its linear model is scale-free.
Radii are given in pixels of the low-resolution map (scaled to the working resolution); eps = 1e-3
for colours in [0, 1] (edges with a contrast above ~3 % are kept).  A network blurs its depth edges
over several of its own pixels, so its output is filtered with windows of ``NETWORK_RADIUS`` = 8: a
window must reach past the blur to both flat sides for the colour edge to decide where the step
goes.  On the 14 dev scenes the bundled model's edge-order is 0.745 / 0.753 / 0.756 / 0.761 / 0.762 /
0.762 / 0.759 / 0.742 at radius 2 / 4 / 6 / 8 / 10 / 12 / 16 / 24 (8 is the smallest radius of the
plateau: larger windows print more of the photo's texture into the map), and its hold-out agreement
is unchanged.  Measured maps (depth a photo carries) have sharp edges and keep ``DEFAULT_RADIUS``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

DEFAULT_RADIUS = 4  # in pixels of the low-resolution map (a measured depth map's)
NETWORK_RADIUS = 8  # ... of a network's output, whose edges are blurred (see above)
DEFAULT_EPS = 1e-3  # regularisation, colour in [0, 1]


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_coefficients(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Box-averaged coefficients (a: H×W×3, b: H×W) of the colour guided filter."""
    if not eps > 0:  # (the per-pixel solve below needs a regular covariance: a flat guide has none)
        raise ValueError(f"eps must be positive, not {eps}")
    I = guide.astype(np.float32)
    p = src.astype(np.float32)
    r = int(radius)
    mean_I = [_box(I[..., k], r) for k in range(3)]
    mean_p = _box(p, r)
    cov = [(_box(I[..., k] * p, r) - mean_I[k] * mean_p).astype(np.float64) for k in range(3)]

    def var(i: int, j: int) -> np.ndarray:
        v = (_box(I[..., i] * I[..., j], r) - mean_I[i] * mean_I[j]).astype(np.float64)
        return v + eps if i == j else v

    # the 3x3 covariance (+ eps) solved per pixel by its adjugate (symmetric; float64)
    s00, s01, s02, s11, s12, s22 = var(0, 0), var(0, 1), var(0, 2), var(1, 1), var(1, 2), var(2, 2)
    c00, c01, c02 = s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11
    c11, c12, c22 = s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01
    inv_det = 1.0 / (s00 * c00 + s01 * c01 + s02 * c02)
    a = np.stack([(c00 * cov[0] + c01 * cov[1] + c02 * cov[2]) * inv_det,
                  (c01 * cov[0] + c11 * cov[1] + c12 * cov[2]) * inv_det,
                  (c02 * cov[0] + c12 * cov[1] + c22 * cov[2]) * inv_det], axis=-1).astype(np.float32)
    b = mean_p - (a[..., 0] * mean_I[0] + a[..., 1] * mean_I[1] + a[..., 2] * mean_I[2])
    mean_a = np.stack([_box(a[..., k], r) for k in range(3)], axis=-1)
    return mean_a, _box(b, r)


def _resize(x: np.ndarray, size_wh: tuple[int, int], area: bool = False) -> np.ndarray:
    if (x.shape[1], x.shape[0]) == tuple(size_wh):
        return x
    interp = cv2.INTER_AREA if area and x.shape[1] > size_wh[0] else cv2.INTER_LINEAR
    return cv2.resize(x, size_wh, interpolation=interp)


def guided_upsample(
    low: np.ndarray,
    rgb: np.ndarray,
    radius: int = DEFAULT_RADIUS,
    eps: float = DEFAULT_EPS,
    max_work_side: int | None = None,
) -> np.ndarray:
    """Upsample ``low`` (h×w float, e.g. log-disparity) to ``rgb``'s size (H×W×3 uint8), edge-aware.

    ``radius`` is given in pixels of ``low``; ``max_work_side`` caps the working resolution
    (default: twice the longer side of ``low``).
    """
    H, W = rgb.shape[:2]
    h, w = low.shape[:2]
    if max_work_side is None:
        max_work_side = 2 * max(h, w)
    s = min(1.0, max_work_side / max(H, W))
    ww, wh = max(1, round(W * s)), max(1, round(H * s))
    # radius scaled from the network's pixels to the working resolution
    r = max(1, math.ceil(radius * max(ww / w, wh / h)))
    r = min(r, max(1, (min(ww, wh) - 1) // 2))
    if (ww, wh) == (W, H):
        guide = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
        p = _resize(low.astype(np.float32), (W, H))
        a, b = guided_coefficients(guide, p, r, eps)
        return (np.einsum("hwc,hwc->hw", a, guide) + b).astype(np.float32)
    guide = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA).astype(np.float32) * np.float32(1.0 / 255.0)
    p = _resize(low.astype(np.float32), (ww, wh))
    a, b = guided_coefficients(guide, p, r, eps)
    return _apply_upsampled(np.dstack([a, b]).astype(np.float32), rgb)


REMAP_COLUMNS = 16384  # cv2.remap's output is narrower than 32,767 px (SHRT_MAX): wider photos go in tiles


def _apply_upsampled(ab: np.ndarray, rgb: np.ndarray, band: int = 256) -> np.ndarray:
    """q = a·I + b at the photo's resolution, with a, b (``ab``: h×w×4) bilinearly upsampled.

    Works in bands of rows (and tiles of ``REMAP_COLUMNS`` columns, for a panorama 32,767 px wide
    or more) so a 100 MP photo never needs a full-size float copy of itself.
    Sampling positions are those of ``cv2.resize(..., INTER_LINEAR)`` (pixel centres aligned).
    """
    H, W = rgb.shape[:2]
    h, w = ab.shape[:2]
    out = np.empty((H, W), np.float32)
    map_x = ((np.arange(W, dtype=np.float64) + 0.5) * (w / W) - 0.5).astype(np.float32)
    inv = np.float32(1.0 / 255.0)
    for y0 in range(0, H, band):
        y1 = min(H, y0 + band)
        ys = ((np.arange(y0, y1, dtype=np.float64) + 0.5) * (h / H) - 0.5).astype(np.float32)
        for x0 in range(0, W, REMAP_COLUMNS):
            x1 = min(W, x0 + REMAP_COLUMNS)
            mx = np.ascontiguousarray(np.broadcast_to(map_x[x0:x1], (y1 - y0, x1 - x0)))
            my = np.ascontiguousarray(np.broadcast_to(ys[:, None], (y1 - y0, x1 - x0)))
            c = cv2.remap(ab, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            g = rgb[y0:y1, x0:x1].astype(np.float32)
            q = c[..., 3]
            for k in range(3):
                q += c[..., k] * g[..., k] * inv
            out[y0:y1, x0:x1] = q
    return out


def bilinear_upsample(low: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    return cv2.resize(low.astype(np.float32), size_wh, interpolation=cv2.INTER_LINEAR)
