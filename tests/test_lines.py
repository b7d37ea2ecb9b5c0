"""Straight lines stay straight: depth made affine along the photo's long straight lines (photo3d.lines)."""

import numpy as np
from helpers.paths import V3_MODEL

from photo3d.lines import line_segments, straighten_lines


def _striped(h: int = 240, w: int = 320, period: int = 16) -> np.ndarray:
    """A facade of vertical ribs: light and dark stripes, each ``period / 2`` pixels wide."""
    rgb = np.full((h, w, 3), 60, np.uint8)
    for x0 in range(0, w, period):
        rgb[:, x0:x0 + period // 2] = 200
    return rgb


def _nonaffine_along_columns(inv: np.ndarray, cols: range, rows: slice) -> float:
    """Largest departure of ``inv`` from its best affine fit down each of ``cols`` (over ``rows``)."""
    worst = 0.0
    for x in cols:
        v = inv[rows, x].astype(np.float64)
        t = np.arange(len(v))
        fit = np.polyval(np.polyfit(t, v, 1), t)
        worst = max(worst, float(np.abs(v - fit).max()))
    return worst


def _network_geometry(path):
    """The convert options, the working photo and v3's geometry of the photo at ``path`` (the network these
    tests were written on: its ripple along the lines is the case; v4, bundled since session 39, ripples less)."""
    from photo3d import pipeline as pl
    from photo3d.io import load_image

    photo = load_image(path)
    opts = pl.ConvertOptions(model=V3_MODEL)
    small = pl.working_photo(photo, pl.working_shape(photo.width, photo.height, opts.working_side))
    disp, _ = pl.estimate_depth(photo, small, opts)
    return opts, small, pl.to_geometry(disp, pl.camera_for(photo.width, photo.height, photo.focal_35mm), opts)


def test_depth_that_wobbles_along_straight_ribs_is_made_affine_along_them():
    rgb = _striped()
    h, w = rgb.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    plane = 0.3 + 0.4 * y / h + 0.1 * x / w  # a plane: affine inverse depth
    wobble = 0.05 * np.sin(2 * np.pi * y / 120.0)  # a network's ripple along the ribs: the views bend them
    out = straighten_lines(plane + wobble, rgb, 0.08)
    inner = slice(20, h - 20)
    cols = range(40, w - 40, 8)
    before = _nonaffine_along_columns(plane + wobble, cols, inner)
    after = _nonaffine_along_columns(out, cols, inner)
    assert before > 0.045
    assert after < 0.25 * before, (before, after)
    # the plane itself is kept: the correction removes the ripple, not the slope
    assert np.abs(out - plane)[inner, 40:-40].mean() < 0.5 * np.abs(wobble)[inner, 40:-40].mean()


def test_a_step_along_a_line_is_kept_and_a_photo_without_lines_is_left_alone():
    h, w = 200, 300
    rgb = np.full((h, w, 3), 50, np.uint8)
    rgb[:, 150:] = 210  # one long vertical edge: an occlusion edge, near on the left
    inv = np.where(np.arange(w)[None, :] < 150, 0.9, 0.3).astype(np.float32) * np.ones((h, 1), np.float32)
    out = straighten_lines(inv, rgb, 0.08)
    assert len(line_segments(rgb, 0.08 * w)) >= 1
    assert np.abs(out - inv).max() < 1e-3  # each side is affine already: nothing moves, the step stays whole
    flat = np.full((h, w, 3), 128, np.uint8)
    noisy = (inv + np.random.default_rng(0).normal(0, 0.01, inv.shape)).astype(np.float32)
    assert straighten_lines(noisy, flat, 0.08) is noisy  # no lines: untouched
    assert straighten_lines(noisy, rgb, 0.0) is noisy  # switched off


def test_the_photo_may_come_as_floats_or_with_alpha():
    rgb = _striped()
    want = line_segments(rgb, 40)
    assert len(want) > 10
    for other in (rgb.astype(np.float32) / 255.0, np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])):
        assert np.allclose(line_segments(other, 40), want)


def test_tiny_and_degenerate_inputs_pass_through():
    for shape in ((1, 7), (3, 3), (7, 1)):
        inv = np.full(shape, 0.5, np.float32)
        out = straighten_lines(inv, np.zeros(shape + (3,), np.uint8), 0.08)
        assert out.shape == shape and np.isfinite(out).all()


