"""Depth discontinuities -> layered depth image (LDI).

Works on *inverse depth* ``inv = 1/Z`` at the working resolution.  A neighbouring pixel pair is
cut where the inverse-depth jump is large relative to the nearer side (``rel_jump``) and opens a
hole of at least ``min_jump_px`` pixels at the viewer's full parallax.  A cut segment is kept only
where the step is real: at least ``min_edge_len`` pixels long, opening ``min_segment_px`` pixels on
average, and (with the photo) following a colour edge along most of its length.  Fragments of the
visible layer that the cuts would cut out but that are small (``min_island``) or thin
(``min_width_px``) are merged into their surroundings (their depth takes the nearest surrounding
value), so an object's visible layer has no holes and no flecks float in front of anything.
For network depth, far grooves narrower than ``close_px`` (dark wood grain, cracks, seams that a
network reads as farther) first take the depth around them (a morphological closing), so they
never tear the surface they lie in, and pockets behind their surroundings (up to ``pocket``, four times an
island) are merged even where only part of their border would be kept as a cut (:func:`far_pockets`).
Network depth's edges are snapped onto the photo's colour edges (:func:`snap_edges`); where a kept
cut lies on a ramp wider than that window, the ramp is snapped to its plateaus' colours over
``ramp_px`` (:func:`snap_ramps`) and the cuts are decided again, there only.  A kept cut that sees a
colour edge across it at under ``edge_share`` of its step is not cut at all, nor are its stretches
with one under a third of theirs (:func:`unsupported_cuts`): it wanders off the edge and back, and
would tear jagged fragments.

The LDI has two layers: the visible layer (the whole photo, cut at the discontinuities) and a
background layer that extends the far side of every discontinuity behind the foreground, as far
as the parallax can reveal (``hole``).  ``inpaint_mask`` is the region :mod:`photo3d.inpaint`
must synthesize without reading foreground pixels (the hole plus enough foreground around it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .lines import straighten_lines


SHARP_MAP = 0.6  # a depth map whose steps are this crisp (see is_sharp_map) is used as it is
COARSE_MAP = 1.5  # ... unless it is upsampled by more than this to the working grid: then snapped like a network's
MIXED_FG = 9.0  # a far-band pixel at least a quarter foreground colour (squared distances 0.75² : 0.25²) goes with it
MIN_SPLIT = 20.0  # near/far colour classes at a kept cut at least this far apart (8-bit CIELAB) to move pixels
MIXED_TINT = 10.0  # ... or tinted toward the foreground by this much (8-bit CIELAB, ~4 ΔE: a visible line once moved)
HALO_TINT = 6.0  # a sharpening halo beyond the band differs this much from the background beyond (8-bit CIELAB) ...
HALO_COS = 0.5  # ... within 60° of the direction away from the foreground's colour
BLEED_TINT = 4.0  # ... or its hue alone tinted toward the foreground's by this much (JPEG's coarser colour)
MID_STRIP_PX = 2  # middle_strips: a strip between two cuts this thin at an intermediate depth goes to the far side
LOCAL_SHARE = 1 / 3  # unsupported_cuts: a stretch of a kept cut with a colour edge across under this share of its step


@dataclass(frozen=True)
class LayerParams:
    rel_jump: float = 0.06  # cut where |inv jump| > rel_jump * nearer inv ...
    min_jump_px: float = 2.0  # ... and the jump opens at least this many pixels at full parallax
    min_edge_len: int = 20  # drop discontinuity segments with fewer pixels than this
    margin_px: int = 3  # background band beyond the largest parallax
    smooth_sigma: float = 1.5  # edge-preserving smoothing before edge detection (working pixels)
    sharpen_iters: int = 2  # snap blurred depth edges to steps (toggle filter) this many times
    min_edge_contrast: float = 12.0  # with the photo: mean CIELAB contrast a kept segment needs ...
    min_supported: float = 0.6  # ... and the share of its pixels that see at least half of it
    min_segment_px: float = 6.0  # a kept segment opens at least this many pixels on average ...
    support_px: int = 7  # ... judged over every stretch of 2 * support_px + 1 pixels along it
    min_island: float = 0.0015  # fragments of the visible layer smaller than this share of the image merge
    min_width_px: float = 2.0  # ... and those with no pixel this far inside them (slivers)
    pocket: float = 0.006  # network depth: a fragment behind all around it smaller than this share of the image takes their depth
    far_band_px: int = 2  # far-side pixels of a cut whose colour the background layer may re-synthesize
    halo_px: int = 6  # ... and up to this far from the cut, a sharpening halo the inpainting does not read
    sharp_band_px: int = 1  # a sharp depth map's far band: the photo's anti-aliased rim beyond its edges
    snap_radius: int = 4  # colour-guided edge snapping window (0 = off), working pixels
    snap_iters: int = 3
    ramp_px: int = 10  # ... after network depth's wide ramps at kept cuts, over this radius (snap_ramps; 0 = off)
    close_px: int = 7  # network depth: far gaps narrower than this (working pixels) take the depth around them
    strip_px: int = 3  # an intermediate strip at an edge this narrow is skipped: the background lies behind it
    reach_px: int = 8  # with the photo: near-side pixels this close to a kept cut, of the far side's colour, go to it
    thin_px: int = 12  # with the photo: a cut whose far side is a strip this thin with the near side's colour beyond is not cut
    edge_share: float = 0.67  # with the photo: a kept cut with a colour edge across under this share of its step is not cut (0 = off)
    edge_px: int = 3  # ... nor its stretches (within this many pixels) with one across under a third of theirs (0 = off)
    excerpt: float = 0.15  # with the photo: a kept cut under this share of the step it lies on is not cut (0 = off)
    straight_len: float = 0.08  # with the photo: depth made affine along its straight lines this long (share of the longer side; 0 = off)


@dataclass
class Cuts:
    """Cut flags of the grid edges between neighbouring pixels (True = do not connect)."""

    h: np.ndarray  # (h, w-1): (y, x) - (y, x+1)
    v: np.ndarray  # (h-1, w): (y, x) - (y+1, x)
    d1: np.ndarray  # (h-1, w-1): (y, x) - (y+1, x+1)
    d2: np.ndarray  # (h-1, w-1): (y, x+1) - (y+1, x)

    def count(self) -> int:
        return int(self.h.sum() + self.v.sum())


@dataclass
class LayeredDepth:
    inv: np.ndarray  # (h, w) float32 cleaned inverse depth of the visible layer
    cuts: Cuts  # discontinuities of the visible layer
    near: np.ndarray  # (h, w) bool: near side of a kept discontinuity
    far: np.ndarray  # (h, w) bool: far side of a kept discontinuity
    hole: np.ndarray  # (h, w) bool: hidden background the background layer must cover
    inpaint_mask: np.ndarray  # (h, w) bool: hole + foreground context that inpainting must not read
    bg_seed: np.ndarray  # (h, w) float32: inverse depth of the background behind each pixel

    @property
    def num_layers(self) -> int:
        return 2 if self.hole.any() else 1


def sanitize_inverse_depth(inv: np.ndarray) -> np.ndarray:
    """Replace NaN/inf/non-positive values by their neighbours' (all finite, > 0 afterwards)."""
    inv = np.asarray(inv, dtype=np.float32)
    bad = ~np.isfinite(inv) | (inv <= 0)
    if not bad.any():
        return inv.copy()
    good = ~bad
    if not good.any():
        return np.ones_like(inv)
    _, out = nearest_values(good, inv, mask_size=3)  # each bad pixel: its nearest good neighbour's value
    return out


def clean_inverse_depth(inv: np.ndarray, params: LayerParams = LayerParams(), sharpen: bool = True,
                        shift_px_per_inv: float = 0.0) -> np.ndarray:
    """Median-filter speckles, smooth small steps away (e.g. the terraces of an 8-bit network
    output), then snap the remaining blurred steps to sharp ones where the local range is large.
    ``sharpen=False`` (a sharp map): only the anti-aliased pixels of a step are snapped (those
    with a jump to both sides that :func:`find_cuts` would cut, given ``shift_px_per_inv``, so they
    would be cut out as a sliver); its steep ramps
    (folds, slanted surfaces) are surfaces and stay ramps, which stretch instead of being cut."""
    inv = cv2.medianBlur(inv.astype(np.float32), 5)
    if params.smooth_sigma > 0:  # edge-preserving, on log inverse depth (jumps are relative)
        log = np.log(np.maximum(inv, 1e-6))
        d = 2 * int(round(2 * params.smooth_sigma)) + 1
        inv = np.exp(cv2.bilateralFilter(log, d, 2 * params.rel_jump, params.smooth_sigma)).astype(np.float32)
    k = np.ones((3, 3), np.uint8)
    for _ in range(params.sharpen_iters):
        lo, hi = cv2.erode(inv, k), cv2.dilate(inv, k)
        edge = (hi - lo) > params.rel_jump * hi
        if not sharpen:  # only the anti-aliased pixels of a step: a cut-sized jump to both sides
            edge &= _is_cut(inv, hi, shift_px_per_inv, params) & _is_cut(inv, lo, shift_px_per_inv, params)
        snapped = np.where(inv - lo < hi - inv, lo, hi)
        inv = np.where(edge, snapped, inv).astype(np.float32)
    return inv


