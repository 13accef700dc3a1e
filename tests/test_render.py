"""Tests of dsfnet.render: analytic scenes, the slow twin, edge cases, interpolation (numbers asserted)."""
from __future__ import annotations

import dataclasses
import doctest
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

import dsfnet.render.attributes
import dsfnet.render.raster
from dsfnet.geometry import model_to_image, pose_para_to_matrix
from dsfnet.render import (
    Raster,
    interpolate,
    interpolation_matrix,
    rasterize,
    rasterize_reference,
    render_colors,
)

BOTH = pytest.mark.parametrize("raster_fn", [rasterize, rasterize_reference], ids=["fast", "reference"])


def square(h: int, w: int, z: np.ndarray | None = None, pad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two triangles covering [-pad, w-1+pad] x [-pad, h-1+pad]; z per corner (default 0)."""
    xy = np.array([[-pad, -pad], [w - 1 + pad, -pad], [w - 1 + pad, h - 1 + pad], [-pad, h - 1 + pad]])
    zz = np.zeros(4) if z is None else z
    return np.column_stack([xy, zz]), np.array([[0, 1, 2], [0, 2, 3]])


# ----------------------------------------------------------------------------------------------------
# Analytic tilted plane


@BOTH
def test_tilted_plane_depth_bary_and_interpolation(raster_fn) -> None:
    h, w = 23, 31
    a, b, c = 0.37, -1.21, 5.5

    def plane(x, y):
        return a * x + b * y + c

    verts, tris = square(h, w, pad=1.5)
    verts[:, 2] = plane(verts[:, 0], verts[:, 1])
    r = raster_fn(verts, tris, h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    assert r.mask.all()
    assert r.depth.dtype == np.float32 and r.face_id.dtype == np.int32 and r.bary.dtype == np.float32
    assert r.depth.shape == (h, w) and r.bary.shape == (h, w, 3)
    np.testing.assert_allclose(r.depth, plane(xx, yy), atol=1e-4, rtol=0)
    np.testing.assert_allclose(r.bary.sum(-1), 1.0, atol=1e-6)
    assert r.bary.min() >= 0.0
    # barycentrics reproduce the pixel centre (x=col, y=row)
    corners_xy = verts[tris[r.face_id], :2]                              # (H, W, 3, 2)
    np.testing.assert_allclose(np.einsum("hwk,hwkc->hwc", r.bary, corners_xy), np.stack([xx, yy], -1), atol=1e-4)
    # an attribute linear in x, y interpolates exactly
    attr = np.column_stack([verts[:, 0], verts[:, 1], 3 * verts[:, 0] - 2 * verts[:, 1] + 7])
    out = interpolate(r, tris, attr)
    assert out.shape == (h, w, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.stack([xx, yy, 3 * xx - 2 * yy + 7], -1), atol=1e-4)


@BOTH
def test_convention_pixel_centres_and_inclusive_edges(raster_fn) -> None:
    """Corners exactly on pixel centres: every centre of the closed square is covered, none outside."""
    h, w = 6, 9
    verts = np.array([[2.0, 1, 0], [6, 1, 0], [6, 4, 0], [2, 4, 0]])
    r = raster_fn(verts, np.array([[0, 1, 2], [0, 2, 3]]), h, w)
    expected = np.zeros((h, w), dtype=bool)
    expected[1:5, 2:7] = True                                            # rows y=1..4, cols x=2..6
    np.testing.assert_array_equal(r.mask, expected)
    # the shared diagonal is a tie at equal z: the lower triangle id wins
    assert r.face_id[1, 2] == 0 and r.face_id[4, 6] == 0 and r.face_id[4, 2] == 1 and r.face_id[1, 6] == 0


def test_convention_pixel_centre_offsets() -> None:
    """A thin triangle around x = 3 covers column 3 only; centres are at integer x, y (no half-pixel shift)."""
    verts = np.array([[2.9, -5, 1.0], [3.1, -5, 1.0], [3.0, 20, 1.0]])
    r = rasterize(verts, np.array([[0, 1, 2]]), 8, 8)
    assert set(np.flatnonzero(r.mask.any(axis=0)).tolist()) == {3}
    assert r.mask[:, 3].sum() == 8


# ----------------------------------------------------------------------------------------------------
# Rotated cube


def _cube(rotation: np.ndarray, scale: float, centre_px: float, size: int):
    """Unit cube [-1, 1]³ in a y-up, right-handed model frame with triangles counter-clockwise seen from
    outside; posed into image pixels. Returns (image verts, triangles, model-frame outward normals after
    rotation (12, 3), rotation)."""
    corners = np.array(list(itertools.product([-1.0, 1.0], repeat=3)))
    tris = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            quad = np.flatnonzero(corners[:, axis] == sign)               # 4 corners of this face
            normal = np.zeros(3)
            normal[axis] = sign
            centre = corners[quad].mean(0)
            # order the 4 corners counter-clockwise around the outward normal
            u = corners[quad[0]] - centre
            vdir = np.cross(normal, u)
            ang = np.arctan2((corners[quad] - centre) @ vdir, (corners[quad] - centre) @ u)
            q = quad[np.argsort(ang)]
            tris += [[q[0], q[1], q[2]], [q[0], q[2], q[3]]]
    tris = np.array(tris)
    e = corners[tris]
    normals = np.cross(e[:, 1] - e[:, 0], e[:, 2] - e[:, 0])
    assert np.all(np.einsum("ij,ij->i", normals, e.mean(1)) > 0)          # outward, counter-clockwise
    t = [centre_px, size - centre_px, 0.0]                                # centre lands at pixel (c, c)
    img = model_to_image(corners, rotation, scale, t, size)
    return img, tris, normals @ rotation.T


def _cube_interval(rotation: np.ndarray, scale: float, centre_px: float, size: int):
    """Analytic z-interval [z_far, z_near] of the cube along each pixel's viewing ray (image frame)."""
    img_axes = model_to_image(np.eye(3), rotation, 1.0, [0, 0, 0], 0.0)  # image images of model axes (rows)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    lo = np.full((size, size), -np.inf)
    hi = np.full((size, size), np.inf)
    for k in range(3):
        d = img_axes[k] / np.dot(img_axes[k], img_axes[k])               # dual row: coordinate k = d·(p - c)
        # |d·(p - c)| <= scale with p = (x, y, z): solve for z
        base = d[0] * (xx - centre_px) + d[1] * (yy - centre_px)
        z1, z2 = (-scale - base) / d[2], (scale - base) / d[2]
        lo = np.maximum(lo, np.minimum(z1, z2))
        hi = np.minimum(hi, np.maximum(z1, z2))
    return lo, hi


@pytest.mark.parametrize("angles", [(0.4, 0.7, 0.2), (-0.9, 0.3, 1.1), (0.25, -2.2, -0.5)])
def test_rotated_cube_front_faces_and_depth(angles) -> None:
    size, scale, c = 64, 17.0, 31.3
    rot = pose_para_to_matrix(*angles)
    verts, tris, normals = _cube(rot, scale, c, size)
    r = rasterize(verts, tris, size, size)
    z_far, z_near = _cube_interval(rot, scale, c, size)

    front = set(np.flatnonzero(normals[:, 2] > 0).tolist())              # outward normal toward +z (camera)
    assert len(front) == 6 and all(abs(normals[i, 2]) > 0.1 for i in range(12))
    assert set(np.unique(r.face_id[r.mask]).tolist()) == front

    inside = z_near - z_far > 1e-3
    outside = z_near - z_far < -1e-3
    assert r.mask[inside].all() and not r.mask[outside].any()
    assert inside.sum() > 900
    both = r.mask & inside
    np.testing.assert_allclose(r.depth[both], z_near[both], atol=1e-4)    # max z over the faces

    # the reference agrees, culling back faces changes nothing, culling front faces shows the far side
    ref = rasterize_reference(verts, tris, size, size)
    np.testing.assert_allclose(ref.depth[both], r.depth[both], atol=1e-5)
    np.testing.assert_array_equal(ref.face_id[inside], r.face_id[inside])
    culled = rasterize(verts, tris, size, size, cull_backfaces=True)
    np.testing.assert_array_equal(culled.face_id, r.face_id)
    np.testing.assert_array_equal(culled.depth, r.depth)
    back = rasterize(verts, tris, size, size, cull_backfaces=True, front_face="cw")
    assert set(np.unique(back.face_id[back.mask]).tolist()) == set(range(12)) - front
    np.testing.assert_allclose(back.depth[both & back.mask], z_far[both & back.mask], atol=1e-4)


# ----------------------------------------------------------------------------------------------------
# Overlaps, ties, draw order


@BOTH
def test_nearer_triangle_wins_in_both_orders(raster_fn) -> None:
    far = np.array([[0.0, 0.0, 1.0], [20.0, 0.0, 1.0], [0.0, 20.0, 1.0]])
    near = np.array([[4.0, 4.0, 3.0], [15.0, 4.0, 3.0], [4.0, 15.0, 3.0]])
    for first, second in ((far, near), (near, far)):
        verts = np.concatenate([first, second])
        r = raster_fn(verts, np.array([[0, 1, 2], [3, 4, 5]]), 20, 20)
        near_id = 1 if second is near else 0
        assert r.face_id[6, 6] == near_id and r.depth[6, 6] == 3.0       # overlap
        assert r.face_id[1, 1] == 1 - near_id and r.depth[1, 1] == 1.0   # far only
        assert r.face_id[19, 19] == -1 and r.depth[19, 19] == -np.inf and np.all(r.bary[19, 19] == 0)
        assert np.count_nonzero(r.depth == 3.0) == 78                    # centres with x, y >= 4, x + y <= 19


@BOTH
def test_exact_tie_lowest_id_wins(raster_fn) -> None:
    tri = np.array([[0.0, 0.0, 2.0], [9.0, 0.0, 2.0], [0.0, 9.0, 2.0]])
    verts = np.concatenate([tri, tri, tri])
    r = raster_fn(verts, np.array([[3, 4, 5], [0, 1, 2], [6, 8, 7]]), 10, 10)
    assert np.unique(r.face_id[r.mask]).tolist() == [0]
    assert r.mask.sum() == 55                                            # x + y <= 9, inclusive


def test_tiled_grid_ties_match_reference() -> None:
    """A grid mesh with corners on pixel centres and constant z: every shared edge is an exact tie."""
    n, step = 6, 3
    g = np.arange(n) * step
    xx, yy = np.meshgrid(g, g)
    verts = np.column_stack([xx.ravel(), yy.ravel(), np.zeros(n * n)]).astype(np.float64)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tris = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    size = (n - 1) * step + 1
    fast = rasterize(verts, tris, size, size)
    ref = rasterize_reference(verts, tris, size, size)
    assert fast.mask.all()
    np.testing.assert_array_equal(fast.face_id, ref.face_id)
    np.testing.assert_allclose(fast.bary, ref.bary, atol=1e-6)
    # a grid point is a corner of up to 6 triangles; the lowest id wins
    assert fast.face_id[step, step] == 0


# ----------------------------------------------------------------------------------------------------
# Fast vs reference on random meshes


def _random_mesh(seed: int, h: int, w: int):
    rng = np.random.default_rng(seed)
    n_small, n_big = 60, 6
    centres = rng.uniform([-5, -5], [w + 5, h + 5], size=(n_small + n_big, 2))
    radii = np.concatenate([rng.uniform(0.3, 4.0, n_small), rng.uniform(10, 40, n_big)])
    pts = centres[:, None, :] + radii[:, None, None] * rng.normal(size=(n_small + n_big, 3, 2))
    z = rng.uniform(-10, 10, size=(n_small + n_big, 3))
    verts = np.concatenate([pts, z[..., None]], axis=-1).reshape(-1, 3)
    tris = np.arange(verts.shape[0]).reshape(-1, 3)
    return verts, tris[rng.permutation(tris.shape[0])]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_fast_matches_reference_on_random_meshes(seed: int) -> None:
    h, w = 37, 45
    verts, tris = _random_mesh(seed, h, w)
    fast = rasterize(verts, tris, h, w)
    ref = rasterize_reference(verts, tris, h, w)
    np.testing.assert_array_equal(fast.mask, ref.mask)
    assert fast.mask.sum() > 300
    differ = fast.face_id != ref.face_id
    assert differ.sum() == 0 or np.abs(fast.depth[differ] - ref.depth[differ]).max() < 1e-9  # exact ties only
    np.testing.assert_allclose(fast.depth[fast.mask], ref.depth[ref.mask], atol=1e-5, rtol=0)
    np.testing.assert_allclose(fast.bary[~differ], ref.bary[~differ], atol=1e-5)
    # speed-only option: a tiny chunk size gives bit-identical output
    small = rasterize(verts, tris, h, w, chunk_size=7)
    for field in ("depth", "face_id", "bary"):
        np.testing.assert_array_equal(getattr(small, field), getattr(fast, field))
    # culling: each half agrees with the reference too
    for front in ("ccw", "cw"):
        f = rasterize(verts, tris, h, w, cull_backfaces=True, front_face=front)
        g = rasterize_reference(verts, tris, h, w, cull_backfaces=True, front_face=front)
        np.testing.assert_array_equal(f.face_id, g.face_id)


def test_fast_matches_reference_on_dense_occluding_mesh() -> None:
    """A face-like grid mesh (sub-pixel triangles, a bump that hides its own flank after a yaw)."""
    n = 41
    u, v = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    z = 0.4 * np.cos(u) * np.cos(v) + 0.8 * np.exp(-(u**2 + v**2) / 0.05)
    model = np.column_stack([u.ravel(), v.ravel(), z.ravel()])
    img = model_to_image(model, pose_para_to_matrix(0.2, 0.9, 0.1), 20.0, [24.0, 24.0, 0.0], 48)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tris = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    fast = rasterize(img, tris, 48, 48)
    ref = rasterize_reference(img, tris, 48, 48)
    assert fast.mask.sum() > 500
    np.testing.assert_array_equal(fast.face_id, ref.face_id)
    np.testing.assert_allclose(fast.depth[fast.mask], ref.depth[ref.mask], atol=1e-5, rtol=0)
    np.testing.assert_allclose(fast.bary, ref.bary, atol=1e-5)
    # the bump hides part of the mesh: some triangles whose box holds a centre never win a pixel
    hidden = rasterize(img, tris[np.setdiff1d(np.arange(len(tris)), np.unique(fast.face_id[fast.mask]))], 48, 48)
    assert (hidden.mask & fast.mask).sum() > 20


def test_large_triangle_with_small_chunks() -> None:
    verts, tris = square(64, 80, z=np.array([0.0, 1, 2, 3]), pad=0.5)
    a = rasterize(verts, tris, 64, 80)
    b = rasterize(verts, tris, 64, 80, chunk_size=100)
    assert a.mask.all()
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.face_id, b.face_id)