def test_the_facade_ribs_bend_far_less_in_the_views(shared_dir):
    """urban100_0015, a facade of long vertical ribs: at the viewer's extremes each pixel moves with its
    inverse depth, so a rib bends as far as the depth along it departs from affine. Measured on the
    mesh's own depth (the layering stage's output) along the photo's long lines, in working pixels of
    shift at full parallax, with and without straightening."""
    from dataclasses import replace

    from photo3d import pipeline as pl
    from photo3d.layers import LayerParams

    opts, small, geo = _network_geometry(shared_dir / "data/photos/urban100/urban100_0015.jpg")
    seg = line_segments(small, 0.15 * max(small.shape[:2]))  # the ribs (long lines only)
    assert len(seg) >= 20

    def bend_px(ldi) -> float:
        worst = []
        for x1, y1, x2, y2 in seg:
            n = int(np.hypot(x2 - x1, y2 - y1))
            t = np.linspace(0, 1, n)
            for side in (-3, 3):  # the surface a few pixels off the edge, on each side
                nx, ny = -(y2 - y1) / n * side, (x2 - x1) / n * side
                xs = np.clip(np.round(x1 + t * (x2 - x1) + nx), 0, small.shape[1] - 1).astype(int)
                ys = np.clip(np.round(y1 + t * (y2 - y1) + ny), 0, small.shape[0] - 1).astype(int)
                v = ldi.inv[ys, xs].astype(np.float64)
                worst.append(np.abs(v - np.polyval(np.polyfit(t, v, 1), t)).max() * geo.shift_px_per_inv)
        return float(np.median(worst))

    before = bend_px(pl.layer_depth(geo, replace(opts, layer_params=LayerParams(straight_len=0.0)), small))
    after = bend_px(pl.layer_depth(geo, opts, small))
    assert before > 3.0, before  # the network's ripple: ribs bent by several pixels at the extremes
    assert after < 0.5 * before, (before, after)