def is_sharp_map(depth: np.ndarray) -> bool:
    """Whether a depth map's steps are crisp (a measured or rendered map, at most anti-aliased)
    rather than blurred (most networks' output): on the pixels of its steps, the range over 3x3
    is most of the range over 7x7 (median share >= ``SHARP_MAP``; a step blurred by a 2-px
    Gaussian gives about 0.4, the Middlebury ground truth 0.78-0.90)."""
    d = np.asarray(depth, np.float32)
    full = float(d.max() - d.min()) if d.size else 0.0
    if not full > 0:
        return True
    k3, k7 = np.ones((3, 3), np.uint8), np.ones((7, 7), np.uint8)
    r3 = cv2.dilate(d, k3) - cv2.erode(d, k3)
    r7 = cv2.dilate(d, k7) - cv2.erode(d, k7)
    on = r3 > 0.08 * full
    if on.sum() < 50:  # hardly any step: nothing to sharpen either way
        return True
    return float(np.median(r3[on] / np.maximum(r7[on], 1e-12))) >= SHARP_MAP


def snap_edges(inv: np.ndarray, rgb: np.ndarray, params: LayerParams = LayerParams(),
               lab: np.ndarray | None = None) -> np.ndarray:
    """Move blurred depth edges onto the photo's colour edges (a colour-guided min/max snap).

    Where the local inverse-depth range is a discontinuity, each pixel takes the near or the far
    value of its window, whichever side's mean colour it resembles more.  Depth networks blur
    edges into halos; without this the cut lands beside the object and drags background along.
    """
    if rgb is None or params.snap_radius <= 0:
        return inv
    lab = photo_lab(rgb) if lab is None else lab  # (the photo in CIELAB, when the caller has it)
    k = 2 * params.snap_radius + 1
    se = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    for _ in range(params.snap_iters):
        lo, hi = cv2.erode(inv, se), cv2.dilate(inv, se)
        band = (hi - lo) > params.rel_jump * hi
        if not band.any():
            break
        near = (inv > 0.5 * (lo + hi)).astype(np.float32)
        n_near = cv2.boxFilter(near, -1, (k, k), normalize=False)
        n_far = k * k - n_near
        sum_near = cv2.boxFilter(lab * near[:, :, None], -1, (k, k), normalize=False)
        sum_all = cv2.boxFilter(lab, -1, (k, k), normalize=False)
        mean_near = sum_near / np.maximum(n_near, 1)[:, :, None]
        mean_far = (sum_all - sum_near) / np.maximum(n_far, 1)[:, :, None]
        d_near = _sq(lab - mean_near)
        d_far = _sq(lab - mean_far)
        sure = np.minimum(d_near, d_far) < 0.5 * np.maximum(d_near, d_far)  # a clear colour winner
        inv = np.where(band & sure, np.where(d_near < d_far, hi, lo), inv).astype(np.float32)
    return inv


RAMP_END = 0.3  # snap_ramps: a plateau is the nearest or farthest share of a window's range
RAMP_ITERS = 2  # ... snapped this many times


def snap_ramps(inv: np.ndarray, lab: np.ndarray, radius: int, rel_jump: float, iters: int = RAMP_ITERS) -> np.ndarray:
    """Wide blurred depth edges, snapped to the photo's colour edge: within a window of ``radius``,
    where its inverse-depth range is a discontinuity, a pixel takes the near or the far end of the
    range if its colour is clearly that of the window's near plateau (the pixels in the nearest
    ``RAMP_END`` of the range) or of its far plateau (the farthest), which differ visibly
    (``MIN_SPLIT``).  A network may blur a silhouette over more pixels than :func:`snap_edges`'s
    window and place the ramp's middle off the object; the cut then ran through the sky several
    pixels out from a cap's rim and, inside it, round a highlight that the narrow window took
    for sky: the rim tore off as a yellow sliver floating in front of the sky at the extreme
    views, and the highlight opened a hole.  Judged against plateaus, not the ramp's halves, the
    ramp's pixels of sky colour go to the sky however far the blur reaches.  ``lab``:
    :func:`photo_lab`."""
    k = 2 * radius + 1
    se = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    sq = _sq(lab)
    for _ in range(iters):
        lo, hi = cv2.erode(inv, se), cv2.dilate(inv, se)
        span = hi - lo
        band = span > rel_jump * hi
        if not band.any():
            break
        t = (inv - lo) / np.maximum(span, 1e-12)  # each pixel's place in its own window's range
        ends = []
        for m in (band & (t > 1 - RAMP_END), band & (t < RAMP_END)):
            m = m.astype(np.float32)
            n = np.maximum(cv2.boxFilter(m, -1, (k, k), normalize=False), 1)
            mean = cv2.boxFilter(lab * m[:, :, None], -1, (k, k), normalize=False) / n[:, :, None]
            spread2 = cv2.boxFilter(sq * m, -1, (k, k), normalize=False) / n - _sq(mean)
            ends.append((n, mean, _sq(lab - mean), spread2))
        (n_n, m_n, d_n, _), (n_f, m_f, d_f, s_f) = ends
        gap2 = _sq(m_n - m_f)
        # plateaus of visibly different colours, the far one plain (a pattern across a fold is not)
        split = (n_n >= 4) & (n_f >= 4) & (gap2 > MIN_SPLIT ** 2) & (4 * s_f < gap2)
        sure = np.minimum(d_n, d_f) < 0.25 * np.maximum(d_n, d_f)  # twice as close in CIELAB distance
        inv = np.where(band & split & sure, np.where(d_n < d_f, hi, lo), inv).astype(np.float32)
    return inv


def _is_cut(a: np.ndarray, b: np.ndarray, shift_px_per_inv: float, params: LayerParams) -> np.ndarray:
    """Whether the step between inverse depths ``a`` and ``b`` is cut: large relative to the nearer
    side and opening at least ``min_jump_px`` at the viewer's full parallax."""
    jump = np.abs(a - b)
    return (jump > params.rel_jump * np.maximum(a, b)) & (jump * shift_px_per_inv > params.min_jump_px)