# ----------------------------------------------------------------------------------------------------
# Edge cases and errors


@BOTH
@pytest.mark.parametrize("tris", [np.zeros((0, 3), dtype=np.int64), np.array([], dtype=np.int64), []])
def test_empty_triangle_list(raster_fn, tris) -> None:
    r = raster_fn(np.zeros((3, 3)), tris, 4, 5)
    assert r.face_id.shape == (4, 5) and not r.mask.any()
    assert np.all(r.depth == -np.inf) and np.all(r.bary == 0)
    assert not interpolate(r, np.zeros((0, 3), dtype=int), np.ones((3, 2))).any()


@BOTH
def test_triangles_outside_and_partly_outside(raster_fn) -> None:
    verts = np.array([[-30.0, -30, 0], [-10, -30, 0], [-10, -10, 0],       # fully outside (up-left)
                      [100, 5, 0], [120, 5, 0], [100, 9, 0],               # fully outside (right)
                      [-1e7, -1e7, 1], [1e7, -1e7, 1], [0, 1e7, 1]])        # huge, covers everything
    r = raster_fn(verts, np.array([[0, 1, 2], [3, 4, 5]]), 10, 12)
    assert not r.mask.any()
    r = raster_fn(verts, np.array([[0, 1, 2], [6, 7, 8]]), 10, 12)
    assert r.mask.all() and np.all(r.face_id == 1)
    partial = np.array([[-5.0, -5, 0], [10, -5, 0], [-5, 10, 0]])         # clipped: centres with x + y <= 5
    assert raster_fn(partial, np.array([[0, 1, 2]]), 10, 12).mask.sum() == 1 + 2 + 3 + 4 + 5 + 6


