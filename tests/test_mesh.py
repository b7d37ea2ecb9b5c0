import numpy as np
import pytest
from helpers.synthetic import H, SHIFT, W, constant, ramp, sphere, step_edge, with_bad_values

from photo3d.inpaint import inpaint_background
from photo3d.layers import build_layers, find_cuts
from photo3d.mesh import grid_to_image, triangulate, unproject

TOL = 0.5 / SHIFT  # half a pixel at full parallax
ALL = np.ones((H, W), bool)


def edges_of(faces):
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, count = np.unique(e, axis=0, return_counts=True)
    return uniq, count


def components(n, faces):
    parent = np.arange(n)

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b, c in faces:
        for x, y in ((a, b), (b, c)):
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[rx] = ry
    used = np.unique(faces)
    return len({find(v) for v in used})


def on_border(yx):
    return (yx[:, 0] == 0) | (yx[:, 0] == H - 1) | (yx[:, 1] == 0) | (yx[:, 1] == W - 1)


def check_manifold_and_boundary(m, allowed_boundary):
    """Every edge has 1 or 2 faces (no cracks, no fins); boundary edges only where allowed."""
    uniq, count = edges_of(m.faces)
    assert count.max() <= 2
    boundary = uniq[count == 1]
    ends = m.grid_yx[boundary.ravel()]
    ok = on_border(ends) | allowed_boundary[ends[:, 0], ends[:, 1]]
    assert ok.all(), f"{(~ok).sum()} boundary edge ends inside the layer"


def positions(m, inv):
    st = grid_to_image(m.grid_yx, (H, W))
    return unproject(st, m.inv, focal=200.0, size=(W, H))


@pytest.mark.parametrize("inv,share", [(constant(), 0.01), (ramp(), 0.03)], ids=["constant", "ramp"])
def test_planar_depth_gives_a_tiny_crack_free_mesh(inv, share):
    """Far fewer vertices than pixels; a plane receding fourfold across the photo needs a few more than
    a flat one, so its texture does not slide (test_no_triangle_shifts_its_texture_half_a_pixel_on_a_steep_plane)."""
    m = triangulate(inv, ALL, None, TOL)
    assert m.num_vertices < share * H * W
    check_manifold_and_boundary(m, np.zeros((H, W), bool))
    assert components(m.num_vertices, m.faces) == 1
    # it covers the whole image: area of the triangles in grid units
    yx = m.grid_yx[m.faces].astype(float)
    area = 0.5 * np.abs((yx[:, 1, 1] - yx[:, 0, 1]) * (yx[:, 2, 0] - yx[:, 0, 0]) - (yx[:, 2, 1] - yx[:, 0, 1]) * (yx[:, 1, 0] - yx[:, 0, 0]))
    assert area.sum() == pytest.approx((H - 1) * (W - 1))


def test_curved_depth_is_refined_only_where_needed():
    inv, disk = sphere()
    ldi = build_layers(inv, SHIFT)
    m = triangulate(ldi.inv, ALL, ldi.cuts, TOL)
    inside = disk[m.grid_yx[:, 0], m.grid_yx[:, 1]]
    density_in = inside.sum() / disk.sum()
    density_out = (~inside).sum() / (~disk).sum()
    assert density_in > 3 * density_out
    yy, xx = np.mgrid[:H, :W]
    far_away = (yy - 64) ** 2 + (xx - 80) ** 2 > 60**2  # > 30 px outside the silhouette
    v_far = far_away[m.grid_yx[:, 0], m.grid_yx[:, 1]]
    assert v_far.sum() / far_away.sum() < 0.02
    assert m.num_vertices < 0.5 * H * W


def test_step_edge_mesh_is_cut_and_watertight_on_each_side():
    ldi = build_layers(step_edge(80), SHIFT)
    m = triangulate(ldi.inv, ALL, ldi.cuts, TOL)
    x = m.grid_yx[m.faces][:, :, 1]
    assert ((x <= 79).all(1) | (x >= 80).all(1)).all()  # no triangle bridges the discontinuity
    assert components(m.num_vertices, m.faces) == 2
    check_manifold_and_boundary(m, ldi.near | ldi.far)
    assert (m.alpha == 255).all() and np.array_equal(m.inv, ldi.inv[m.grid_yx[:, 0], m.grid_yx[:, 1]])