def _pole(h: int = 240, w: int = 320) -> tuple[np.ndarray, np.ndarray, slice]:
    """A grey pole 6 px wide in front of blue sky above row 100 and a white wall below; its depth, as a
    network gives it, that of what lies behind it (far sky, a near wall): the views would kink it."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:100] = (60, 90, 170)
    rgb[100:] = (235, 235, 230)
    cols = slice(157, 163)
    rgb[20:220, cols] = (120, 120, 120)
    inv = np.where(np.arange(h)[:, None] < 100, 0.2, 0.6).astype(np.float32) * np.ones((1, w), np.float32)
    inv[:10, :10] = 0.05  # (the farthest point of the map lies elsewhere)
    return rgb, inv, cols


def test_a_thin_pole_gets_depth_of_its_own_affine_along_it():
    rgb, inv, cols = _pole()
    out = straighten_lines(inv, rgb, 0.08)
    rows = slice(24, 216)
    before = _nonaffine_along_columns(inv, range(cols.start, cols.stop), rows)
    after = _nonaffine_along_columns(out, range(cols.start, cols.stop), rows)
    assert before > 0.15 and after < 0.02, (before, after)  # a step at the horizon; now a straight ramp
    # the pole's pixels and its edges moved; the sky and the wall a few pixels off it did not
    assert np.abs(out - inv)[rows, cols].mean() > 0.05
    assert np.abs(out - inv)[:, :150].max() == 0 and np.abs(out - inv)[:, 170:].max() == 0


def test_a_bundle_of_bars_and_a_band_between_two_surfaces_are_not_made_one_strip():
    rgb, inv, _ = _pole()
    # a band between two surfaces: the edge of a near kerb 8 px below a far horizon; the depth beyond its
    # two edges differs, so it is no thin object in front of one background
    h, w = 240, 320
    band = np.full((h, w, 3), 200, np.uint8)
    band[:100] = 80
    band[100:108] = 140
    step = np.where(np.arange(h)[:, None] < 104, 0.2, 0.7).astype(np.float32) * np.ones((1, w), np.float32)
    assert np.array_equal(straighten_lines(step, band, 0.08), step)
    # a window of many bars 4 px apart (wider than a thin object all together): left to the lines pass
    bars = np.full((h, w, 3), 220, np.uint8)
    for x0 in range(100, 220, 8):
        bars[20:220, x0:x0 + 4] = 40
    from photo3d.lines import merge_collinear, straighten_strips
    seg = merge_collinear(line_segments(bars, 0.04 * w), 0.05 * w)
    assert np.array_equal(straighten_strips(inv, seg, 0.08 * w), inv)


def test_a_pole_broken_by_the_detector_at_the_horizon_is_one_line():
    from photo3d.lines import merge_collinear
    seg = np.array([[10, 10, 10, 100], [10.5, 104, 10.5, 200], [30, 10, 30, 100]], np.float32)
    merged = merge_collinear(seg, 16)
    assert len(merged) == 2
    long = merged[np.argmax(np.abs(merged[:, 3] - merged[:, 1]))]
    assert sorted([long[1], long[3]]) == [10, 200]


def test_a_sign_pole_is_not_kinked_at_the_horizon(shared_dir, monkeypatch):
    """osie_0180, a one-way sign on a thin pole in front of the sea's horizon and a white seawall: the
    network gives the pole no depth of its own (the sky's above the horizon, the wall's below), and a
    by-eye review (helper-113) saw it kinked at the horizon, bent opposite ways at the two extremes.
    The mesh's depth along the pole's centre line (placed by hand on the photo), departure from
    affine in working pixels of shift at full parallax, with thin strips straightened and without."""
    from photo3d import lines
    from photo3d import pipeline as pl

    opts, small, geo = _network_geometry(shared_dir / "data/photos/osie/osie_0180.jpg")
    h, w = small.shape[:2]
    t = np.linspace(0, 1, 200)
    xs = np.round((0.7727 + t * (0.8399 - 0.7727)) * (w - 1)).astype(int)  # the foot, above the kerb ...
    ys = np.round((0.7626 + t * (0.1733 - 0.7626)) * (h - 1)).astype(int)  # ... to below the sign

    def bend_px() -> float:
        v = pl.layer_depth(geo, opts, small).inv[ys, xs].astype(np.float64)
        return float(np.abs(v - np.polyval(np.polyfit(t, v, 1), t)).max() * geo.shift_px_per_inv)

    after = bend_px()
    monkeypatch.setattr(lines, "straighten_strips", lambda inv, *a: inv)
    before = bend_px()
    assert before > 1.5, before  # kinked by 2.3 px at the extremes (0.9 with the pole straightened)
    assert after < 0.5 * before, (before, after)


def test_a_blob_across_a_line_between_two_surfaces_at_one_depth_is_straightened_but_not_at_a_step():
    """A line between two surfaces at one depth (a door's frame in its wall) with a smooth blob of wrong
    depth across it, a fifth of the map's range off affine: more than the lines stage corrects along an
    occlusion edge, straightened here; the same line ending in a step of the map (a facade's rib at the
    sky, whose straightening pulled the facade's edge into spikes) is left as it was."""
    from photo3d.lines import MAX_RESIDUAL, MAX_RESIDUAL_ONE_DEPTH

    h, w = 240, 320
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.full((h, w, 3), 60, np.uint8)
    rgb[:, 160:] = 200  # a long vertical line at x = 160
    inv = (0.5 + 0.2 * np.exp(-((y - 120) / 35) ** 2) * np.exp(-((x - 160) / 80) ** 2)).astype(np.float32)
    inv[-10:, :10] = 0.1  # (the farthest point of the map lies elsewhere)
    span = float(inv.max() - inv.min())
    before = _nonaffine_along_columns(inv, range(156, 165, 4), slice(30, 230)) / span
    assert MAX_RESIDUAL < before < MAX_RESIDUAL_ONE_DEPTH, before
    out = straighten_lines(inv, rgb, 0.08)
    assert _nonaffine_along_columns(out, range(156, 165, 4), slice(30, 230)) / span < 0.05
    rgb[:30], inv[:30] = 128, 0.1  # now the line ends in a far region's step
    out = straighten_lines(inv, rgb, 0.08)
    assert np.abs(out - inv)[30:, 140:180].max() < 1e-3  # (the far region's own edge is affine on both sides)


def test_a_door_frame_beside_a_blob_of_wrong_depth_is_not_bowed(shared_dir, monkeypatch):
    """imagenet_sample_0554, a wooden door in a white wall: the network puts a far blob on the wall beside
    it, and the door's long left frame (a line between two surfaces at about one depth, neither end at a
    step) departed from affine by more than the lines stage corrected (a quarter of the map's range), so
    the views bowed it by 8-10 px, opposite ways at the two extremes (a by-eye review, helper-115). Its
    bend in the mesh's depth along the frame and a pixel off it, at full parallax, with the larger
    allowance for such lines and without (3.3 -> 2.1 px; by eye the frame is straight at both extremes)."""
    from photo3d import lines
    from photo3d import pipeline as pl

    opts, small, geo = _network_geometry(shared_dir / "data/photos/imagenet_sample/imagenet_sample_0554.jpg")
    h, w = small.shape[:2]
    t = np.linspace(0, 1, 120)
    x = (0.8185 + t * (0.8006 - 0.8185)) * (w - 1)  # the frame's left edge, from above the step ...
    y = (0.8013 + t * (0.5134 - 0.8013)) * (h - 1)  # ... to its top

    def bend_px() -> float:
        inv = pl.layer_depth(geo, opts, small).inv
        worst = 0.0
        for dx in (-1, 0, 1):
            v = inv[np.round(y).astype(int), np.round(x + dx).astype(int)].astype(np.float64)
            worst = max(worst, float(np.abs(v - np.polyval(np.polyfit(t, v, 1), t)).max() * geo.shift_px_per_inv))
        return worst

    after = bend_px()
    monkeypatch.setattr(lines, "MAX_RESIDUAL_ONE_DEPTH", lines.MAX_RESIDUAL)
    before = bend_px()
    assert before > 3.0, before
    assert after < 0.7 * before, (before, after)