@BOTH
def test_degenerate_triangles_are_skipped(raster_fn) -> None:
    verts = np.array([[1.0, 1, 0], [5, 5, 0], [3, 3, 0],                    # collinear
                      [2, 2, 9], [2, 2, 9], [6, 1, 9],                      # repeated corner
                      [1, 1, 5], [1, 1, 5], [1, 1, 5]])                     # a point, on a pixel centre
    tris = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    r = raster_fn(verts, tris, 8, 8)
    assert not r.mask.any()
    good = np.array([[0.0, 0, 1], [7, 0, 1], [0, 7, 1]])
    r = raster_fn(np.concatenate([verts, good]), np.concatenate([tris, [[9, 10, 11]]]), 8, 8)
    assert np.unique(r.face_id[r.mask]).tolist() == [3] and r.mask.sum() == 36


@BOTH
def test_nan_vertices_raise(raster_fn) -> None:
    verts = np.array([[0.0, 0, 0], [5, 0, 0], [0, np.nan, 0], [np.inf, 1, 1]])
    with pytest.raises(ValueError, match="not finite"):
        raster_fn(verts, np.array([[0, 1, 2]]), 6, 6)
    with pytest.raises(ValueError, match="not finite"):
        raster_fn(verts, np.array([[0, 1, 3]]), 6, 6)
    # an unreferenced NaN vertex is never read
    ok = raster_fn(verts, np.array([[0, 1, 1], [1, 0, 0]]), 6, 6)
    assert not ok.mask.any()