def test_the_near_side_of_a_cut_draws_the_seam_up_to_the_photos_edge():
    """Skirts: the cells between a cut's two sides (step_edge: near from column 80 on) are drawn by
    the near side, their far corners copied at the near side's depth with alpha 0; with the photo,
    alpha places the silhouette at its edge: halfway where the photo's edge is, the whole cell
    where the photo is plain around the cut."""
    inv = step_edge(80)
    ldi = build_layers(inv, SHIFT)
    plain = triangulate(ldi.inv, ALL, ldi.cuts, TOL)
    m = triangulate(ldi.inv, ALL, ldi.cuts, TOL, skirt=True)
    copies = m.inv != ldi.inv[m.grid_yx[:, 0], m.grid_yx[:, 1]]
    assert copies.any() and (m.grid_yx[copies, 1] == 79).all() and (m.alpha[copies] == 0).all()
    assert np.allclose(m.inv[copies], ldi.inv[0, 80])  # at the near side's depth
    assert (m.alpha[~copies & (m.grid_yx[:, 1] == 80)] == 255).all()  # halfway without the photo
    assert len(m.faces) == len(plain.faces) + 2 * (H - 1)  # the seam's two triangles a row, nothing else
    x = m.grid_yx[m.faces][:, :, 1]
    assert ((x <= 79).all(1) | (x >= 80).all(1) | copies[m.faces].any(1)).all()  # only the skirts span it
    rows = (m.grid_yx[:, 0] > 1) & (m.grid_yx[:, 0] < H - 2)
    for near_rgb, far_rgb, a_near, a_copy in (((200, 40, 30), (40, 90, 200), 255, 0),  # the edge halfway
                                              ((90, 90, 90), (92, 90, 88), 255, 128)):  # plain: the whole cell
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[:, :80], rgb[:, 80:] = far_rgb, near_rgb
        m = triangulate(ldi.inv, ALL, ldi.cuts, TOL, skirt=True, rgb=rgb)
        assert (m.alpha[copies & rows] == a_copy).all()
        assert (m.alpha[~copies & rows & (m.grid_yx[:, 1] == 80)] == a_near).all()


def test_background_layer_is_a_crack_free_sheet_behind_the_hole():
    inv, disk = sphere()
    rgb = np.zeros((H, W, 3), np.uint8)
    ldi = build_layers(inv, SHIFT)
    bg = inpaint_background(rgb, ldi)
    m = triangulate(bg.inv, bg.mask, find_cuts(bg.inv, SHIFT), TOL)
    assert bg.mask[m.grid_yx[:, 0], m.grid_yx[:, 1]].all()
    check_manifold_and_boundary(m, ~bg.mask | ~np.pad(bg.mask, 1)[2:, 1:-1] | ~np.pad(bg.mask, 1)[:-2, 1:-1]
                                | ~np.pad(bg.mask, 1)[1:-1, 2:] | ~np.pad(bg.mask, 1)[1:-1, :-2])
    import cv2

    covered = np.zeros((H, W), np.uint8)
    cv2.fillPoly(covered, list(m.grid_yx[:, ::-1][m.faces].astype(np.int32)), 1)
    assert covered[ldi.hole].mean() > 0.97


@pytest.mark.parametrize("make", [constant, ramp, step_edge, lambda: sphere()[0], with_bad_values],
                         ids=["constant", "ramp", "step", "sphere", "nan-inf"])
def test_all_vertices_finite_and_facing_the_camera(make):
    ldi = build_layers(make(), SHIFT)
    m = triangulate(ldi.inv, ALL, ldi.cuts, TOL, skirt=True)
    p = positions(m, ldi.inv)
    assert np.isfinite(p).all() and (p[:, 2] < 0).all()
    n = np.cross(p[m.faces[:, 1]] - p[m.faces[:, 0]], p[m.faces[:, 2]] - p[m.faces[:, 0]])
    to_cam = -p[m.faces].mean(1)
    assert ((n * to_cam).sum(1) > 0).all()  # counter-clockwise seen from the camera
    assert m.faces.min() >= 0 and m.faces.max() < m.num_vertices


def test_no_triangle_shifts_its_texture_half_a_pixel_on_a_steep_plane():
    """A floor receding to a tenth of its nearest inverse depth is exactly planar, so the depth
    error alone would draw it with the largest cells; but a flat 3D triangle carries its texture
    linearly while the photo is its projection, so inside a large cell whose corners differ in
    depth the texture slides (straight lines bend even at the photo's own viewpoint).  Every edge of
    every triangle: L (1 - sqrt(r)) / (1 + sqrt(r)) <= TEXTURE_SHIFT_PX (0.5) grid pixels; the old
    rule gave cells of 32 px and shifts of ~8 px."""
    from photo3d.mesh import TEXTURE_SHIFT_PX

    h, w = 129, 161
    inv = np.repeat(np.linspace(0.1, 1.0, h, dtype=np.float32)[:, None], w, axis=1)  # floor: far at the top
    m = triangulate(inv, np.ones((h, w), bool), None, tol_inv=0.01)
    yx = m.grid_yx.astype(np.float64)
    worst = 0.0
    for a, b in ((0, 1), (1, 2), (2, 0)):
        p, q = m.faces[:, a], m.faces[:, b]
        length = np.hypot(*(yx[p] - yx[q]).T)
        lo = np.minimum(inv[tuple(yx[p].T.astype(int))], inv[tuple(yx[q].T.astype(int))])
        hi = np.maximum(inv[tuple(yx[p].T.astype(int))], inv[tuple(yx[q].T.astype(int))])
        r = np.sqrt(lo / hi)
        worst = max(worst, float((length * (1 - r) / (1 + r)).max()))
    assert worst <= TEXTURE_SHIFT_PX + 1e-6, worst
    assert m.num_vertices < 0.25 * h * w  # still far fewer vertices than pixels
