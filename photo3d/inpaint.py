"""Colour + depth inpainting of the background hidden behind foreground edges.

Only background-side context is read: every foreground pixel near an edge is inside the
inpainting mask (see :func:`photo3d.layers.build_layers`), so the fast-marching fill (Telea)
reaches the hole from the background side first.  The hole is then re-textured by mirroring the
background across the discontinuity (keeps its grain; a smooth fill alone blurs visibly) near the
seam, fading into the smooth fill deeper in and where the mirror would read the foreground.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .layers import Cuts, LayeredDepth, crop_box, depth_spill, edge_colours, far_band, far_halo, nearest_values, photo_lab

BG_PUSH = 0.995  # the background layer sits this factor behind (in inverse depth) the visible one


@dataclass
class Background:
    rgb: np.ndarray  # (h, w, 3) uint8: background colour, meaningful where ``mask``
    inv: np.ndarray  # (h, w) float32: background inverse depth, meaningful where ``mask``
    mask: np.ndarray  # (h, w) bool: vertices of the background layer (hole + a seam rim)
    band: np.ndarray | None = None  # (h, w) bool: far-side edge pixels the visible layer leaves to it
    # (h, w, 2) int32: where each pixel's detail finer than a working pixel lies (-1: none; kept with
    # ``rgb`` by stitch_seams), or None
    source: np.ndarray | None = None


def _mirror_fill(rgb: np.ndarray, known: np.ndarray, hole: np.ndarray, inv: np.ndarray, rel: float,
                 ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Colour of the background pixel mirrored across the nearest known pixel, whether it exists
    (inside the image, known, and at the same depth as that nearest pixel), and where it is."""
    h, w = known.shape
    _, nearest = nearest_values(known, np.arange(h * w, dtype=np.int32).reshape(h, w))  # its index
    hy, hx = np.nonzero(hole)
    ny, nx = np.divmod(nearest[hy, hx], w)
    my, mx = 2 * ny - hy, 2 * nx - hx
    ok = (my >= 0) & (my < h) & (mx >= 0) & (mx < w)
    my, mx = np.clip(my, 0, h - 1), np.clip(mx, 0, w - 1)
    ok &= known[my, mx] & (np.abs(inv[my, mx] - inv[ny, nx]) <= rel * inv[ny, nx])
    out = np.zeros((len(hy), 3), np.uint8)
    out[ok] = rgb[my[ok], mx[ok]]
    return out, ok, (my, mx)