@pytest.mark.parametrize(
    ("verts", "tris", "h", "w", "match"),
    [
        (np.zeros((3, 2)), [[0, 1, 2]], 4, 4, r"\(V, 3\).*\(3, 2\)"),
        (np.zeros((3, 3)), [[0, 1, 3]], 4, 4, r"\[0, 2\].*\[0, 3\]"),
        (np.zeros((3, 3)), [[0, 1, -1]], 4, 4, "range"),
        (np.zeros((3, 3)), [[0.0, 1.0, 2.0]], 4, 4, "integer dtype"),
        (np.zeros((3, 3)), [[0, 1]], 4, 4, r"\(T, 3\)"),
        (np.zeros((3, 3)), [[0, 1, 2]], 0, 4, "height"),
        (np.zeros((3, 3)), [[0, 1, 2]], 4, 2.5, "width"),
    ],
)
def test_bad_inputs_raise(verts, tris, h, w, match) -> None:
    for fn in (rasterize, rasterize_reference):
        with pytest.raises(ValueError, match=match):
            fn(verts, np.asarray(tris), h, w)


def test_bad_options_raise() -> None:
    verts, tris = square(4, 4)
    with pytest.raises(ValueError, match="front_face"):
        rasterize(verts, tris, 4, 4, front_face="up")
    with pytest.raises(ValueError, match="chunk_size"):
        rasterize(verts, tris, 4, 4, chunk_size=0)


