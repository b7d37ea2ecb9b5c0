import numpy as np
import pytest
from synthetic import FAR, NEAR, SHIFT, constant, ramp, sphere, step_edge, with_bad_values

from photo3d.layers import LayerParams, build_layers, sanitize_inverse_depth


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