def _telea(crop: np.ndarray, m8: np.ndarray, radius: int, half: bool) -> np.ndarray:
    """Telea fill of ``m8`` in ``crop``; with ``half``, solved at half resolution (4x faster;
    it is the smooth fallback under the mirrored texture).  A half-resolution pixel counts as
    known only when all four of its pixels are, so the foreground never leaks in."""
    if not half:
        return cv2.inpaint(crop, m8, radius, cv2.INPAINT_TELEA)
    h, w = m8.shape
    ph, pw = h % 2, w % 2
    c = cv2.copyMakeBorder(crop, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    m = cv2.copyMakeBorder(m8, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    small = cv2.resize(c, (c.shape[1] // 2, c.shape[0] // 2), interpolation=cv2.INTER_AREA)
    m_small = m.reshape(m.shape[0] // 2, 2, m.shape[1] // 2, 2).max(axis=(1, 3))
    filled = cv2.inpaint(small, m_small, max(1, radius // 2), cv2.INPAINT_TELEA)
    up = cv2.resize(filled, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_LINEAR)[:h, :w]
    return np.where(m8[:, :, None] > 0, up, crop)


SEAM_ALIKE = 16  # a seam's two sides within this many levels in every channel: no colour edge there ...
SEAM_PLAIN = 6  # ... and the far side's next pixel out within this of it: no halo either
MIRROR_FADE_PX = 8.0  # the mirrored texture fades into the smooth fill over this many pixels from the seam
HALF_RES_PIXELS = 200_000  # crops larger than this are Telea-filled at half resolution
TEX_TILE = 24  # the texture: one source shift per tile of this many pixels square (the
# sources of at most TEX_MISS of its pixels may be unknown) ...
TEX_MISS = 0.1
TEX_SIGMA = 4.0  # ... carrying the photo's detail finer than its blur at this scale ...
TEX_REACH = 120  # ... from at most this many pixels away (60 left the fills beside a shrub's foliage on a
# deck, whose nearer boards all count as in front, flat in half their pixels): radii TEX_STEP apart up to
# TEX_NEAR, three times that beyond, in TEX_ANGLES directions
TEX_STEP = 4
TEX_NEAR = 60
TEX_ANGLES = 16
TEX_REL = 0.15  # a source lies at the background depth the tile wants, within this share


def _texture(rgb: np.ndarray, known: np.ndarray, target: np.ndarray, inv: np.ndarray, want: np.ndarray,
             base: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The background's texture for the ``target`` pixels of a smooth fill (``base``: its colour
    at them, (n, 3), in ``np.nonzero`` order): per tile, the photo's fine detail (finer than
    ``TEX_SIGMA``) at one shift whose source pixels are ``known`` (all but ``TEX_MISS`` of them) and
    at the background depth the tile wants (``want``: (n,), within ``TEX_REL``), the one whose
    smooth colour there is closest to the fill's.  One shift for a
    whole tile copies a coherent piece (a shift per pixel, or per small tile, repeated the strip
    beside the hole in a grid); each pixel blends the four nearest tiles' pieces.  Returns the
    detail (float32, (n, 3)) of each target pixel (in ``np.nonzero`` order), whether it has one,
    and its main source pixel ((n, 2): the heaviest of the four, for :func:`fine_background`)."""
    h, w = known.shape
    src = cv2.erode(known.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    f = src.astype(np.float32)
    norm = cv2.GaussianBlur(f, (0, 0), TEX_SIGMA)
    low = cv2.GaussianBlur(rgb.astype(np.float32) * f[..., None], (0, 0), TEX_SIGMA) / np.maximum(norm, 1e-3)[..., None]
    src &= norm > 0.5  # (its smooth colour is mostly its own side's)
    detail = rgb.astype(np.float32) - low
    ty, tx = np.nonzero(target)
    d_t, b_t = want, base.astype(np.float32)
    T = TEX_TILE
    gh, gw = h // T + 1, w // T + 1
    # each tile's shift is judged on every third pixel in each direction (a ninth of the work)
    pick = (ty % 3 == 0) & (tx % 3 == 0)
    py, px, d_p, b_p = ty[pick], tx[pick], d_t[pick], b_t[pick]
    tile = (py // T) * gw + px // T
    count = np.bincount(tile, minlength=gh * gw)
    n = np.maximum(count, 1).astype(np.float32)
    best = np.full(gh * gw, np.inf, np.float32)
    best_s = np.zeros((gh * gw, 2), np.int32)
    for r in [*range(TEX_STEP, TEX_NEAR + 1, TEX_STEP), *range(TEX_NEAR + 3 * TEX_STEP, TEX_REACH + 1, 3 * TEX_STEP)]:
        for a in np.arange(TEX_ANGLES) * (2 * np.pi / TEX_ANGLES):
            dy, dx = int(round(r * np.sin(a))), int(round(r * np.cos(a)))
            sy, sx = py + dy, px + dx
            ok = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
            sy, sx = np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)
            ok &= src[sy, sx] & (np.abs(inv[sy, sx] - d_p) <= TEX_REL * d_p)
            bad = np.bincount(tile, ~ok, minlength=gh * gw)
            # the smooth colour's mismatch, and a little for the distance (the nearer of equals)
            cost = np.bincount(tile, np.abs(low[sy, sx] - b_p).sum(1) * ok, minlength=gh * gw) / n + 0.05 * r
            take = (bad <= TEX_MISS * n) & (cost < best)
            best[take] = cost[take]
            best_s[take] = (dy, dx)
    has = (np.isfinite(best) & (count > 0)).reshape(gh, gw)
    best_s = best_s.reshape(gh, gw, 2)
    # each pixel blends the shifts of the four tiles whose centres surround it (no seams at tiles' edges)
    fy, fx = (ty + 0.5) / T - 0.5, (tx + 0.5) / T - 0.5
    y0, x0 = np.floor(fy).astype(np.int32), np.floor(fx).astype(np.int32)
    out = np.zeros((len(ty), 3), np.float32)
    total = np.zeros(len(ty), np.float32)
    heaviest = np.zeros(len(ty), np.float32)
    source = np.zeros((len(ty), 2), np.int32)
    for oy, ox in ((0, 0), (0, 1), (1, 0), (1, 1)):
        gy, gx = np.clip(y0 + oy, 0, gh - 1), np.clip(x0 + ox, 0, gw - 1)
        wgt = (1 - np.abs(fy - (y0 + oy))) * (1 - np.abs(fx - (x0 + ox)))
        s = best_s[gy, gx]
        sy, sx = ty + s[:, 0], tx + s[:, 1]
        ok = has[gy, gx] & (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
        sy, sx = np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)
        ok &= src[sy, sx]
        wgt = np.where(ok, np.clip(wgt, 0, 1), 0).astype(np.float32)
        out += wgt[:, None] * detail[sy, sx]
        total += wgt
        more = wgt > heaviest
        heaviest[more] = wgt[more]
        source[more] = np.stack([sy[more], sx[more]], 1)
    found = total > 0.25
    return out / np.maximum(total, 1e-6)[:, None], found, source


def inpaint_background(rgb: np.ndarray, ldi: LayeredDepth, radius: int = 4, mirror: bool = True, rel: float = 0.06,
                       band_px: int = 1, halo_px: int = 0, texture: bool = False) -> Background:
    """Synthesize colour and inverse depth of the background layer from background pixels only.

    ``rgb`` is the photo at the working resolution of ``ldi``.  The layer also covers the
    far-side pixels within ``band_px`` of each cut (``Background.band``), whose colour mixes in
    the foreground's, and a sharpening halo beyond them, up to ``halo_px`` from the cut
    (:func:`photo3d.layers.far_halo`): the visible layer leaves them out (they go with the
    foreground's soft edge) and they are re-synthesized here, never read; nor is any other far-side
    pixel within ``band_px`` read.  Nor is the foreground beyond the hole (``inpaint_mask``), but
    far-side pixels that only the depth puts in front are, for their colour
    (:func:`photo3d.layers.depth_spill`).

    With ``texture`` (for a snapped, network-like map) the fill carries the background's texture
    (:func:`_texture`): the smooth fill alone left a flat patch where a table's wood grain was.
    A sharp measured map keeps the smooth fill: there the texture, right in kind but not in place,
    cost 0.2-0.5 dB of PSNR against the real view (README, "Session 41").
    """
    h, w = ldi.inv.shape
    if not ldi.hole.any():
        return Background(np.zeros((h, w, 3), np.uint8), ldi.inv.copy(), np.zeros((h, w), bool), np.zeros((h, w), bool))
    k = np.ones((3, 3), np.uint8)
    band = far_band(ldi, band_px, rgb)
    # the colours beyond the cuts against both sides', for the halo and for the depth's spill (below)
    colours = edge_colours(ldi, photo_lab(rgb), max(halo_px, 1))
    if halo_px > band_px:  # the sharpening halo beyond the band goes with it (see far_halo)
        band = band | far_halo(ldi, band, rgb, halo_px, colours)
    # the background layer: the hole and the far band plus a rim under the visible layer's edge
    layer = cv2.dilate((ldi.hole | band).astype(np.uint8), k, iterations=2).astype(bool)
    # nor does it read the rest of the far side within the band's width (``band`` is part of it): a
    # pixel beside the cut tinted below the band's bar (a shirt's dark red rim on a brown wall, a
    # pepper's on grey sky) was the fill's nearest source all along the edge, and the fill took its tint
    beside = far_band(ldi, band_px) | band
    mask = ldi.inpaint_mask | ldi.hole | beside
    ys, xs = crop_box(mask | layer, 2 * radius + 2)
    # the colour, though, is read on the far side of a cut where the depth there lies in front of the
    # background beyond (``inpaint_mask``): a network spills an object's depth some pixels past its
    # edge (20 px of sky above a cap), but their colour is the background's.  Unread, the fill came
    # from beyond them, a lighter patch of sky with the cap's outline round it at the extreme view
    unread = mask & ~(depth_spill(ldi, colours) & ~beside)
    m8 = unread[ys, xs].astype(np.uint8)
    crop = np.ascontiguousarray(rgb[ys, xs])
    colour = _telea(crop, m8, radius, half=crop.shape[0] * crop.shape[1] > HALF_RES_PIXELS)
    # depth: the background seed of each hole pixel (Telea overshoots on float maps), smoothed
    _, inv_fill = nearest_values(~mask[ys, xs], np.ascontiguousarray(ldi.inv[ys, xs]))
    inv_fill = np.where(ldi.hole[ys, xs], ldi.bg_seed[ys, xs], inv_fill)
    inv_fill = np.where(mask[ys, xs], cv2.GaussianBlur(inv_fill, (0, 0), 1.5), inv_fill)
    source = None
    if texture:
        target = unread & layer
        by, bx = crop_box(target, TEX_REACH + 3 * int(TEX_SIGMA) + 2)
        ty, tx = np.nonzero(target[by, bx])
        cy, cx = ty + by.start - ys.start, tx + bx.start - xs.start  # (in the fill's crop, which holds them)
        detail, found, src = _texture(np.ascontiguousarray(rgb[by, bx]), ~unread[by, bx], target[by, bx],
                                      np.ascontiguousarray(ldi.inv[by, bx]), inv_fill[cy, cx], colour[cy, cx])
        # where each background-layer pixel's finer detail lies (fine_background): its own place where
        # it is the photo's colour, its texture's source where it is synthesized
        source = np.full((h, w, 2), -1, np.int32)
        known = ~unread
        source[known] = np.stack(np.nonzero(known), 1)
        source[ty[found] + by.start, tx[found] + bx.start] = src[found] + (by.start, bx.start)
        # faded in over two pixels from the known ones (the fill copies them there, detail and all)
        fade = np.clip(cv2.distanceTransform(unread[by, bx].astype(np.uint8), cv2.DIST_L2, 3)[ty, tx] / 2.0, 0, 1)
        cy, cx = cy[found], cx[found]
        colour[cy, cx] = np.clip(colour[cy, cx] + fade[found, None] * detail[found] + 0.5, 0, 255).astype(np.uint8)
    if mirror:
        # whole image: the mirror may reach far
        mirrored, ok, (my, mx) = _mirror_fill(rgb, ~unread, ldi.hole, ldi.inv, rel)
        hy, hx = np.nonzero(ldi.hole)
        # the grain near the seam, fading into the smooth fill deeper in (a mirror read far from
        # the seam lands on other structure more often than not)
        dist = cv2.distanceTransform(unread.astype(np.uint8), cv2.DIST_L2, 3)[hy[ok], hx[ok]]
        fade = np.clip(1.0 - (dist - 1.0) / MIRROR_FADE_PX, 0.0, 1.0)[:, None]
        if source is not None:
            mostly = fade[:, 0] >= 0.5
            source[hy[ok][mostly], hx[ok][mostly]] = np.stack([my[ok][mostly], mx[ok][mostly]], 1)
        py, px = hy[ok] - ys.start, hx[ok] - xs.start
        colour[py, px] = np.clip(fade * mirrored[ok] + (1.0 - fade) * colour[py, px] + 0.5, 0, 255).astype(np.uint8)
    out_rgb = np.zeros((h, w, 3), np.uint8)
    out_rgb[ys, xs] = colour
    out_inv = ldi.inv.copy()
    out_inv[ys, xs] = inv_fill
    # never in front of the visible layer where the background hides behind it
    behind = ldi.inpaint_mask | ldi.hole
    out_inv[behind] = np.minimum(out_inv[behind], ldi.inv[behind] * 0.98)
    # the layer's outer edge over visible pixels that never move away (not hole, not band) is
    # stitched to the visible layer (its depth, a little behind, and colour): no gap opens
    # between the two layers at any view
    edge = layer & ~cv2.erode(layer.astype(np.uint8), k).astype(bool) & ~ldi.hole & ~band
    out_inv[edge] = ldi.inv[edge] * 0.98
    out_rgb[edge] = rgb[edge]
    if source is not None:
        source[edge] = np.stack(np.nonzero(edge), 1)
    out_inv[layer] *= BG_PUSH
    return Background(out_rgb, out_inv.astype(np.float32), layer, band, source)


def fine_background(bg: Background, photo: np.ndarray, k: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """The background layer's colour over ``box`` (y0, y1, x0, x1 in working pixels) at ``k`` times
    the working resolution: the colour upsampled, plus the photo's detail finer than a working
    pixel (``photo``: the full-resolution photo), read where ``bg.source`` says (the pixel itself
    where it is the photo's colour, the texture's or the mirror's source where it is synthesized;
    none: smooth).  At the working resolution the fill was visibly softer than the photo beside
    it, whose texture is the full-resolution one."""
    h, w = bg.mask.shape
    y0, y1, x0, x1 = box
    src = bg.source[y0:y1, x0:x1]
    has = src[..., 0] >= 0
    out = cv2.resize(bg.rgb[y0:y1, x0:x1].astype(np.float32), ((x1 - x0) * k, (y1 - y0) * k),
                     interpolation=cv2.INTER_LINEAR)
    if not has.any():
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    # the photo at k times the grid (an integer reduction first: OpenCV's is several times faster),
    # its finer detail over the region the box's pixels read from
    f = max(1, min(photo.shape[0] // (h * k), photo.shape[1] // (w * k)))
    if f > 1:
        photo = cv2.resize(photo, (photo.shape[1] // f, photo.shape[0] // f), interpolation=cv2.INTER_AREA)
    hi = cv2.resize(photo, (w * k, h * k), interpolation=cv2.INTER_AREA)
    sy, sx = src[..., 0][has], src[..., 1][has]
    ry0, ry1 = max(0, min(y0, int(sy.min())) - 1), min(h, max(y1, int(sy.max()) + 1) + 1)
    rx0, rx1 = max(0, min(x0, int(sx.min())) - 1), min(w, max(x1, int(sx.max()) + 1) + 1)
    region = hi[ry0 * k:ry1 * k, rx0 * k:rx1 * k].astype(np.float32)
    rw, rh = rx1 - rx0, ry1 - ry0
    fine = region - cv2.resize(cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA), (rw * k, rh * k),
                               interpolation=cv2.INTER_LINEAR)
    yy, xx = np.nonzero(np.repeat(np.repeat(has, k, 0), k, 1))
    fy = k * (src[yy // k, xx // k, 0] - ry0) + yy % k
    fx = k * (src[yy // k, xx // k, 1] - rx0) + xx % k
    out[yy, xx] += fine[fy, fx]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def stitch_seams(bg: Background, rgb: np.ndarray, inv: np.ndarray, cuts: Cuts) -> Background:
    """The background layer's colour on both sides of each cut of the visible layer (``inv``,
    ``cuts``: :func:`photo3d.pipeline.visible_layer`) is the photo's colour on the cut's far side.

    The two sides of a cut are meshed apart, so from the photo's own viewpoint the background layer
    shows through the one-cell seam between them; with its re-synthesized colour there (a fill from
    elsewhere: the white of a bird's cheek inside a cut through its black cap) a thin light or dark
    line ran along every cut at the rest view, the first one anyone sees.  With the far side's own
    colour the seam reads as the far side (the edge at most half a cell nearer the foreground), and
    as the foreground moves away the background starts with that colour, which is the background's
    (a far-side pixel of foreground colour is in the visible layer's band, not the far side)."""
    if bg.mask is None or not bg.mask.any():
        return bg
    out = bg.rgb.copy()
    source = None if bg.source is None else bg.source.copy()
    s_ = slice(None)
    pairs = (
        (cuts.h, (s_, slice(None, -1)), (s_, slice(1, None))),
        (cuts.v, (slice(None, -1), s_), (slice(1, None), s_)),
        (cuts.d1, (slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
        (cuts.d2, (slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),
    )
    for cut, a, b in pairs:
        ya, xa = np.nonzero(cut)
        if not len(ya):
            continue
        oa, ob = (a[0].start or 0, a[1].start or 0), (b[0].start or 0, b[1].start or 0)
        pa, pb = (ya + oa[0], xa + oa[1]), (ya + ob[0], xa + ob[1])
        a_far = inv[pa] < inv[pb]
        far = (np.where(a_far, pa[0], pb[0]), np.where(a_far, pa[1], pb[1]))
        near = (np.where(a_far, pb[0], pa[0]), np.where(a_far, pb[1], pa[1]))
        colour = rgb[far]
        # only across seams inside a plain region: the near pixel, the far one and the next one out
        # alike.  Where the colours differ the fill already is the background's, and a far-side
        # pixel tinted by the foreground (the halo beside a pug's fur, 10-20 levels darker than the
        # wall) copied under the edge stayed behind as a faint outline at the extreme views
        h, w = inv.shape
        beyond = (np.clip(2 * far[0] - near[0], 0, h - 1), np.clip(2 * far[1] - near[1], 0, w - 1))
        c = colour.astype(np.int16)
        alike = ((np.abs(rgb[near].astype(np.int16) - c).max(axis=1) <= SEAM_ALIKE)
                 & (np.abs(rgb[beyond].astype(np.int16) - c).max(axis=1) <= SEAM_PLAIN))
        for px in (near, far):
            inside = bg.mask[px] & alike
            out[px[0][inside], px[1][inside]] = colour[inside]
            if source is not None:  # (its finer detail too: fine_background)
                source[px[0][inside], px[1][inside]] = np.stack(far, 1)[inside]
    return replace(bg, rgb=out, source=source)
