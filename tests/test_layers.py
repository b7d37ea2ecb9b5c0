import cv2
import numpy as np
import pytest
from helpers.synthetic import FAR, NEAR, SHIFT, H, W, constant, ramp, sphere, step_edge, with_bad_values
from helpers.layered import layered
from helpers.paths import V3_MODEL

from photo3d.layers import (
    STRETCH_PX, Cuts, LayerParams, _sides, build_layers, cut_beside_cuts, find_cuts, photo_lab, relax_uncut_steps,
    sanitize_inverse_depth, unsupported_cuts,
)


def test_step_edge_splits_exactly_at_the_edge():
    ldi = build_layers(step_edge(80), SHIFT)
    assert ldi.num_layers == 2
    # the only horizontal cuts are between columns 79 and 80, on every row; no vertical cuts
    cols = np.nonzero(ldi.cuts.h.any(axis=0))[0]
    assert cols.tolist() == [79]
    assert ldi.cuts.h[:, 79].all()
    assert not ldi.cuts.v.any()
    assert np.nonzero(ldi.near.any(axis=0))[0].tolist() == [80]
    assert np.nonzero(ldi.far.any(axis=0))[0].tolist() == [79]


def test_step_edge_hole_covers_the_parallax_on_the_foreground_side():
    ldi = build_layers(step_edge(80), SHIFT)
    cols = np.nonzero(ldi.hole.any(axis=0))[0]
    assert cols.min() == 80  # behind the foreground only
    parallax = (NEAR - FAR) * SHIFT
    assert cols.max() - 80 + 1 >= parallax  # wide enough for the largest view offset
    assert cols.max() - 80 + 1 <= parallax + 2 * LayerParams().margin_px
    assert np.allclose(ldi.bg_seed[ldi.hole], FAR)


@pytest.mark.parametrize("inv", [ramp(), constant()], ids=["ramp", "constant"])
def test_smooth_depth_is_never_split(inv):
    ldi = build_layers(inv, SHIFT)
    assert ldi.cuts.count() == 0
    assert not ldi.cuts.d1.any() and not ldi.cuts.d2.any()
    assert not ldi.hole.any()
    assert ldi.num_layers == 1