def test_raster_is_frozen() -> None:
    r = rasterize(*square(3, 3), 3, 3)
    assert isinstance(r, Raster) and r.shape == (3, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.depth = np.zeros((3, 3))  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------------
# Interpolation helpers


def test_interpolate_errors_and_matrix() -> None:
    h, w = 9, 11
    verts, tris = square(h, w, z=np.array([1.0, 2, 3, 4]), pad=0.25)
    r = rasterize(verts, tris, h, w)
    with pytest.raises(ValueError, match="attributes has only 3 rows"):
        interpolate(r, tris, np.ones((3, 2)))
    with pytest.raises(ValueError, match="refers to triangle 1"):
        interpolate(r, tris[:1], np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"\(V, C\)"):
        interpolate(r, tris, np.ones(4))
    attr = np.arange(8.0).reshape(4, 2) ** 2
    m = interpolation_matrix(r, tris, 4)
    assert m.shape == (h * w, 4) and m.nnz <= 3 * h * w
    np.testing.assert_allclose((m @ attr).reshape(h, w, 2), interpolate(r, tris, attr), atol=1e-4)
    np.testing.assert_allclose(np.asarray(m.sum(axis=1)).ravel(), 1.0, atol=1e-6)
    # interpolating z reproduces the depth buffer
    np.testing.assert_allclose(interpolate(r, tris, verts[:, 2:])[..., 0], r.depth, atol=1e-5)


def test_render_colors_background_and_values() -> None:
    verts = np.array([[0.0, 0, 0], [6, 0, 0], [0, 6, 0]])
    colors = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])
    img = render_colors(verts, np.array([[0, 1, 2]]), colors, 7, 8, background=(0.1, 0.2, 0.3))
    assert img.shape == (7, 8, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(img[0, 6], [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(img[2, 3], [1 / 6, 3 / 6, 2 / 6], atol=1e-6)
    np.testing.assert_allclose(img[6, 7], [0.1, 0.2, 0.3], atol=1e-7)
    with pytest.raises(ValueError, match="background"):
        render_colors(verts, np.array([[0, 1, 2]]), colors, 7, 8, background=(1, 2))


# ----------------------------------------------------------------------------------------------------
# Docs and layering


@pytest.mark.parametrize("module", [dsfnet.render.raster, dsfnet.render.attributes])
def test_docstring_examples(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0


def test_render_imports_at_most_geometry() -> None:
    folder = Path(dsfnet.render.raster.__file__).parent
    for path in folder.glob("*.py"):
        for mod in re.findall(r"^\s*(?:from|import)\s+(dsfnet\.\w+)", path.read_text(), flags=re.M):
            assert mod in ("dsfnet.render", "dsfnet.geometry"), f"{path.name} imports {mod}"