def find_cuts(inv: np.ndarray, shift_px_per_inv: float, params: LayerParams = LayerParams()) -> Cuts:
    """Cut flags for every pair of 8-neighbours of ``inv``."""

    def cut(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _is_cut(a, b, shift_px_per_inv, params)

    return Cuts(
        h=cut(inv[:, :-1], inv[:, 1:]),
        v=cut(inv[:-1, :], inv[1:, :]),
        d1=cut(inv[:-1, :-1], inv[1:, 1:]),
        d2=cut(inv[:-1, 1:], inv[1:, :-1]),
    )


def _sides(inv: np.ndarray, cuts: Cuts) -> tuple[np.ndarray, np.ndarray]:
    near = np.zeros(inv.shape, bool)
    far = np.zeros(inv.shape, bool)
    pairs = [
        (cuts.h, (slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        (cuts.v, (slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ]
    for c, sa, sb in pairs:
        a_near = inv[sa] > inv[sb]
        near[sa] |= c & a_near
        far[sb] |= c & a_near
        far[sa] |= c & ~a_near
        near[sb] |= c & ~a_near
    return near, far


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel, the dot product of two colour images (..., 3): the same floats as
    ``(a * b).sum(2)``, in a twentieth of its time (numpy reduces a last axis of 3 slowly)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _sq(a: np.ndarray) -> np.ndarray:
    """Per pixel, the squared length of a colour difference (..., 3) (see :func:`_dot`)."""
    return _dot(a, a)


def photo_lab(rgb: np.ndarray) -> np.ndarray:
    """The photo in 8-bit CIELAB (OpenCV's scale, float32): the scale of ``MIN_SPLIT``, ``MIXED_TINT``
    and ``SAME_COLOUR``."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)


def colour_contrast(rgb: np.ndarray) -> np.ndarray:
    """Local colour contrast (CIELAB distance between the extremes of a 5x5 window)."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    k = np.ones((5, 5), np.uint8)
    return np.sqrt(_sq(cv2.dilate(lab, k) - cv2.erode(lab, k)))


def _step_px(inv: np.ndarray, cuts: Cuts, shift_px_per_inv: float) -> np.ndarray:
    """Per pixel: the largest hole (working pixels at full parallax) a cut beside it opens."""
    out = np.zeros(inv.shape, np.float32)
    jh = np.where(cuts.h, np.abs(inv[:, :-1] - inv[:, 1:]), 0) * shift_px_per_inv
    jv = np.where(cuts.v, np.abs(inv[:-1] - inv[1:]), 0) * shift_px_per_inv
    out[:, :-1] = np.maximum(out[:, :-1], jh)
    out[:, 1:] = np.maximum(out[:, 1:], jh)
    out[:-1] = np.maximum(out[:-1], jv)
    out[1:] = np.maximum(out[1:], jv)
    return out


def _drop_short_edges(inv: np.ndarray, cuts: Cuts, min_len: int, contrast: np.ndarray | None = None,
                      min_contrast: float = 0.0, shift_px_per_inv: float = 0.0,
                      params: LayerParams = LayerParams()) -> Cuts:
    """Keep only the discontinuities that are real steps all along: every stretch of
    ``2 * params.support_px + 1`` pixels opens ``params.min_segment_px`` on average (with
    ``shift_px_per_inv``) and (with ``contrast``) follows a colour edge (mean contrast and the
    share of pixels that see half of it), and what is left of a segment is at least ``min_len``
    pixels long.  A real occlusion boundary almost always shows in the photo, while the terraces
    and noise of a network's depth cross smooth surfaces and textures; judged locally, a spurious
    cut inside an object does not borrow the support of the silhouette it branches off."""
    near, far = _sides(inv, cuts)
    edge = near | far
    keep = edge.copy()
    if edge.any() and (shift_px_per_inv > 0 or contrast is not None):
        e = edge.astype(np.float32)
        win = (2 * params.support_px + 1,) * 2
        count = np.maximum(cv2.boxFilter(e, -1, win, normalize=False), 1.0)

        def along(v: np.ndarray) -> np.ndarray:
            return cv2.boxFilter(v.astype(np.float32) * e, -1, win, normalize=False) / count

        if shift_px_per_inv > 0:
            keep &= along(_step_px(inv, cuts, shift_px_per_inv)) >= params.min_segment_px
        if contrast is not None:
            keep &= along(contrast) >= min_contrast
            keep &= along(contrast >= 0.5 * min_contrast) >= params.min_supported
    n, lbl, stats, _ = cv2.connectedComponentsWithStats(keep.astype(np.uint8), connectivity=8)
    keep_lbl = stats[:, cv2.CC_STAT_AREA] >= 2 * min_len
    keep_lbl[0] = False
    return _without(cuts, ~keep_lbl[lbl])


def _without(cuts: Cuts, px: np.ndarray) -> Cuts:
    """``cuts`` less those touching a pixel of ``px``."""
    return Cuts(
        h=cuts.h & ~px[:, :-1] & ~px[:, 1:],
        v=cuts.v & ~px[:-1, :] & ~px[1:, :],
        d1=cuts.d1 & ~px[:-1, :-1] & ~px[1:, 1:],
        d2=cuts.d2 & ~px[:-1, 1:] & ~px[1:, :-1],
    )


def _fragments(cuts: Cuts, min_area: float, min_width: float) -> tuple[np.ndarray, np.ndarray]:
    """The pieces the cuts cut the visible layer into (4-connected): a label per pixel, and per
    label whether it is small (see :func:`small_fragments`)."""
    h, w = cuts.v.shape[0] + 1, cuts.h.shape[1] + 1
    # a doubled grid: pixels at even positions, the grid edges between them in between
    g = np.zeros((2 * h - 1, 2 * w - 1), np.uint8)
    g[::2, ::2] = 1
    g[::2, 1::2] = ~cuts.h
    g[1::2, ::2] = ~cuts.v
    corner = cuts.h[:-1] | cuts.h[1:] | cuts.v[:, :-1] | cuts.v[:, 1:]
    g[1::2, 1::2] = ~corner
    n, lbl = cv2.connectedComponents(g, connectivity=4)
    px = lbl[::2, ::2]
    if n <= 2:
        return px, np.zeros(n, bool)
    dist = cv2.distanceTransform(g, cv2.DIST_L2, 5) / 2.0
    area = np.bincount(px.ravel(), minlength=n)
    wide = np.bincount(lbl.ravel(), (dist > min_width).ravel(), minlength=n)
    small = (area < min_area) | (wide == 0)
    small[np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])] = False  # cut by the frame, not an island
    small[0] = False
    small[int(np.argmax(area))] = False
    return px, small


def small_fragments(cuts: Cuts, min_area: float, min_width: float) -> np.ndarray:
    """Pixels of the fragments the cuts cut out of the visible layer (4-connected pieces) that
    have fewer than ``min_area`` pixels or no pixel ``min_width`` inside their border (slivers).
    The largest fragment and those the image's frame cuts never count."""
    px, small = _fragments(cuts, min_area, min_width)
    return small[px]


def far_pockets(inv: np.ndarray, cuts: Cuts, min_area: float, min_width: float) -> np.ndarray:
    """Pixels of the small fragments that ``cuts`` (all cut-sized steps, before any is dropped as
    too short or without colour support) cut out of the visible layer (:func:`small_fragments`)
    and that lie behind their surroundings: the fragment's median inverse depth is at most that of
    the pixels around it.  A network reads a bright or dark patch inside an object as a farther
    pocket (the white top of a tape roll's rim as the white wall behind it); where part of its
    border is kept as a cut and part is not, the pocket was not merged with the small fragments
    of the kept cuts, the kept part opened a hole onto it and the background layer showed the
    pocket's colour there (a white bite out of the rim at the left view, a blue blob above it at
    the right), and the part not cut stretched into streaks.  A fragment at an object's edge that
    lies in front of the background beyond it (a dark fleck between a table's edge and a dark
    room), or a fleck in front of its surroundings, is not behind them and stays.  Each fragment
    is judged on its own, against all the pixels around it (other fragments too)."""
    px, small = _fragments(cuts, min_area, min_width)
    out = np.zeros(inv.shape, bool)
    ids = np.flatnonzero(small)
    if not len(ids):
        return out
    h, w = inv.shape
    flat = px.ravel()
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], ids, "left")
    ends = np.searchsorted(flat[order], ids, "right")
    k = np.ones((3, 3), np.uint8)
    for i, a, b in zip(ids, starts, ends):
        ys, xs = np.divmod(order[a:b], w)
        box = (slice(max(0, ys.min() - 1), min(h, ys.max() + 2)), slice(max(0, xs.min() - 1), min(w, xs.max() + 2)))
        piece = px[box] == i
        ring = cv2.dilate(piece.astype(np.uint8), k).astype(bool) & ~piece
        if ring.any() and np.median(inv[box][ring]) >= np.median(inv[box][piece]):
            out[box] |= piece
    return out


def far_band(ldi: "LayeredDepth", width: int, rgb: np.ndarray | None = None) -> np.ndarray:
    """Far-side pixels within ``width`` pixels of a cut (not behind the foreground) whose colour
    is at least a quarter the foreground's (``MIXED_FG``: a blurred or mixed edge, fur, tree tips
    beyond a depth edge that lies a little outside the object; without ``rgb``: all of them), or
    that the foreground tints visibly (``MIXED_TINT`` along the background-to-foreground colour
    direction: the faint halo of a dark object on a bright wall, a tenth of its colour, reads as
    a line once the object has moved off it).  The visible layer leaves them to the background
    layer, which re-synthesizes them from background pixels only: no ghost outline of a moved
    object stays behind."""
    band = ldi.far.copy() if width > 0 else np.zeros(ldi.far.shape, bool)
    if not band.any():
        return band
    k = np.ones((3, 3), np.uint8)
    if width > 1:
        grown = cv2.dilate(band.astype(np.uint8), k, iterations=width - 1).astype(bool)
        band |= grown & ~ldi.hole & ~ldi.near
    if rgb is None:
        return band
    mixed, tint, _ = edge_colours(ldi, photo_lab(rgb), width)
    return band & (mixed | tint)


def far_halo(ldi: "LayeredDepth", band: np.ndarray, rgb: np.ndarray, reach: int,
             colours: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """A sharpening halo beyond the far band, up to ``reach`` pixels from the cut: far-side pixels
    connected to the band (a front, not tendrils: each pixel taken touches three of the band, the
    halo so far or the near side; counting the near side, a slanted edge's halo, whose band has a
    gap wherever the cut steps diagonally, is taken whole) that differ visibly from the background beyond
    them (``HALO_TINT``) away from the foreground's colour (``HALO_COS``): a light rim round dark
    hair or a wing against the sky, a dark one above a light branch.  The inpainting does not read
    them (it spread their colour into the background layer's fill, a pale blob beside a gull's wing
    tip), and they go with the far band to the foreground's soft edge: left on the background
    surface they were the moved object's ghost outline at the extreme views, a pale dotted line
    along a wing, round a leaf (a by-eye review, helper-113).  (A tint toward the
    foreground is not taken: there the far side is as often the same surface, a glow round a
    light or a dune's sand, and the fill then showed the background beyond through it.  But for
    JPEG's colour bleed: the hue alone toward the foreground's by ``BLEED_TINT``, the lightness
    not toward it, a red line in the sky where an orange cap had been, helper-135.)  ``colours``:
    :func:`edge_colours` at ``reach``, if already computed."""
    halo = np.zeros(band.shape, bool)
    if reach <= 1 or not ldi.far.any():
        return halo
    away = (colours or edge_colours(ldi, photo_lab(rgb), reach))[2]
    candidates = away & ~ldi.hole & ~ldi.near & ~band
    grown = band | (ldi.far & candidates)  # (the rim may start at the cut: no band there)
    for _ in range(reach - 1):
        ring = (cv2.boxFilter((grown | ldi.near).astype(np.float32), -1, (3, 3), normalize=False) >= 3) & candidates & ~grown
        if not ring.any():
            break
        grown |= ring
    return grown & ~band


def depth_spill(ldi: "LayeredDepth", colours: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Far-side pixels whose depth lies in front of the background beyond (in ``inpaint_mask``)
    but whose colour is the background's (not mixed, not tinted toward the foreground's:
    ``colours``, :func:`edge_colours`): a network spills an object's depth some pixels past its
    edge, 20 px of sky above a cap.  Nearer a far-side pixel of a cut than a near-side one."""
    spill = ldi.inpaint_mask & ~ldi.hole
    if not spill.any() or not ldi.near.any():
        return np.zeros(spill.shape, bool)
    d_far, d_near = (cv2.distanceTransform((~m).astype(np.uint8), cv2.DIST_L2, 3) for m in (ldi.far, ldi.near))
    mixed, tint, _ = colours
    return spill & (d_far < d_near) & ~mixed & ~tint


def edge_colours(ldi: "LayeredDepth", lab: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of ``lab`` (8-bit CIELAB) near the cuts compared with the foreground 1-3 px inside
    its edge and the background ``reach`` .. ``reach`` + 3 px beyond the cut: (mixed: a quarter
    foreground colour or more, or either side unknown; tinted toward the foreground by
    ``MIXED_TINT``; off the background by ``HALO_TINT`` away from the foreground's colour, or
    its hue toward the foreground's by ``BLEED_TINT`` and its lightness not: see :func:`far_halo`)."""
    k = np.ones((3, 3), np.uint8)
    near_grown = cv2.dilate(ldi.near.astype(np.uint8), k, iterations=3).astype(bool)
    fg = (near_grown & ldi.hole & ~ldi.near).astype(np.float32)  # the object, 1-3 px inside its edge
    inner = cv2.dilate(ldi.far.astype(np.uint8), k, iterations=reach - 1).astype(bool) if reach > 1 else ldi.far
    outer = cv2.dilate(ldi.far.astype(np.uint8), k, iterations=reach + 3).astype(bool)
    bgm = (outer & ~inner & ~ldi.hole & ~ldi.near).astype(np.float32)  # the background beyond
    win = (2 * reach + 7,) * 2

    def mean(m):
        return cv2.boxFilter(lab * m[:, :, None], -1, win, normalize=False) / np.maximum(
            cv2.boxFilter(m, -1, win, normalize=False), 1e-6)[:, :, None]

    m_fg, m_bg = mean(fg), mean(bgm)
    d_fg = _sq(lab - m_fg)
    d_bg = _sq(lab - m_bg)
    axis = m_fg - m_bg
    tint = _dot(lab - m_bg, axis) / np.maximum(np.sqrt(_sq(axis)), 1e-6)
    has = (cv2.boxFilter(fg, -1, win) > 0) & (cv2.boxFilter(bgm, -1, win) > 0)
    away = has & (d_bg > HALO_TINT ** 2) & (-tint > HALO_COS * np.sqrt(d_bg))
    # ... or lighter than the background beyond where the object is darker (or darker where lighter):
    # a sharpening overshoot is in the lightness; JPEG's coarser colour may tint it toward the object
    dl, fl = lab[:, :, 0] - m_bg[:, :, 0], axis[:, :, 0]
    away |= has & (np.abs(fl) > 2 * MIXED_TINT) & (-np.sign(fl) * dl > HALO_TINT)
    # ... or JPEG's colour bleed: the hue toward the object's (its colour is coarser than its lightness,
    # a few pixels of an orange cap's red in the sky beyond it), the lightness not toward it (so no glow
    # round a light, no same surface going on behind the cut)
    ha, hb = axis[:, :, 1], axis[:, :, 2]
    hue_len = np.sqrt(ha * ha + hb * hb)
    hue_tint = ((lab[:, :, 1] - m_bg[:, :, 1]) * ha + (lab[:, :, 2] - m_bg[:, :, 2]) * hb) / np.maximum(hue_len, 1e-6)
    away |= has & (hue_len > 2 * MIXED_TINT) & (hue_tint > BLEED_TINT) & (np.sign(fl) * dl < HALO_TINT / 2)
    return ~has | (d_fg < MIXED_FG * d_bg), has & (tint > MIXED_TINT), away


def band_to_foreground(ldi: "LayeredDepth", band: np.ndarray) -> tuple[np.ndarray, Cuts]:
    """The visible layer with the far band (far-side edge pixels of foreground colour, see
    :func:`far_band`) joined to the foreground's edge: the band takes the nearest near-side depth,
    is connected to the near side and to itself and cut from the rest of the far side.  So the
    view from the photo's own viewpoint shows the band's own colour (no line of re-synthesized
    background along a cut), and as the foreground moves the band moves with it (no ghost outline
    left behind).  Returns the inverse depth and the cuts."""
    if not band.any() or not ldi.near.any():
        return ldi.inv, ldi.cuts
    _, near_inv = nearest_values(ldi.near, ldi.inv)
    inv = np.where(band, np.maximum(near_inv, ldi.inv), ldi.inv).astype(np.float32)
    c = ldi.cuts

    def moved(cut: np.ndarray, a: tuple, b: tuple) -> np.ndarray:
        ba, bb, na, nb = band[a], band[b], ldi.near[a], ldi.near[b]
        join = (ba & (bb | nb)) | (bb & na)
        split = (ba & ~bb & ~nb) | (bb & ~ba & ~na)
        return (cut & ~join) | split

    s_ = slice(None)
    return inv, Cuts(
        h=moved(c.h, (s_, slice(None, -1)), (s_, slice(1, None))),
        v=moved(c.v, (slice(None, -1), s_), (slice(1, None), s_)),
        d1=moved(c.d1, (slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
        d2=moved(c.d2, (slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),
    )


def far_coloured_near(inv: np.ndarray, lab: np.ndarray, near: np.ndarray, far: np.ndarray,
                      reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels on the near side of a kept cut, within ``reach`` pixels of it, whose colour is
    clearly the far side's, and the far side's depth there.  A cut that lies a few pixels out in
    the background (beyond the colour snap's window) gives the near layer a strip of background
    colour that moves with it (a wedge of dark room and a dark fleck at the coffee table's far
    corner).  Two local colour classes along the cut: the far side (far pixels within ``reach``
    of it) and the near side beyond the strip (``reach`` to ``2 * reach`` pixels in).  A pixel
    goes if the classes differ visibly (``MIN_SPLIT``) and the far one is plain (its spread under
    half the gap), it lies on the far side of their midpoint by a margin (at most a third of the
    way to the near colour) and is at least twice as close to the far colour; and only as pieces
    that are strips along the cut: touching the far side along at least ``1 / reach`` of their
    area, with a new edge about as long as that contact, and at least ``reach`` pixels (a dark eye
    inside a face, white letters near a shirt's edge, specks, stay).  The far side's depth: the
    farthest within ``reach`` of its nearest far pixel (a far side at an in-between depth, a
    pocket between the object and the background, is skipped)."""
    if reach <= 0 or not (near.any() and far.any()):
        return np.zeros(near.shape, bool), inv
    d_n, _ = nearest_values(near, np.zeros(near.shape, np.float32), 3)
    se = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * reach + 1,) * 2)
    d_f, far_inv = nearest_values(far, cv2.erode(inv, se), 3)
    near_side = d_n < d_f
    cand = near_side & (d_n <= reach)
    if not cand.any():
        return cand, inv
    ref_n = (near_side & (d_n > reach) & (d_n <= 2 * reach)).astype(np.float32)
    ref_f = (~near_side & (d_f <= reach)).astype(np.float32)
    win = (4 * reach + 1,) * 2
    count_n, count_f = (cv2.boxFilter(m, -1, win, normalize=False) for m in (ref_n, ref_f))

    def mean(m, count):
        return cv2.boxFilter(lab * m[:, :, None], -1, win, normalize=False) / np.maximum(count, 1e-6)[:, :, None]

    m_n, m_f = mean(ref_n, count_n), mean(ref_f, count_f)
    axis = m_n - m_f
    gap2 = _sq(axis)
    # (a pattern printed across a false step is not plain)
    spread2_f = np.maximum(cv2.boxFilter(_sq(lab) * ref_f, -1, win, normalize=False)  # (mean squared
                           / np.maximum(count_f, 1e-6) - _sq(m_f), 0.0)  # CIELAB distance from the mean)
    cand &= 4 * spread2_f < gap2
    t = _dot(lab - m_f, axis) / np.maximum(gap2, 1e-6)  # 0 at the far colour, 1 at the near
    d_near = _sq(lab - m_n)
    d_far = _sq(lab - m_f)
    has = (count_n > 0) & (count_f > 0)
    cand &= has & (gap2 > MIN_SPLIT ** 2) & (t < 1 / 3) & (4 * d_far < d_near)
    if not cand.any():
        return cand, inv
    # strips along the cut (a letter touches it at a point, its outline is long)
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    contact = cand & cv2.dilate(far.astype(np.uint8), cross).astype(bool)
    rest = (near_side | near) & ~cand
    inner = cand & cv2.dilate(rest.astype(np.uint8), cross).astype(bool)
    n, lbl = cv2.connectedComponents(cand.astype(np.uint8), connectivity=4)
    area = np.bincount(lbl[cand], minlength=n)
    touch = np.bincount(lbl[contact], minlength=n)
    edge = np.bincount(lbl[inner], minlength=n)
    ok = (touch > 0) & (area <= reach * touch) & (edge <= 1.5 * touch + 2) & (area >= reach)
    ok[0] = False
    return cand & ok[lbl], far_inv


def excerpts(inv: np.ndarray, cuts: Cuts, raw: Cuts, share: float, min_len: int) -> np.ndarray:
    """Pixels of kept cuts that are a short excerpt of a longer step: in a component of the steps
    that pass the jump test (``raw``) at least ``8 * min_len`` pixels long, the kept ones are under
    ``share`` of it: a crisp notch where the rest of a soft edge stretches (a post out of focus whose
    cut was kept only where a spider's thread crossed it; a desert's horizon cut along part of its
    length: a by-eye review, helper-95)."""
    near, far = _sides(inv, cuts)
    rn, rf = _sides(inv, raw)
    kept, steps = near | far, rn | rf
    n, lbl = cv2.connectedComponents(steps.astype(np.uint8), connectivity=8)
    total = np.bincount(lbl[steps], minlength=n)
    have = np.bincount(lbl[kept & steps], minlength=n)
    drop = (total >= 8 * min_len) & (have < share * total)
    drop[0] = False
    return kept & drop[lbl]


def unsupported_cuts(inv: np.ndarray, lab: np.ndarray, cuts: Cuts, near: np.ndarray, far: np.ndarray,
                     share: float, local_px: int, min_len: int) -> np.ndarray:
    """Pixels of the kept cuts (8-connected pieces of their sides) where under ``share`` of the
    step sees a colour edge across it: each pair the piece separates weighs its relative jump
    (the cut test's measure) and sees an edge where the 3x3 means one pixel beyond each side differ
    by ``MIN_SPLIT``.  The support test of :func:`_drop_short_edges` asks for a colour edge within
    two pixels, the stretch's mean contrast; a network's ramp that the snap made a wobbly step
    along an edge passes it, and its cut tore jagged fragments at the extreme views (a bed's far
    corner, a hat's crown against a curtain, a glass jar's rim, a man's profile: a by-eye review
    of the 44 two-layer hold-out photos).  Such a cut wanders off the edge and back, so much of it
    has one colour on both sides; a cut on an object's outline has little.  Weighed by the jump,
    the small steps where a cut fades out count less.  On those photos the pieces' shares run
    from 0.14 to 1: the fragments seen came from pieces at 0.65 and below, the next is at 0.69,
    the coffee's rim at 0.72, caps against the sky 0.95-1.

    In the pieces kept, the stretches where under ``LOCAL_SHARE`` of the step within ``local_px``
    pixels sees a colour edge are not cut either, nor what is left of a piece under ``2 *
    min_len`` pixels: the coffee's rim is cut all along, but its cut ended across the spoon's tip
    (grey behind the cup's white rim on orange wood, given the cup's depth there by the network and
    by the snap, grey being nearer white than orange), and at the extreme views the spoon showed
    wood-coloured flecks where that stretch opened."""
    h, w = near.shape
    m = cv2.blur(lab, (3, 3))
    px_step = np.zeros((h, w), np.float32)  # per pixel: the step of the pairs it is in ...
    px_edge = np.zeros((h, w), np.float32)  # ... and the part of it that sees a colour edge
    for c, (dy, dx) in ((cuts.h, (0, 1)), (cuts.v, (1, 0))):  # the pairs (ys, xs) - (ys + dy, xs + dx)
        ys, xs = np.nonzero(c)
        ya, xa = np.clip(ys - dy, 0, h - 1), np.clip(xs - dx, 0, w - 1)
        yb, xb = np.clip(ys + 2 * dy, 0, h - 1), np.clip(xs + 2 * dx, 0, w - 1)
        a, b = inv[ys, xs], inv[ys + dy, xs + dx]
        step = np.abs(a - b) / np.maximum(np.maximum(a, b), 1e-12)  # (the cut test's relative jump)
        seen = step * (_sq(m[ya, xa] - m[yb, xb]) > MIN_SPLIT ** 2)
        for py, px in ((ys, xs), (ys + dy, xs + dx)):
            np.add.at(px_step, (py, px), step)
            np.add.at(px_edge, (py, px), seen)
    # per piece (a pair's two pixels are neighbours, so in one piece, each counting it once)
    side = near | far
    n, lbl = cv2.connectedComponents(side.astype(np.uint8), connectivity=8)
    drop = np.bincount(lbl[side], px_edge[side], n) < share * np.bincount(lbl[side], px_step[side], n)
    drop[0] = False
    out = drop[lbl]
    if local_px > 0:
        win = (2 * local_px + 1,) * 2
        local = cv2.boxFilter(px_edge, -1, win, normalize=False)
        weak = side & ~out & (local < LOCAL_SHARE * cv2.boxFilter(px_step, -1, win, normalize=False))
        if weak.any():
            out |= weak
            n, lbl, stats, _ = cv2.connectedComponentsWithStats((side & ~out).astype(np.uint8), connectivity=8)
            short = stats[:, cv2.CC_STAT_AREA] < 2 * min_len
            short[0] = False
            out |= short[lbl]
    return out


SAME_COLOUR = 12.0  # 8-bit CIELAB: the near side's colour met again beyond a thin far strip


def thin_far_strips(inv: np.ndarray, lab: np.ndarray, cuts: Cuts, near: np.ndarray, far: np.ndarray,
                    width: int) -> np.ndarray:
    """Near-side pixels of the kept cuts whose far side is a thin strip: across the cut the far side
    holds, within ``width`` pixels, a strip of another colour (``MIN_SPLIT``) and then the near
    side's colour again (``SAME_COLOUR``), along at least half of the cut.  That is a thin thing
    (a leg, a post, a rod) with one surface on both sides of it: it lies in front of that surface,
    whatever a soft depth ramp across it says.  Cut, the near side's hole was filled with the
    strip's colour, a copy of the thing beside it at the extreme views (a water tower's white leg
    doubled: a by-eye review, helper-95); not cut, the ramp stretches there.  ``lab``: the photo in
    8-bit CIELAB (:func:`photo_lab`); ``near``, ``far``: the sides of ``cuts``."""
    h, w = inv.shape
    hit = np.zeros((h, w), bool)

    def at(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        return ok, lab[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)]

    for c, (dy, dx) in ((cuts.h, (0, 1)), (cuts.v, (1, 0))):
        ys, xs = np.nonzero(c)  # the pair (ys, xs) - (ys + dy, xs + dx)
        if not len(ys):
            continue
        first_near = inv[ys, xs] > inv[ys + dy, xs + dx]
        for sign in (1, -1):  # the far side after the near one along (dy, dx), or before it
            sel = first_near if sign == 1 else ~first_near
            py, px = (ys, xs) if sign == 1 else (ys + dy, xs + dx)  # the near pixel
            py, px = py[sel], px[sel]
            sy, sx = dy * sign, dx * sign  # from the near side toward the far side
            ok_n, c_n = at(py - sy, px - sx)  # the near colour one pixel in (past the edge's blend)
            ok_s, c_s = at(py + 2 * sy, px + 2 * sx)  # the strip's, one pixel past the cut's far pixel
            strip = ok_n & ok_s & (((c_s - c_n) ** 2).sum(1) > MIN_SPLIT ** 2)
            again = np.zeros(len(py), bool)
            for k in range(3, width + 2):
                ok_k, c_k = at(py + k * sy, px + k * sx)
                again |= ok_k & (((c_k - c_n) ** 2).sum(1) < SAME_COLOUR ** 2) & (((c_k - c_s) ** 2).sum(1) > MIN_SPLIT ** 2)
            hit[py[strip & again], px[strip & again]] = True
    if not hit.any():
        return hit
    # whole cuts: those whose near side is at least half such pixels
    n, lbl = cv2.connectedComponents((near | far).astype(np.uint8), connectivity=8)
    total = np.bincount(lbl[near], minlength=n)
    thin = np.bincount(lbl[hit & near], minlength=n)
    drop = 2 * thin >= np.maximum(total, 1)
    drop[0] = False
    return near & drop[lbl]


def crop_box(mask: np.ndarray, pad: int) -> tuple[slice, slice]:
    """The bounding box of ``mask`` (not empty), ``pad`` pixels wider on every side within the image."""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    h, w = mask.shape
    return (
        slice(max(0, ys[0] - pad), min(h, ys[-1] + pad + 1)),
        slice(max(0, xs[0] - pad), min(w, xs[-1] + pad + 1)),
    )


def nearest_values(mask: np.ndarray, values: np.ndarray, mask_size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel: distance to the nearest ``mask`` pixel and that pixel's value (a ``mask``
    pixel is its own nearest).  For the nearest pixel's position, pass the flat indices
    ``np.arange(h * w).reshape(h, w)``.  ``mask_size``: OpenCV's distance mask (3 is coarser)."""
    dist, lbl = cv2.distanceTransformWithLabels(
        (~mask).astype(np.uint8), cv2.DIST_L2, mask_size, labelType=cv2.DIST_LABEL_PIXEL
    )
    table = np.zeros(int(lbl.max()) + 1, values.dtype)
    table[lbl[mask]] = values[mask]
    return dist, table[lbl]


def _blur_by(a: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``a`` blurred per pixel by a Gaussian of standard deviation ``sigma`` (a pixel's own value
    below 0.5, linear between the octaves 1, 2, 4, 8, 16)."""
    a = a.astype(np.float32)
    out, prev, lo = a.copy(), a, 0.5
    for s in (1.0, 2.0, 4.0, 8.0, 16.0):
        cur = cv2.GaussianBlur(a, (0, 0), s)
        t = np.clip((sigma - lo) / (s - lo), 0.0, 1.0)
        out = np.where(sigma > lo, (1 - t) * prev + t * cur, out)
        prev, lo = cur, s
    return out


def _steps_into_surface(inv: np.ndarray, smooth: np.ndarray, near: np.ndarray, far: np.ndarray,
                        shift_px_per_inv: float, hold_px: float) -> np.ndarray:
    """Network depth around the kept cuts: their steps, eased into the smooth surface with no
    hard step that is not cut.  Every pixel takes the depth of the nearest cut-side pixel of its
    side (near or far: the noisy blobs that sharpening leaves beside a cut are not kept), keeps
    it over ``hold_px`` pixels (so a terrace beside the cut, the background behind it, keeps its
    depth) and then blends into ``smooth`` over as many pixels as the difference opens at full
    parallax (at least 4), about a pixel of stretch per pixel.  Beyond a cut's end the two
    sides meet over a width that grows with the distance from the end.  (A hard switch between
    the sharpened band and the smooth surface, and the sharpened step running on past a cut's
    end, are steps that are not cut: in novel views they stretch into thin horizontal streaks.)"""
    if not (near.any() and far.any()):
        return smooth
    d_n, v_n = nearest_values(near, inv)
    d_f, v_f = nearest_values(far, inv)
    d = np.minimum(d_n, d_f)
    side = _blur_by((d_n <= d_f).astype(np.float32), 0.5 * d)  # 1 on the near side, soft past a cut's end
    step = side * v_n + (1 - side) * v_f
    reach = np.maximum(np.abs(step - smooth) * shift_px_per_inv, 4.0)
    w = cv2.GaussianBlur(np.clip(1.0 - (d - hold_px) / reach, 0.0, 1.0).astype(np.float32), (0, 0), 1.0)
    w = np.where(near | far, 1.0, w)
    return (w * step + (1 - w) * smooth).astype(np.float32)


def cut_beside_cuts(inv: np.ndarray, cuts: Cuts, near: np.ndarray, far: np.ndarray, shift_px_per_inv: float,
                     params: LayerParams) -> Cuts:
    """The kept cuts plus every step of ``inv`` right beside them (both pixels within one pixel of a
    kept cut's side) that the cut test passes.  For network depth the cuts are chosen on the
    sharpened map and the depth is then eased into the smooth surface
    (:func:`_steps_into_surface`): at a diagonal cut's stair corners and at a cut's end that leaves
    steps of the full height between neighbours the cut does not separate, whose faces stretch the
    edge's pixels into thin lines across the opening at the extreme views (a cap's dark rim drawn
    as scratches over the wall beside it)."""
    beside = cv2.dilate((near | far).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    steps = find_cuts(inv, shift_px_per_inv, params)
    s_, lo, hi = slice(None), slice(None, -1), slice(1, None)

    def add(cut: np.ndarray, step: np.ndarray, a: tuple, b: tuple) -> np.ndarray:
        return cut | (step & beside[a] & beside[b])

    return Cuts(
        h=add(cuts.h, steps.h, (s_, lo), (s_, hi)),
        v=add(cuts.v, steps.v, (lo, s_), (hi, s_)),
        d1=add(cuts.d1, steps.d1, (lo, lo), (hi, hi)),
        d2=add(cuts.d2, steps.d2, (lo, hi), (hi, lo)),
    )


_NONE = 1e6  # (no such pixel within reach: an inverse depth no map has)


def middle_strips(inv: np.ndarray, near: np.ndarray, far: np.ndarray, reach: int, rel: float) -> np.ndarray:
    """Pixels of a strip between two cuts at an intermediate depth: a side of a cut (``near`` or
    ``far``) with a far side ``rel`` farther within ``reach`` pixels and a near side ``rel`` nearer.
    The sharpened network step at a bed's corner went in two steps, 0.44 | 0.55 | 0.82, each cut:
    the 2-px strip between them hung between bed and carpet, a dark sliver at the extreme views."""
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * reach + 1,) * 2)
    lo = cv2.erode(np.where(far, inv, _NONE).astype(np.float32), k)
    hi = cv2.dilate(np.where(near, inv, -_NONE).astype(np.float32), k)
    return (near | far) & (lo * (1 + rel) < inv) & (hi > inv * (1 + rel))


def flatten_middle_strips(inv: np.ndarray, cuts: Cuts, near: np.ndarray, far: np.ndarray,
                          rel: float) -> tuple[np.ndarray, Cuts] | None:
    """:func:`middle_strips` (up to ``MID_STRIP_PX`` wide) at the far side's depth, and the cuts
    touching them that are then no longer across a step dropped: one step, no sliver hanging
    between (the far band then moves the strip's pixels of the foreground's colour with it).
    None where there is no such strip."""
    mid = middle_strips(inv, near, far, MID_STRIP_PX, rel)
    if not mid.any():
        return None
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * MID_STRIP_PX + 1,) * 2)
    lo = cv2.erode(np.where(far & ~mid, inv, _NONE).astype(np.float32), k)
    inv = np.where(mid & (lo < _NONE), lo, inv).astype(np.float32)
    return inv, _across_steps(cuts, inv, rel, mid)


def _across_steps(cuts: Cuts, inv: np.ndarray, rel: float, at: np.ndarray) -> Cuts:
    """``cuts`` less those touching a pixel of ``at`` whose two pixels' inverse depths lie within
    ``rel`` of each other."""
    def kept(cut: np.ndarray, a: tuple, b: tuple) -> np.ndarray:
        step = np.maximum(inv[a], inv[b]) > np.minimum(inv[a], inv[b]) * (1 + rel)
        return cut & (step | ~(at[a] | at[b]))

    s_, lo, hi = slice(None), slice(None, -1), slice(1, None)
    return Cuts(
        h=kept(cuts.h, (s_, lo), (s_, hi)),
        v=kept(cuts.v, (lo, s_), (hi, s_)),
        d1=kept(cuts.d1, (lo, lo), (hi, hi)),
        d2=kept(cuts.d2, (lo, hi), (hi, lo)),
    )


STRETCH_PX = 1.5  # relax_uncut_steps: neighbours not cut apart open at most this many pixels at full parallax
RELAX_PX = 4  # ... the steps that do eased over this many pixels round them


def _touching(cuts: Cuts, shape: tuple[int, int]) -> np.ndarray:
    """Pixels that a cut flagged in ``cuts`` touches."""
    t = np.zeros(shape, bool)
    t[:, :-1] |= cuts.h
    t[:, 1:] |= cuts.h
    t[:-1] |= cuts.v
    t[1:] |= cuts.v
    t[:-1, :-1] |= cuts.d1
    t[1:, 1:] |= cuts.d1
    t[:-1, 1:] |= cuts.d2
    t[1:, :-1] |= cuts.d2
    return t


def relax_uncut_steps(inv: np.ndarray, cuts: Cuts, shift_px_per_inv: float,
                      params: LayerParams) -> tuple[np.ndarray, Cuts]:
    """The steps that stretch, eased: ``inv`` and ``cuts`` where no two neighbours that no cut
    separates open more than ``STRETCH_PX`` at full parallax.  First a step that the cut test
    passes between two pixels that both touch cuts is cut (and a cut no longer across such a step
    is dropped); then every pixel within ``RELAX_PX`` of a remaining steep step takes the mean of
    its four neighbours that no cut separates from it, a harmonic fill that tapers the step round
    a cut's end.  The cuts are decided on the sharpened map and the depth eased afterwards
    (:func:`_steps_into_surface`, the far band joined to the foreground): past a cut's end the
    step ran on for a few pixels at nearly its full height, uncut, and at the extreme views its
    faces stretched into a spike (a white one off a door knob, a torn flap on its top)."""
    s_, lo, hi = slice(None), slice(None, -1), slice(1, None)
    # a step the cut test passes between two pixels that touch cuts already: cut
    t = _touching(cuts, inv.shape)
    steps = find_cuts(inv, shift_px_per_inv, params)

    def closed(cut: np.ndarray, step: np.ndarray, a: tuple, b: tuple) -> np.ndarray:
        return (cut | (t[a] & t[b])) & step

    cuts = Cuts(closed(cuts.h, steps.h, (s_, lo), (s_, hi)), closed(cuts.v, steps.v, (lo, s_), (hi, s_)),
                closed(cuts.d1, steps.d1, (lo, lo), (hi, hi)), closed(cuts.d2, steps.d2, (lo, hi), (hi, lo)))

    def steep(cut: np.ndarray, a: tuple, b: tuple) -> np.ndarray:
        return ~cut & (np.abs(inv[a] - inv[b]) * shift_px_per_inv > STRETCH_PX)

    uncut = Cuts(steep(cuts.h, (s_, lo), (s_, hi)), steep(cuts.v, (lo, s_), (hi, s_)),
                 steep(cuts.d1, (lo, lo), (hi, hi)), steep(cuts.d2, (lo, hi), (hi, lo)))
    bad = _touching(uncut, inv.shape)
    if not bad.any():
        return inv, cuts
    k = np.ones((3, 3), np.uint8)
    free = cv2.dilate(bad.astype(np.uint8), k, iterations=RELAX_PX).astype(bool)
    ys, xs = crop_box(free, 1)
    # the links along which a pixel is averaged: its four neighbours' that no cut separates
    h, w = inv.shape
    left = np.zeros((h, w), np.float32)
    up = np.zeros((h, w), np.float32)
    left[:, 1:] = ~cuts.h
    up[1:] = ~cuts.v
    right, down = np.zeros_like(left), np.zeros_like(up)
    right[:, :-1] = left[:, 1:]
    down[:-1] = up[1:]
    wl, wr, wu, wd = (m[ys, xs] for m in (left, right, up, down))
    n = wl + wr + wu + wd
    f = free[ys, xs] & (n > 0)
    out = inv.copy()
    a = out[ys, xs]
    for _ in range(8 * RELAX_PX):
        p = np.pad(a, 1, mode="edge")
        mean = (wl * p[1:-1, :-2] + wr * p[1:-1, 2:] + wu * p[:-2, 1:-1] + wd * p[2:, 1:-1]) / np.maximum(n, 1)
        a = np.where(f, mean, a)
    out[ys, xs] = a
    return out.astype(np.float32), cuts


def _decide_cuts(inv: np.ndarray, raw: np.ndarray, lab: np.ndarray | None, contrast: np.ndarray | None,
                 cut_shift: float, params: LayerParams, uncut: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, Cuts, np.ndarray, np.ndarray]:
    """Which steps of the cleaned inverse depth ``inv`` are cut (see :func:`build_layers`), none
    touching a pixel of ``uncut``.  Returns the inverse depth with the merged pockets filled, the
    uncleaned ``raw`` filled likewise, the cuts and their near and far sides.  ``lab``: the photo
    (:func:`photo_lab`, network depth) or None (a sharp map)."""
    min_area = params.min_island * inv.size
    # merge small and thin fragments into their surroundings, then cut again: a pocket the
    # surroundings are in front of (a dark eye read as farther than its face, a stair step's
    # middle strip) takes their depth; a fleck in front of its surroundings keeps its depth
    # but is no longer cut out (it stretches, as a single-layer mesh would)
    uncut = np.zeros(inv.shape, bool) if uncut is None else uncut.copy()

    def kept_cuts(inv: np.ndarray) -> np.ndarray:  # long and contrasted enough, not merged away
        return _without(_drop_short_edges(inv, find_cuts(inv, cut_shift, params), params.min_edge_len,
                                          contrast, params.min_edge_contrast, cut_shift, params), uncut)

    def fill_pockets(pocket: np.ndarray, fill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        new = np.where(pocket, fill, inv).astype(np.float32)
        # the uncleaned depth too, over the pocket as it was before the median shrank it
        grown = cv2.dilate(pocket.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        _, around = nearest_values(~grown, new)
        return new, np.where(grown & (raw < around), around, raw).astype(np.float32)

    if lab is not None:  # network depth: pockets behind their surroundings, cut or not (see far_pockets), up
        # to four times the size of an island: a highlight on an oboe, a parachute's white rim read as the
        # sky cut holes through their objects, filled with re-synthesized colour (helper-113)
        for _ in range(2):
            pocket = far_pockets(inv, find_cuts(inv, cut_shift, params), params.pocket * inv.size, params.min_width_px)
            if not pocket.any():
                break
            inv, raw = fill_pockets(pocket, nearest_values(~pocket, inv)[1])
    for it in range(4):
        cuts = kept_cuts(inv)
        small = small_fragments(cuts, min_area, params.min_width_px) if it < 3 else None
        if small is None or not small.any() or small.all():
            break
        _, fill = nearest_values(~small, inv)
        pocket = small & (fill >= inv)
        inv, raw = fill_pockets(pocket, fill)
        uncut |= small & ~pocket
    if lab is not None and params.excerpt > 0:  # a short excerpt of a long soft step: a notch where the rest stretches
        short = excerpts(inv, cuts, find_cuts(inv, cut_shift, params), params.excerpt, params.min_edge_len)
        if short.any():
            uncut |= short
            cuts = kept_cuts(inv)
    near, far = _sides(inv, cuts)
    if lab is not None and params.thin_px > 0:  # a thin thing read as behind the surface around it: not cut
        thin = thin_far_strips(inv, lab, cuts, near, far, params.thin_px)
        if thin.any():
            uncut |= thin
            cuts = kept_cuts(inv)
            near, far = _sides(inv, cuts)
    if lab is not None:
        # a kept cut that lies a few pixels out in the background: the strip of background colour
        # on its near side goes to the far side, and the cut onto the colour edge
        moved, far_inv = far_coloured_near(inv, lab, near, far, params.reach_px)
        if moved.any():
            inv = np.where(moved, np.minimum(far_inv, inv), inv).astype(np.float32)
            cuts = kept_cuts(inv)
            near, far = _sides(inv, cuts)
    return inv, raw, cuts, near, far


def build_layers(
    inv: np.ndarray, shift_px_per_inv: float, params: LayerParams = LayerParams(), rgb: np.ndarray | None = None,
    cut_shift_px_per_inv: float | None = None,
) -> LayeredDepth:
    """Split an inverse-depth map into the visible layer and the background behind its edges.

    ``shift_px_per_inv``: how many working pixels a unit of inverse depth moves at the viewer's
    largest camera offset (sets how far the background must extend behind each edge).
    ``rgb`` (same size): the photo, to snap blurred depth edges onto colour edges (for network
    depth; sharp depth maps, e.g. from stereo or a renderer, are better used as they are).
    ``cut_shift_px_per_inv`` (default ``shift_px_per_inv``): the shift at which *where* to cut is
    judged (``min_jump_px``, ``min_segment_px``); ``shift_px_per_inv`` still sets how far the
    background extends.  A stronger parallax than the default judges cuts at the default's: a
    small step inside an object then stretches instead of being cut (a cut there opens a hole the
    background layer can only fill with re-synthesized colour, torn fragments at the strong
    parallax and a line of that colour along the cut even from the photo's own viewpoint).
    """
    cut_shift = shift_px_per_inv if cut_shift_px_per_inv is None else min(cut_shift_px_per_inv, shift_px_per_inv)
    raw = sanitize_inverse_depth(inv)
    if rgb is not None and params.straight_len > 0:  # network depth wobbles along lines: the views would bend them
        raw = straighten_lines(raw, rgb, params.straight_len)
    raw0 = raw
    inv = clean_inverse_depth(raw, params, sharpen=rgb is not None, shift_px_per_inv=cut_shift)
    contrast = None
    lab = photo_lab(rgb) if rgb is not None else None
    if rgb is not None:
        contrast = colour_contrast(rgb)

        def snapped(inv: np.ndarray) -> np.ndarray:
            inv = clean_inverse_depth(snap_edges(inv, rgb, params, lab), params)
            if params.close_px > 1:  # narrow far grooves (dark grain, cracks): the surface around them
                se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (params.close_px, params.close_px))
                inv = cv2.morphologyEx(inv, cv2.MORPH_CLOSE, se)
            return inv

        sharp, inv = inv, snapped(inv)
    inv, raw, cuts, near, far = _decide_cuts(inv, raw, lab, contrast, cut_shift, params)
    if lab is not None and params.ramp_px > params.snap_radius and near.any():
        # wide blurred ramps at the kept cuts, snapped to their plateaus' colours (snap_ramps), and
        # the cuts decided again, there only (a ramp elsewhere that snapping made a step would be
        # cut where the first decision merged or dropped it: a hand torn off a coat, a screwdriver's tip)
        at = cv2.dilate((near | far).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=params.ramp_px).astype(bool)
        box = crop_box(at, 2 * RAMP_ITERS * params.ramp_px)  # (all that snapping the pixels in ``at`` reads)
        ramps = sharp.copy()
        ramps[box] = snap_ramps(sharp[box], lab[box], params.ramp_px, params.rel_jump)
        ramps = snapped(np.where(at, ramps, sharp).astype(np.float32))
        inv, raw, cuts, near, far = _decide_cuts(ramps, raw0, lab, contrast, cut_shift, params, ~at)
    # cuts off their colour edge: judged on the final cuts (in _decide_cuts's first decision it would
    # drop the cuts that only the wide ramps' second decision puts on the edge; the caps lost all theirs)
    if lab is not None and (params.edge_share > 0 or params.edge_px > 0) and near.any():
        cuts = _without(cuts, unsupported_cuts(inv, lab, cuts, near, far, params.edge_share, params.edge_px,
                                                  params.min_edge_len))
        near, far = _sides(inv, cuts)
    if params.smooth_sigma > 0:
        # sharpened steps only where a discontinuity was kept; elsewhere, for network depth, a
        # smooth surface (a step that is not cut would stretch its texture row into a visible
        # line in novel views), eased into the kept steps; a sharp depth map (no photo given)
        # is used there as it is
        if rgb is None:
            band = cv2.dilate((near | far).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=4).astype(bool)
            inv = np.where(band, inv, raw).astype(np.float32)
        else:
            smooth = cv2.GaussianBlur(cv2.medianBlur(raw, 5), (0, 0), 2 * params.smooth_sigma)
            inv = _steps_into_surface(inv, smooth, near, far, cut_shift, params.strip_px + 1)
            if near.any():  # the eased map's full steps right beside the cuts are cut too (once:
                # cut beside the new cuts again, and again, and fragments tear off: speckles +17 %)
                cuts = cut_beside_cuts(inv, cuts, near, far, cut_shift, params)
                near, far = _sides(inv, cuts)
    flat = flatten_middle_strips(inv, cuts, near, far, params.rel_jump) if lab is not None and near.any() else None
    if flat is not None:  # a strip between two cuts at an intermediate depth goes to the far side
        inv, cuts = flat
        near, far = _sides(inv, cuts)
    if lab is not None and near.any():
        inv, cuts = relax_uncut_steps(inv, cuts, cut_shift, params)
        near, far = _sides(inv, cuts)
    if not far.any():
        empty = np.zeros(inv.shape, bool)
        return LayeredDepth(inv, cuts, near, far, empty, empty.copy(), inv.copy())
    dist = cv2.distanceTransform((~far).astype(np.uint8), cv2.DIST_L2, 5)
    hole = np.zeros(inv.shape, bool)
    bg = inv.copy()
    # Multi-scale: at scale r the background is the farthest point within r pixels (so stair-
    # stepped edges and thin intermediate strips still reveal the real background behind them).
    max_need = float(inv.max() - inv.min()) * shift_px_per_inv + params.margin_px
    r = 1
    while r <= max(1.0, max_need) * 2:
        bg_r = cv2.erode(inv, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1)))
        jump = inv - bg_r
        need = jump * shift_px_per_inv + params.margin_px
        fg = (jump > params.rel_jump * inv) & (jump * cut_shift > params.min_jump_px) & (2 * need >= r)
        fg &= dist <= need
        hole |= fg
        r *= 2
    # the background behind a hole pixel: the nearest far-side pixel that is not itself hidden
    # (thin intermediate strips at a stair-stepped edge are skipped; real inner edges are kept),
    # never nearer than the farthest point within ``strip_px`` of the cut's far side there (a
    # far pixel in a narrow groove or an anti-aliased step is hidden itself, its seed must lie
    # behind it; a wider strip at an intermediate depth is a surface of its own, the one that
    # continues behind the edge: not the wall beyond it)
    seeds = far & ~hole
    if seeds.any():
        _, bg = nearest_values(seeds, inv)
    strip = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * params.strip_px + 1,) * 2)
    _, floor = nearest_values(far, cv2.erode(inv, strip))
    bg = np.where(hole, np.minimum(bg, floor), bg)
    # foreground beyond the hole is masked too, so inpainting reaches the hole from the back only
    inpaint_mask = hole.copy()
    if hole.any():
        d_hole, bg_near = nearest_values(hole, bg)
        in_front = inv > bg_near * (1 + params.rel_jump)
        inpaint_mask |= in_front & (d_hole <= 2 * max_need + 8)
    return LayeredDepth(inv, cuts, near, far, hole, inpaint_mask, bg.astype(np.float32))