def test_sphere_in_front_of_plane_is_cut_along_its_silhouette_only():
    import cv2

    inv, disk = sphere()
    ldi = build_layers(inv, SHIFT)
    k = np.ones((3, 3), np.uint8)
    grown = cv2.dilate(disk.astype(np.uint8), k).astype(bool)
    shrunk = cv2.erode(disk.astype(np.uint8), k).astype(bool)
    rim = grown & ~shrunk
    # near side = the sphere's silhouette pixels, far side = the plane's, within a pixel
    assert ldi.near.any() and (ldi.near <= (rim & grown)).all()
    assert (ldi.far <= (rim & ~shrunk)).all()
    # a closed loop: the silhouette is cut all the way round (every direction has near pixels)
    ys, xs = np.nonzero(ldi.near)
    ang = np.degrees(np.arctan2(ys - 64, xs - 80)) % 360
    assert len(np.unique((ang // 30).astype(int))) == 12
    assert (ldi.hole <= grown).all()  # the hidden background lies behind the sphere
    assert ldi.hole.sum() > 0.3 * disk.sum()


def test_short_speckles_are_dropped():
    inv = constant(0.3)
    inv[60:63, 60:63] = 0.9  # a 3x3 blob: the median filter and the length test remove it
    inv[20, 20] = 0.9
    ldi = build_layers(inv, SHIFT)
    assert ldi.cuts.count() == 0 and not ldi.hole.any()


def test_small_jumps_are_not_cut():
    inv = step_edge(80)
    inv[:, 80:] = FAR * 1.03  # 3 % jump: below rel_jump
    assert build_layers(inv, SHIFT).cuts.count() == 0


def test_nan_and_inf_depth_are_sanitized():
    inv = with_bad_values()
    clean = sanitize_inverse_depth(inv)
    assert np.isfinite(clean).all() and (clean > 0).all()
    ldi = build_layers(inv, SHIFT)
    assert np.isfinite(ldi.inv).all() and np.isfinite(ldi.bg_seed).all()
    assert ldi.cuts.h[:, 79].mean() > 0.9  # the real edge survives
    assert sanitize_inverse_depth(np.full((4, 4), np.nan)).tolist() == np.ones((4, 4)).tolist()


def test_a_far_pocket_inside_an_object_is_closed_not_cut_out():
    """A dark eye that a network reads as farther than its face: the face's visible layer keeps
    no hole (no cut) inside it, the pocket takes the face's depth; its silhouette is still cut."""
    inv, disk = sphere()
    inv[58:68, 75:85] = FAR  # a 10x10 pocket in the middle of the sphere (1 % of this small image)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = (30, 80, 200)
    rgb[disk] = (220, 30, 30)
    rgb[58:68, 75:85] = (20, 20, 20)  # the eye is dark: its edge is supported by the photo
    params = LayerParams(min_island=0.01)
    for photo in (None, rgb):
        ldi = build_layers(inv, SHIFT, params, rgb=photo)
        assert ldi.near.any()
        inner = np.zeros_like(disk)
        inner[50:78, 66:94] = True
        assert not (ldi.near | ldi.far)[inner].any()
        assert ldi.inv[58:68, 75:85].min() > 0.5 * (NEAR + FAR)  # the pocket took the face's depth


def test_a_far_patch_on_an_oboe_is_closed_not_cut_through_it(shared_dir):
    """imagenet_det_0587, a musician's oboe: the network reads a highlight and a finger hole on it as
    farther than the oboe, a patch about three times an island's size, fully enclosed; its kept cuts
    opened a hole through the oboe at both extreme views, filled with a hard-edged cream blob (a by-eye
    review, helper-113, its second-worst defect).  For network depth a fragment behind all around it up
    to ``pocket`` (four times ``min_island``) takes the depth around it; at an island's size it is cut
    (in the first decision: snapped over a wider radius, ``ramp_px``, the patch is not cut either way)."""
    from dataclasses import replace

    from photo3d import pipeline as pl
    from photo3d.io import load_image

    photo = load_image(shared_dir / "data/photos/imagenet_det/imagenet_det_0587.jpg")
    opts = pl.ConvertOptions(model=V3_MODEL)  # (the map the patch was found on)
    small = pl.working_photo(photo, pl.working_shape(photo.width, photo.height, opts.working_side))
    disp, _ = pl.estimate_depth(photo, small, opts)
    geo = pl.to_geometry(disp, pl.camera_for(photo.width, photo.height, photo.focal_35mm), opts)
    assert small.shape[:2] == (305, 449)

    def cut_on_the_oboe(params):
        return int(pl.layer_depth(geo, replace(opts, layer_params=params), small).near[90:150, 60:150].sum())

    assert cut_on_the_oboe(LayerParams(pocket=LayerParams().min_island, ramp_px=0, edge_share=0.0, edge_px=0)) > 30
    assert cut_on_the_oboe(LayerParams()) == 0


def test_far_pockets_merges_a_pocket_behind_its_surroundings_not_a_fleck_in_front_beside_it():
    """``layers.far_pockets`` judges each fragment the cut-sized steps cut out on its own, against all
    the pixels around it: a far pocket beside a near fleck is behind its surroundings (merged), the
    fleck is in front of them (kept), whichever is larger (judged as one piece, both or neither went)."""
    from photo3d.layers import far_pockets, find_cuts

    for far_rows, near_rows in ((6, 4), (4, 6)):
        inv = constant(0.5)
        inv[40:40 + far_rows, 40:48] = 0.2  # a far pocket ...
        inv[40 + far_rows:40 + far_rows + near_rows, 40:48] = 0.9  # ... touching a near fleck below it
        pocket = far_pockets(inv, find_cuts(inv, SHIFT), 200, 0.5)
        assert pocket[40:40 + far_rows, 40:48].all(), (far_rows, near_rows)
        assert pocket.sum() == far_rows * 8, (far_rows, near_rows)


def test_a_small_fleck_in_front_is_not_cut_out():
    inv = constant(FAR)
    inv[40:46, 40:46] = NEAR  # a 6x6 fleck: below min_island of the image, too big for the median
    ldi = build_layers(inv, SHIFT)
    assert ldi.cuts.count() == 0 and not ldi.hole.any()


def test_steps_too_small_for_the_parallax_are_not_cut():
    inv = step_edge(80)
    # a 25 % jump (above rel_jump) that opens fewer pixels than min_segment_px at full parallax
    inv[:, 80:] = FAR * 1.25
    assert (inv[0, 80] - inv[0, 79]) * SHIFT < LayerParams().min_segment_px
    assert build_layers(inv, SHIFT).cuts.count() == 0


def test_far_band_takes_only_foreground_coloured_pixels():
    from photo3d.layers import far_band

    inv = step_edge(80)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = (30, 80, 200)  # background blue
    rgb[:, 80:] = (220, 30, 30)  # foreground red
    rgb[:, 79] = (200, 40, 50)  # the far-side edge column has the foreground's (blurred) colour
    ldi = build_layers(inv, SHIFT)
    band = far_band(ldi, 2, rgb)
    assert np.nonzero(band.any(axis=0))[0].tolist() == [79]
    assert band[:, 79].all()
    rgb[:, 79] = (40, 85, 195)  # a clean edge: nothing to re-synthesize
    assert not far_band(ldi, 2, rgb).any()


def test_a_sharpening_halo_beyond_the_far_band_is_found_up_to_halo_px():
    """A sharpened photo rims a dark object with a light line a few pixels wide beyond the cut:
    the 2-px band takes none of it (it is not the foreground's colour), and the inpainting read it,
    a pale blob in the fill beside a gull's wing tip.  ``far_halo`` finds it beyond the band as far
    as it differs from the background beyond, away from the foreground's colour (at most
    ``halo_px`` from the cut); a column of the background's own colour stops it, and a tint toward
    the foreground (a glow, an object out of focus) is not taken."""
    from photo3d.layers import far_band, far_halo

    inv = step_edge(80)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = (150, 150, 150)
    rgb[:, 80:] = (20, 20, 20)
    rgb[:, 79] = (90, 90, 90)  # the object's blurred edge on the far side: the band
    rgb[:, 75:79] = (185, 185, 185)  # a light rim four columns wide
    ldi = build_layers(inv, SHIFT)
    cols = lambda m: np.nonzero(m.any(axis=0))[0].tolist()  # noqa: E731
    band = far_band(ldi, 2, rgb)
    assert cols(band) == [79]
    halo = far_halo(ldi, band, rgb, LayerParams().halo_px)
    assert cols(halo) == [75, 76, 77, 78] and halo[:, 75:79].all()
    assert cols(far_halo(ldi, band, rgb, 4)) == [76, 77, 78]  # no farther than the reach (the band: 1)
    rgb[:, 76] = (150, 150, 150)  # the background's own colour: the halo stops there
    assert cols(far_halo(ldi, band, rgb, 6)) == [77, 78]
    rgb[:, 75:79] = (120, 120, 120)  # darker: toward the object's colour, not a sharpening halo
    assert not far_halo(ldi, band, rgb, 6).any()
    # a leaf against the sky: the rim is lighter than the sky, and JPEG's coarse colour tints it
    # toward the leaf's hue (along the sky-to-leaf direction it is no farther off than the sky)
    rgb[:] = (192, 224, 248)
    rgb[:, 80:] = (95, 100, 30)
    rgb[:, 79] = (150, 165, 140)
    rgb[:, 77:79] = (216, 232, 237)
    band = far_band(ldi, 2, rgb)
    assert cols(band) == [79]
    assert cols(far_halo(ldi, band, rgb, 6)) == [77, 78]


def test_jpegs_colour_bleed_beyond_the_far_band_is_part_of_the_halo():
    """JPEG keeps colour coarser than lightness: an orange cap's red bleeds three pixels into the
    grey-blue sky beyond the band, its lightness the sky's or darker.  Along the sky-to-cap
    direction (mostly lightness) it is no tint, and left on the background it was a red line
    tracing the moved cap in the sky at the extreme view (the caps, kodak24_0002; helper-135).
    ``far_halo`` takes it: the hue toward the foreground's, the lightness not toward it.  A glow
    (lighter as well) is not taken, nor the sky's own colour."""
    from photo3d.layers import far_band, far_halo

    inv = step_edge(80)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = (80, 90, 100)  # the sky
    rgb[:, 80:] = (250, 120, 80)  # the cap
    rgb[:, 79] = (127, 76, 65)  # its blurred edge on the far side: the band
    ldi = build_layers(inv, SHIFT)
    cols = lambda m: np.nonzero(m.any(axis=0))[0].tolist()  # noqa: E731
    for bleed in ((100, 84, 80), (92, 84, 84)):  # 7-13 levels redder, 1-3 darker (8-bit CIELAB)
        rgb[:, 76:79] = bleed
        band = far_band(ldi, 2, rgb)
        assert cols(band) == [79]
        halo = far_halo(ldi, band, rgb, LayerParams().halo_px)
        assert cols(halo) == [76, 77, 78] and halo[:, 76:79].all()
    rgb[:, 76:79] = (130, 105, 95)  # as red, and lighter: a glow round the cap
    assert not far_halo(ldi, far_band(ldi, 2, rgb), rgb, 6)[:, 76:78].any()
    rgb[:, 76:79] = (80, 90, 100)
    assert not far_halo(ldi, far_band(ldi, 2, rgb), rgb, 6).any()
    # a slanted edge: the cut steps diagonally and the band has gaps; the halo grows from the cap's edge
    # as well, and takes the bleed whole (93 % of it when it grew from the band and itself alone)
    yy, xx = np.mgrid[0:H, 0:W]
    edge = xx - 0.6 * yy - 50
    inv = np.where(edge > 0, NEAR, FAR).astype(np.float32)
    rgb[:] = (80, 90, 100)
    rgb[edge > 0] = (250, 120, 80)
    rgb[(edge <= 0) & (edge > -1)] = (127, 76, 65)
    bleed = (edge <= -1) & (edge > -4)
    rgb[bleed] = (100, 84, 80)
    ldi = build_layers(inv, SHIFT)
    band = far_band(ldi, 2, rgb)
    assert (band | far_halo(ldi, band, rgb, 6))[bleed & (yy > 10) & (yy < H - 10)].all()


def test_a_strip_between_two_cuts_at_an_intermediate_depth_is_found():
    """The sharpened network step at the bedroom's bed corner went in two steps, carpet 0.44 | 0.55 |
    bed 0.82, each cut: the 2-px strip between them hung between bed and carpet, a dark sliver at
    the extreme views.  ``middle_strips`` finds such a strip (and ``build_layers`` gives it the far
    side's depth, dropping the cut that is no longer across a step: ``_across_steps``); a single
    step, and a stair whose middle step is wider than ``MID_STRIP_PX``, are left alone."""
    from photo3d.layers import MID_STRIP_PX, Cuts, _across_steps, _sides, middle_strips

    def cut_at(inv: np.ndarray, cols: list[int]) -> Cuts:
        h, w = inv.shape
        ch = np.zeros((h, w - 1), bool)
        ch[:, cols] = True
        z = np.zeros((h - 1, w - 1), bool)
        return Cuts(ch, np.zeros((h - 1, w), bool), z, z.copy())

    inv = np.full((8, 24), 0.44, np.float32)
    inv[:, 10:12] = 0.55
    inv[:, 12:] = 0.82
    cuts = cut_at(inv, [9, 11])
    near, far = _sides(inv, cuts)
    mid = middle_strips(inv, near, far, MID_STRIP_PX, 0.06)
    assert np.nonzero(mid.any(axis=0))[0].tolist() == [10, 11] and mid[:, 10:12].all()
    inv[:, 10:12] = 0.44  # (what build_layers does)
    kept = _across_steps(cuts, inv, 0.06, mid)
    assert np.nonzero(kept.h.any(axis=0))[0].tolist() == [11]
    one = np.where(np.arange(24) < 12, 0.44, 0.82).astype(np.float32) * np.ones((8, 1), np.float32)
    assert not middle_strips(one, *_sides(one, cut_at(one, [11])), MID_STRIP_PX, 0.06).any()
    stair = one.copy()
    stair[:, 7:12] = 0.55  # a middle step 5 px wide: a surface of its own
    assert not middle_strips(stair, *_sides(stair, cut_at(stair, [6, 11])), MID_STRIP_PX, 0.06).any()


def test_the_beds_corner_is_cut_once(shared_dir):
    """The bedroom (osie_0015), one of issue 11's photos, with the bundled model: at the bed's
    front-left corner two cuts ran side by side, 1-2 px apart, with a strip of the bed's dark edge
    between them at an intermediate depth: a dark sliver sticking out of the bed into the carpet at
    the left extreme (helper-135).  Now no two cuts run within 2 px of each other anywhere in the
    photo (there were 5 such pairs); over the 44 hold-out photos the bundled model layers in two,
    133 such pairs became 69."""
    from helpers.layered import layered

    _, ldi = layered(shared_dir / "data/photos/osie/osie_0015.jpg")
    h, v = ldi.cuts.h, ldi.cuts.v
    assert h.sum() + v.sum() > 30  # (the bed's corner is cut)
    side_by_side = (h[:, :-1] & h[:, 1:]).sum() + (h[:, :-2] & h[:, 2:]).sum() + (v[:-1] & v[1:]).sum() + (v[:-2] & v[2:]).sum()
    assert side_by_side == 0
    assert not (ldi.near & ldi.far).any()


def _uncut_stretch(inv: np.ndarray, cuts: Cuts, shift: float) -> float:
    """The most that two neighbours no cut separates open at full parallax (pixels)."""
    pairs = ((cuts.h, inv[:, :-1], inv[:, 1:]), (cuts.v, inv[:-1], inv[1:]),
             (cuts.d1, inv[:-1, :-1], inv[1:, 1:]), (cuts.d2, inv[:-1, 1:], inv[1:, :-1]))
    return max(float((np.abs(a - b) * shift)[~c].max(initial=0.0)) for c, a, b in pairs)


def test_a_step_running_on_past_its_cuts_end_is_eased():
    """A 0.2 -> 0.8 step down a column, cut from row 64 on; above, the sharpened map was eased
    into the smooth surface, a ramp 48 px wide, but for four rows just past the cut's end, where
    the step ran on at full height, uncut: a 24-px spike at the extreme views.  Relaxed, the step
    is tapered round the cut's end: no uncut pair opens more than twice ``STRETCH_PX`` but at the
    cut's very tip (8 px there, across the diagonal), and along the cut, beyond the relaxed reach,
    the step keeps its full height."""
    inv = step_edge(80)
    cuts = find_cuts(inv, SHIFT)
    inv[:60] = np.clip(FAR + (np.arange(W) - 56) / 48 * (NEAR - FAR), FAR, NEAR)
    keep = np.zeros(inv.shape, bool)
    keep[64:] = True  # the cut: from row 64 down
    cuts = Cuts(cuts.h & keep[:, :-1], cuts.v & keep[:-1], cuts.d1 & keep[:-1, :-1], cuts.d2 & keep[:-1, :-1])
    assert _uncut_stretch(inv, cuts, SHIFT) == pytest.approx((NEAR - FAR) * SHIFT)
    out, kept = relax_uncut_steps(inv, cuts, SHIFT, LayerParams())
    assert _uncut_stretch(out, kept, SHIFT) < 0.4 * (NEAR - FAR) * SHIFT
    assert _uncut_stretch(out[:62], Cuts(kept.h[:62], kept.v[:61], kept.d1[:61], kept.d2[:61]), SHIFT) < 2 * STRETCH_PX
    assert kept.h[64:, 79].all() and not kept.h[:60, 79].any()  # the cut stays where it was
    assert np.array_equal(out[80:], inv[80:]) and np.array_equal(out[:, :50], inv[:, :50])
    assert out[64, 79] > FAR + 0.05 and out[64, 80] < NEAR - 0.05  # tapered at the cut's end


def test_the_door_knobs_edge_stretches_into_no_spike(shared_dir):
    """kodak24_0001 with the bundled model: the knob's cut ends on its left side, and beyond it the
    sharpened step ran on uncut for three rows, a white spike sticking out of the knob at the left
    extreme (uncut neighbours opened 12.7 px; over the 44 hold-out photos that layer in two, 265
    pairs across or along the grid opened more than 3 px, now 2).  The visible layer as ``convert``
    builds it: across or along the grid none opens 2 px, diagonally none 4 px (a cut's tip)."""
    from photo3d import pipeline as pl
    from photo3d.io import load_image

    opts = pl.ConvertOptions()
    photo = load_image(shared_dir / "data/photos/kodak24/kodak24_0001.jpg")
    small = pl.working_photo(photo, pl.working_shape(photo.width, photo.height, opts.working_side))
    disp, _ = pl.estimate_depth(photo, small, opts)
    geo = pl.to_geometry(disp, pl.camera_for(photo.width, photo.height, photo.focal_35mm), opts)
    ldi = pl.layer_depth(geo, opts, small)
    inv, cuts = pl.visible_layer(ldi, pl.inpaint(small, ldi, opts))
    assert cuts.count() > 100  # (the knob is cut)
    s, h, v = geo.shift_px_per_inv, cuts.h, cuts.v
    assert _uncut_stretch(inv, Cuts(h, v, np.ones_like(cuts.d1), np.ones_like(cuts.d2)), s) < 2.0
    assert _uncut_stretch(inv, cuts, s) < 4.0


def test_a_step_inside_an_object_without_a_colour_edge_is_not_cut():
    """Network depth often steps inside a uniformly coloured object (a duck's body): with the
    photo, that branch is dropped even though it joins the object's real, colour-supported
    silhouette; the silhouette itself stays cut all round."""
    inv, disk = sphere()
    inv[disk] = 0.6
    lower = disk & (np.arange(H)[:, None] >= 64)
    inv[lower] = 0.9  # the lower half of the object steps nearer: no colour edge there
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = (30, 80, 200)
    rgb[disk] = (220, 30, 30)
    with_photo = build_layers(inv, SHIFT, rgb=rgb)
    without = build_layers(inv, SHIFT)
    inner = np.zeros_like(disk)
    inner[58:70, 56:104] = True  # across the object's middle, away from its silhouette
    inner &= cv2.erode(disk.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert (without.near | without.far)[inner].any()  # depth alone would cut there
    assert not (with_photo.near | with_photo.far)[inner].any()
    ys, xs = np.nonzero(with_photo.near)
    ang = np.degrees(np.arctan2(ys - 64, xs - 80)) % 360
    assert len(np.unique((ang // 30).astype(int))) == 12


def test_sharp_and_blurred_depth_maps_are_told_apart(shared_dir):
    """Middlebury's measured disparity is a sharp map; the same map blurred like a network's
    output is not (it gets the network treatment: sharpened and snapped to the photo)."""
    from photo3d.layers import is_sharp_map

    for scene in ("Baby1", "Cloth3", "Midd2", "Wood2"):
        disp = cv2.imread(str(shared_dir / "data/middlebury2006" / scene / "disp1.png"), cv2.IMREAD_GRAYSCALE)
        disp = cv2.resize(disp.astype(np.float32), (640, 480), interpolation=cv2.INTER_AREA)
        assert is_sharp_map(disp), scene
        assert not is_sharp_map(cv2.GaussianBlur(disp, (0, 0), 2.0)), scene
    assert is_sharp_map(constant())


def test_a_steep_fold_in_a_sharp_map_stretches_but_its_anti_aliased_step_is_cut_cleanly():
    """Sharp map: a steep ramp (a fold, 15 px wide, each pixel's jump below a cut's) is a surface,
    not cut; a step anti-aliased over one pixel is cut once, with no one-pixel sliver of
    intermediate depth cut out of it."""
    inv = np.full((H, W), FAR, np.float32)
    x = np.arange(W, dtype=np.float32)
    # left half: a fold rising from FAR to NEAR over 15 px; right half: a step with one mid pixel
    fold = np.clip((x - 30) / 15.0, 0, 1)
    inv[:, :] = FAR + (NEAR - FAR) * fold
    inv[:, 100:] = FAR
    inv[:, 120] = 0.5 * (FAR + NEAR)  # anti-aliased pixel
    inv[:, 121:] = NEAR
    ldi = build_layers(inv, SHIFT)
    cols = np.nonzero(ldi.cuts.h.any(axis=0))[0].tolist()
    assert all(c >= 99 for c in cols), cols  # the fold (columns 30-45) is not cut
    assert len([c for c in cols if c >= 110]) == 1, cols  # the step: one cut, no sliver


def test_a_narrow_dark_groove_read_as_farther_does_not_tear_the_surface_but_a_wide_gap_is_cut():
    """Network depth reads dark grain or a crack as farther: a 4-px groove across a board (with a
    colour edge on both sides, so the colour test would keep its cuts) takes the board's depth and
    is not cut; a 16-px gap through to the far wall is a real gap and stays cut."""
    inv = np.full((H, W), FAR, np.float32)
    inv[20:110, 20:140] = NEAR  # the board
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = (40, 90, 200)
    rgb[20:110, 20:140] = (200, 140, 60)
    inv[20:110, 50:54] = FAR  # a dark groove, 4 px
    rgb[20:110, 50:54] = (40, 25, 10)
    inv[20:110, 100:116] = FAR  # a gap, 16 px, showing the wall
    rgb[20:110, 100:116] = (40, 90, 200)
    ldi = build_layers(inv, SHIFT, rgb=rgb)
    cut = ldi.near | ldi.far
    assert not cut[30:100, 46:58].any()  # the groove: no cut
    assert cut[30:100, 97:101].any(axis=1).all() and cut[30:100, 114:118].any(axis=1).all()
    assert build_layers(inv, SHIFT, rgb=rgb, params=LayerParams(close_px=0)).far[30:100, 46:58].any()


@pytest.mark.parametrize("width", [2, 12])
def test_the_background_behind_an_edge_is_the_strip_beside_it_unless_the_strip_is_thin(width):
    """Near object, an intermediate strip, the far wall (a shelf's edge between a box and the
    wall, a snapped network edge's terrace).  A 12-px strip is a surface of its own: what the
    object hides is more of it (before, the hole took the wall's depth, and the inpainting
    masked the strip as in front of it and read the wall's colour: a white fleck on a blue tape
    roll, white lines along the cut even at zero offset).  A 2-px strip (an anti-aliased step)
    is skipped."""
    mid = 0.35  # the strip-to-wall step opens 6 px + margin: a 12-px strip is not all hidden itself
    inv = step_edge(80)
    inv[:, 80 - width:80] = mid
    ldi = build_layers(inv, SHIFT)
    assert ldi.hole[:, 80:].any()
    seed = ldi.bg_seed[ldi.hole & (np.arange(W) >= 80)[None, :]]
    if width > LayerParams().strip_px:
        assert np.allclose(seed, mid, atol=0.01), np.unique(seed.round(3))
    else:
        assert np.allclose(seed, FAR, atol=0.01), np.unique(seed.round(3))


def test_a_thin_thing_read_as_behind_the_surface_around_it_is_not_cut():
    """A water tower's white leg against the sky, in a depth ramp that puts the sky left of the leg
    nearer than the leg (a far groove 8 px wide): the cut along the leg's left edge gave the sky's
    hole the leg's colour, a second leg at the extreme views (a by-eye review, helper-95).  A far
    strip this thin with the near side's colour beyond it is not cut there; the same step with
    another surface beyond the strip (grass, not sky) still is, and so is the leg without the rule."""
    sky, white, grass = (100, 140, 200), (230, 230, 230), (60, 140, 50)
    inv = np.full((120, 160), 0.64, np.float32)
    inv[:, :80], inv[:, 80:88] = 0.8, 0.42

    def photo(beyond):
        rgb = np.zeros((120, 160, 3), np.uint8)
        rgb[:, :80], rgb[:, 80:88], rgb[:, 88:] = sky, white, beyond
        return rgb

    def cut_left_of_the_leg(rgb, params=LayerParams()):
        return build_layers(inv, SHIFT, params, rgb=rgb).near[20:100, 76:80].any()

    assert not cut_left_of_the_leg(photo(sky))
    assert cut_left_of_the_leg(photo(grass))
    assert cut_left_of_the_leg(photo(sky), LayerParams(thin_px=0))


def test_a_short_excerpt_of_a_long_soft_step_is_not_cut():
    """A post's edge out of focus against a white wall: the step runs its whole length, but only
    where a spider's thread crosses it is the colour edge strong enough to keep a cut, so the views
    showed a crisp notch of wall there and a stretched edge everywhere else (a by-eye review,
    helper-95).  A kept cut under ``excerpt`` of the step it lies on is not cut; the same step with
    a colour edge all along is."""
    inv = np.full((240, 160), 0.5, np.float32)
    inv[:, :80] = 0.8
    soft = np.full((240, 160, 3), 150, np.uint8)
    soft[:, :80] = 140  # (a faint edge: under min_edge_contrast)
    soft[100:124, 60:80] = 40  # (a dark thread crossing it)
    crisp = soft.copy()
    crisp[:, :80] = 40

    def cut_rows(rgb, params=LayerParams()):
        return int(build_layers(inv, SHIFT, params, rgb=rgb).near[:, 74:80].any(axis=1).sum())

    assert cut_rows(soft, LayerParams(excerpt=0.0)) > 0  # (without the rule: the thread's stretch is cut)
    assert cut_rows(soft) == 0
    assert cut_rows(crisp) > 200


def test_a_cut_without_a_colour_edge_across_most_of_its_step_is_not_cut():
    """A network's ramp that the snap made a wobbly step along an edge passes the support test
    (a colour edge within two pixels), but its cut wanders off the edge and back and tore jagged
    fragments at the extreme views.  ``unsupported_cuts``: a piece of the kept cuts where under
    ``edge_share`` of its step (each pair weighed by its relative jump) sees a colour edge across
    it (one pixel beyond each side) is not cut; one on the colour edge all along is, and one on it
    along three quarters of its rows; and one on it along half its rows, where the other half is a
    step a third as high relative to its depth (a cut fading out beyond its object's end)."""
    inv = np.full((120, 200), FAR, np.float32)
    inv[:, :40] = NEAR  # a step on the colour edge at x = 40
    inv[:, 60:100] = NEAR  # steps at x = 60 and x = 100, inside one colour
    inv[:, 120:140] = NEAR  # steps at x = 120 and x = 140: a colour edge along 3/4 of the rows
    inv[:60, 160:180] = NEAR  # steps at x = 160 and x = 180: a colour edge along the upper half ...
    inv[60:, 160:180] = FAR + 0.06  # ... and a lower step without one, 0.23 of its depth (the upper 0.75)
    rgb = np.zeros((120, 200, 3), np.uint8)
    rgb[:] = (200, 90, 40)
    rgb[:, :40] = (240, 240, 235)
    rgb[:90, 120:140] = (240, 240, 235)
    rgb[:60, 160:180] = (240, 240, 235)
    cuts = find_cuts(inv, SHIFT)
    near, far = _sides(inv, cuts)
    lab = photo_lab(rgb)
    dropped = unsupported_cuts(inv, lab, cuts, near, far, LayerParams().edge_share, 0, 20)
    assert not dropped[:, 38:42].any()
    assert dropped[:, 59:61].all() and dropped[:, 99:101].all()  # (the pixels on both sides of each)
    assert not dropped[:, 118:142].any()
    assert not dropped[:, 158:182].any()
    assert (near | far)[60:, 159:161].all()  # (the lower step is cut too)
    assert unsupported_cuts(inv, lab, cuts, near, far, 0.8, 0, 20)[:, 118:142].any()  # (3/4: under 0.8)
    full = inv.copy()
    full[60:, 160:180] = NEAR  # (the lower step as high as the upper: half the step without an edge)
    assert unsupported_cuts(full, lab, cuts, near, far, LayerParams().edge_share, 0, 20)[:, 158:182].any()


def test_a_kept_cuts_stretch_without_a_colour_edge_across_it_is_not_cut():
    """A cut kept as a whole may still run on through one colour at an end (the coffee's rim into
    the spoon's tip): ``unsupported_cuts`` leaves out its stretches where under a third of the step
    within ``edge_px`` pixels sees a colour edge across it, and what is then left under ``2 *
    min_edge_len`` pixels; the rest stays cut."""
    inv = np.full((120, 100), FAR, np.float32)
    inv[:, :40] = NEAR  # a step at x = 40 ...
    rgb = np.zeros((120, 100, 3), np.uint8)
    rgb[:] = (200, 90, 40)
    rgb[:90, :40] = (240, 240, 235)  # ... on a colour edge along its upper 90 rows
    cuts = find_cuts(inv, SHIFT)
    near, far = _sides(inv, cuts)
    lab, p = photo_lab(rgb), LayerParams()
    assert not unsupported_cuts(inv, lab, cuts, near, far, p.edge_share, 0, p.min_edge_len).any()  # (3/4: kept)
    dropped = unsupported_cuts(inv, lab, cuts, near, far, p.edge_share, p.edge_px, p.min_edge_len)
    assert dropped[95:, 39:41].all()
    assert not dropped[:85].any()
    rgb[:25, :40] = (200, 90, 40)  # (a colour edge along rows 25-89 only: 65 rows, kept; along 10, not)
    rgb[35:90, :40] = (200, 90, 40)
    dropped = unsupported_cuts(inv, photo_lab(rgb), cuts, near, far, 0.0, p.edge_px, p.min_edge_len)
    assert dropped[:, 39:41].all()  # (what is left, 10 rows less the ends, is under 2 * min_edge_len pixels)


def test_the_coffees_cut_does_not_run_on_into_the_spoon():
    """examples/coffee.jpg, the bundled model: the network gives the lower part of the spoon's tip
    (grey, behind the cup's white rim, on orange wood) the cup's depth, and the snap agrees (grey is
    nearer white than orange); the rim's cut ran on across the spoon, and its hole was filled with
    wood: wood-coloured flecks in the spoon at the extreme views (a by-eye review).  That stretch sees
    no colour edge across it and is not cut (``edge_px``); the rim still is."""
    import cv2
    from helpers.paths import REPO

    coffee = REPO / "examples" / "coffee.jpg"
    small, ldi = layered(coffee)
    assert small.shape[:2] == (385, 609)
    lab = photo_lab(small)
    grey = (lab[..., 0] > 140) & (lab[..., 0] < 220) & (lab[..., 1] < 142)  # (the wood's a* is over 150)
    spoon = np.zeros_like(grey)
    spoon[60:100, 400:432] = cv2.erode(grey.astype(np.uint8), np.ones((5, 5), np.uint8))[60:100, 400:432] > 0
    assert spoon.sum() > 350
    before = int((layered(coffee, LayerParams(edge_px=0))[1].near & spoon).sum())
    after = int((ldi.near & spoon).sum())
    assert before > 25 and after < 0.3 * before, (before, after)
    assert ldi.num_layers == 2 and ldi.near[30:70, 360:400].sum() > 30  # (the rim is still cut)


def test_the_bed_and_the_hat_are_not_cut_where_their_cuts_wander_off_the_edge(shared_dir):
    """With the bundled model, the bedroom (osie_0015) was cut along part of the bed's far corner and
    the portrait (kodak24_0003) along part of the hat's crown against the curtain, two of issue 11's
    photos: the network's depth is a ramp there, the snap made it a wobbly step, and at the extreme
    views the cut tore jagged fragments, an orange patch of wall over the curtain's foot and flat
    lavender scraps (a by-eye review).  Under two thirds of those cuts' steps see a colour edge
    across them (``unsupported_cuts``): they are not cut, and the edge stretches."""
    bed = shared_dir / "data/photos/osie/osie_0015.jpg"
    hat = shared_dir / "data/photos/kodak24/kodak24_0003.jpg"
    off = LayerParams(edge_share=0.0, edge_px=0)
    for path, box in ((bed, np.s_[350:405, 595:690]), (hat, np.s_[0:40, 420:480])):
        assert layered(path, off)[1].near[box].sum() > 50  # (the case)
        assert not layered(path)[1].near[box].any()


def test_a_full_step_right_beside_a_kept_cut_is_cut_but_one_farther_off_is_not():
    """A diagonal edge cut along most of its stairs: the stair corner the cut misses (network depth
    is eased into the smooth surface after the cuts are chosen) joined the edge's pixel to the wall
    beside it, and its faces stretched that pixel into a thin line at the extreme views.  A step
    that passes the cut test with both pixels within a pixel of a kept cut's side is cut; a step of
    the same height six pixels away from any cut is left to stretch."""
    yy, xx = np.mgrid[:60, :80]
    inv = np.where(xx > yy, NEAR, FAR).astype(np.float32)
    inv[:, 70:] = np.where(xx[:, 70:] >= 76, 0.5, FAR)  # another step, away from the cut
    full = find_cuts(inv, SHIFT)
    cuts = find_cuts(inv, SHIFT)
    cuts.h[:, 74:] = cuts.v[:, 74:] = cuts.d1[:, 74:] = cuts.d2[:, 73:] = False  # (only the diagonal is kept)
    cuts.h[30, 30] = cuts.v[30, 31] = cuts.d1[29, 30] = cuts.d2[29, 30] = cuts.d2[30, 30] = False  # a corner missed
    near, far = _sides(inv, cuts)
    assert near.any()
    out = cut_beside_cuts(inv, cuts, near, far, SHIFT, LayerParams())
    assert out.h[30, 30] and out.v[30, 31]  # the corner is cut again
    assert (out.h[:, :70] == full.h[:, :70]).all() and (out.v[:, :70] == full.v[:, :70]).all()
    assert not out.h[:, 74:].any() and not out.v[:, 74:].any()  # the step away from the cut is not


def test_the_caps_rims_are_not_drawn_as_scratches_over_the_wall(shared_dir, tmp_path, monkeypatch):
    """osie_0004, two dark caps against a pale wall: where a cut along a cap's top ended, or missed a
    stair corner, the eased depth joined the cap's dark rim to the wall by a face, drawn as dark
    scratches over the wall at the extreme views (a by-eye review, helper-110).  The visible layer's
    pixels drawn from faces stretched 2.5 times or more, at both extremes: 133 with neither the
    steps beside the cuts cut (``cut_beside_cuts``) nor the wide ramps snapped (``ramp_px``), 83
    with the first, 49 with both.  Since the steps that still stretch are eased
    (``relax_uncut_steps``) these are 12, 1 and 3: a handful of pixels, none a scratch."""
    import photo3d.layers as layers
    from helpers.gltf import assert_valid_glb
    from helpers.paths import benchmark

    from photo3d.pipeline import ConvertOptions, convert_file

    nv = benchmark("novel_view")

    def streaks(tag, params=layers.LayerParams(ramp_px=0)):
        dst = tmp_path / f"{tag}.glb"
        convert_file(shared_dir / "data/photos/osie/osie_0004.jpg", dst, ConvertOptions(model=V3_MODEL, layer_params=params))
        assert_valid_glb(dst)
        meshes, texture, tree = nv.load_glb_meshes(dst.read_bytes())
        return sum(nv.streak_pixels(meshes, texture, tree, off) for off in (-1.0, 1.0))

    snapped = streaks("defaults", layers.LayerParams())
    after = streaks("after")
    monkeypatch.setattr(layers, "cut_beside_cuts", lambda inv, cuts, *a: cuts)
    before = streaks("before")
    assert after < 0.7 * before and before < 40, (before, after)
    assert snapped <= 10 and after <= 10, (snapped, after)


def test_a_wide_blurred_silhouette_is_cut_on_the_colour_edge():
    """A network may blur an object's edge over more pixels than the colour snap's window and put
    the ramp's middle off the object (v4 on a yellow cap against the sky, kodak24_0002: 8 working
    pixels out, blurred over about 20).  The cut then ran through the sky, and round a pale
    highlight along the rim that the narrow window took for sky.  Snapped over ``ramp_px`` to the
    colours of the ramp's plateaus (``layers.snap_ramps``), it runs along the cap's own edge: no
    near-side pixel outside the cap (896 without), none farther than a pixel inside its edge."""
    yy, xx = np.mgrid[:H, :W]
    d = np.sqrt((yy - 64) ** 2 + (xx - 80) ** 2)
    cap = d <= 36
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:] = (80, 90, 100)
    rgb[cap] = (220, 230, 40)
    rgb[(d > 28) & cap & (xx > 100) & (yy < 64)] = (240, 240, 190)  # a pale highlight along the rim
    rgb = np.clip(rgb + np.random.default_rng(0).normal(0, 3, rgb.shape), 0, 255).astype(np.uint8)
    inv = cv2.GaussianBlur(np.where(d <= 44, NEAR, FAR).astype(np.float32), (0, 0), 5)

    before = build_layers(inv, SHIFT, LayerParams(ramp_px=0, edge_share=0.0, edge_px=0), rgb=rgb)
    assert (before.near & ~cap).sum() > 300  # (the case: a cut out in the sky; with edge_share, not cut at all)
    ldi = build_layers(inv, SHIFT, LayerParams(), rgb=rgb)
    assert ldi.near.sum() > 150  # cut all round
    assert not (ldi.near & ~cap).any()
    assert d[ldi.near].min() >= 35.0
    assert not (ldi.far & (d < 36)).any()


def test_the_yellow_caps_rim_does_not_tear_off_against_the_sky(shared_dir, tmp_path):
    """kodak24_0002, caps on a wall against the sky, with the bundled model: a thin sliver of the
    yellow cap's rim floated off it against the sky at the right extreme, with dark flecks along the
    edge at the left: 41 fragments of one layer inside another (``speckle_count``) at the right
    extreme, 900 px wide (a by-eye review of v4's 3D photos).  With the wide ramps snapped the cut
    runs along the caps' edges: 13."""
    from helpers.gltf import assert_valid_glb
    from helpers.paths import benchmark

    from photo3d.pipeline import ConvertOptions, convert_file

    nv = benchmark("novel_view")
    dst = tmp_path / "caps.glb"
    rep = convert_file(shared_dir / "data/photos/kodak24/kodak24_0002.jpg", dst, ConvertOptions())
    assert rep["layers"] == 2
    assert_valid_glb(dst)
    meshes, texture, tree = nv.load_glb_meshes(dst.read_bytes())
    focal, size, eye, rot = nv.viewer_camera(tree, 900, (1.0, 0.0))
    _, _, layer = nv.rasterize(meshes, texture, focal, size, eye, rot=rot, with_layer=True)
    assert nv.speckle_count(layer) <= 20
