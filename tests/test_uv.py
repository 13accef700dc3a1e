"""UV unwrap and layouts (dsfnet.facemodel.uv) on the built-in model and the toy model.

Numbers measured on the built-in model (layout version 2), with "face vertices" = vertices whose nearest
cell is in the face mask:
  S=256: 56,620 covered cells, 44,259 face cells, 111,773 grid triangles; mean-shape round trip
         vertices -> map -> vertices over face vertices: median 5 units, p90 44, p95 154 (BFM units ≈ µm);
         landmarks_from_map vs the keypoint vertices: median 25, max 635 (upper eyelid, a sharp feature).
  S=128: 14,029 covered, 10,840 face cells; round trip median 12, p90 107; landmarks median 85, max 678.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dsfnet.facemodel import assets
from dsfnet.facemodel import uv as uvmod
from dsfnet.facemodel.model import FaceModel, load_face_model
from dsfnet.facemodel import unwrap
from dsfnet.facemodel.layout import UVLayout
from dsfnet.facemodel.uv import FLIP_68, build_uv_layout, get_uv_layout
from dsfnet.geometry.posmap import SHAPE_MAP_SCALE
from testing.face_model import toy_face_model


@pytest.fixture(scope="module")
def bfm(request: pytest.FixtureRequest) -> FaceModel:
    assets.ensure_assets(wheel_dir=request.config.cache.mkdir("dsfnet_wheel"), repair=True)
    return load_face_model()


@pytest.fixture(scope="module", params=[128, 256])
def layout(request: pytest.FixtureRequest, bfm: FaceModel) -> UVLayout:
    return get_uv_layout(bfm, request.param)


@pytest.fixture(scope="module")
def toy() -> FaceModel:
    return toy_face_model()


def _face_vertices(layout: UVLayout) -> np.ndarray:
    cells = np.rint(layout.vertex_uv).astype(int)
    return layout.face_mask[cells[:, 1], cells[:, 0]]


def test_convention_uv(bfm: FaceModel) -> None:
    uv = unwrap.vertex_uv(bfm.mean, bfm.keypoints)
    assert uv.min() >= unwrap.UV_MARGIN - 1e-9 and uv.max() <= 1 - unwrap.UV_MARGIN + 1e-9
    kp = uv[bfm.keypoints]
    assert kp[45, 0] > kp[36, 0]  # u right = subject's left = +x
    assert kp[19, 1] > kp[30, 1] > kp[8, 1]  # v up
    layout = get_uv_layout(bfm, 256)
    np.testing.assert_allclose(layout.vertex_uv, uvmod.uv_to_cells(uv, 256))
    np.testing.assert_allclose(layout.vertex_uv[:, 0], uv[:, 0] * 255)
    np.testing.assert_allclose(layout.vertex_uv[:, 1], 255 * (1 - uv[:, 1]))
    # forehead at the top rows, chin below; flat index row * S + col
    rows = layout.kpt_cells[:, 0]
    assert rows[19] < rows[36] < rows[30] < rows[51] < rows[8]
    r, c = layout.kpt_cells[30]
    np.testing.assert_allclose(layout.vertices_to_map(bfm.mean).reshape(3, -1)[:, r * 256 + c],
                               layout.vertices_to_map(bfm.mean)[:, r, c])


def test_layout_numbers(layout: UVLayout) -> None:
    s = layout.size
    n_cov, n_face = int(layout.covered.sum()), int(layout.face_mask.sum())
    print(f"S={s}: covered {n_cov}, face {n_face}, grid triangles {len(layout.grid_triangles)}")
    # the face takes most of the square (reference DSFNet mask: 43,867 of 65,536 = 67%)
    assert 0.60 * s * s < n_face < 0.75 * s * s
    assert 0.80 * s * s < n_cov < 0.92 * s * s
    assert not (layout.face_mask & ~layout.covered).any()
    # every landmark cell, in particular the inner ones 17..67, is in the face mask
    assert layout.face_mask[tuple(layout.kpt_cells.T)].all()
    # no ears, no neck: the mask stays between the jaw ends and above the chin's row + a few cells
    rows, cols = np.nonzero(layout.face_mask)
    assert rows.max() <= layout.kpt_cells[8, 0] + 0.04 * s
    assert cols.min() >= layout.kpt_cells[0, 1] - 0.04 * s and cols.max() <= layout.kpt_cells[16, 1] + 0.04 * s
    # weight mask levels
    w = layout.weight_mask
    assert set(np.unique(w).tolist()) == {0.0, 3.0, 12.0, 16.0}
    assert (w[~layout.face_mask] == 0).all() and (w[layout.face_mask] >= 3).all()
    assert (w[tuple(layout.kpt_cells.T)] == 16).all()
    assert 0.05 < (w == 12).sum() / n_face < 0.2


def test_sparse_operators(layout: UVLayout, bfm: FaceModel) -> None:
    s2 = layout.size ** 2
    assert layout.to_uv.shape == (s2, bfm.n_vertices) and layout.to_vertex.shape == (bfm.n_vertices, s2)
    nnz = np.diff(layout.to_uv.indptr)
    cov = layout.covered.reshape(-1)
    assert (nnz[cov] == 3).all() and (nnz[~cov] == 0).all()
    np.testing.assert_allclose(np.asarray(layout.to_uv.sum(axis=1)).ravel()[cov], 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layout.to_vertex.sum(axis=1)).ravel(), 1.0, atol=1e-6)
    assert cov[layout.to_vertex.indices[layout.to_vertex.data > 0]].all()  # samples only covered cells


def test_round_trip_mean_shape(layout: UVLayout, bfm: FaceModel) -> None:
    mean = bfm.mean.astype(np.float64)
    back = layout.map_to_vertices(layout.vertices_to_map(mean))
    err = np.linalg.norm(back - mean, axis=1)[_face_vertices(layout)]
    p50, p90 = np.percentile(err, [50, 90])
    print(f"S={layout.size}: round trip over face vertices median {p50:.1f}, p90 {p90:.1f} units")
    scale = 256 / layout.size
    assert p50 < 8 * scale and p90 < 70 * scale  # measured 5 / 44 at 256, 12 / 107 at 128
    lm = layout.landmarks_from_map(layout.vertices_to_map(mean))
    np.testing.assert_allclose(lm, back[bfm.keypoints], rtol=1e-6, atol=1e-3)
    lm_err = np.linalg.norm(lm - mean[bfm.keypoints], axis=1)
    print(f"S={layout.size}: landmark error median {np.median(lm_err):.0f}, max {lm_err.max():.0f} units")
    assert np.median(lm_err) < 100 and lm_err.max() < 1000  # < 1 mm; a face is 1.8e5 wide


def test_torch_matches_numpy_and_is_differentiable(layout: UVLayout, bfm: FaceModel) -> None:
    rng = np.random.default_rng(0)
    verts = bfm.mean[None] + rng.normal(scale=100.0, size=(2, bfm.n_vertices, 3)).astype(np.float32)
    m_np = layout.vertices_to_map(verts)
    vt = torch.tensor(verts, dtype=torch.float64, requires_grad=True)
    m_t = layout.vertices_to_map(vt)
    assert m_np.shape == tuple(m_t.shape) == (2, 3, layout.size, layout.size)
    np.testing.assert_allclose(m_t.detach().numpy(), m_np, rtol=1e-5, atol=0.05)
    back_t = layout.map_to_vertices(m_t)
    np.testing.assert_allclose(back_t.detach().numpy(), layout.map_to_vertices(m_np), rtol=1e-5, atol=0.05)
    lm_t = layout.landmarks_from_map(m_t)
    assert tuple(lm_t.shape) == (2, 68, 3)
    lm_t.sum().backward()
    assert vt.grad is not None and vt.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expected"):
        layout.vertices_to_map(verts[:, :100])
    with pytest.raises(ValueError, match="expected"):
        layout.map_to_vertices(m_np[..., :-1])


def test_basis_maps(layout: UVLayout, bfm: FaceModel) -> None:
    mean_map, shape_maps, exp_maps = layout.basis_maps(bfm)
    s = layout.size
    assert mean_map.shape == (3, s, s) and shape_maps.shape == (40, 3, s, s) and exp_maps.shape == (10, 3, s, s)
    f = layout.face_mask
    # shape-map units: magnitudes about 1 (reference: x in [-1.33, 1.31], z up to 1.99 at the nose tip)
    assert 1.0 < mean_map[0][f].max() < 1.5 and -1.5 < mean_map[0][f].min() < -1.0
    np.testing.assert_allclose(layout.landmarks_from_map(mean_map)[30, 2], 131937 * SHAPE_MAP_SCALE, atol=0.02)
    # normalised coefficients combine linearly: offset map = map of the decoded offset
    rng = np.random.default_rng(1)
    a_n, b_n = rng.normal(size=40), rng.normal(size=10)
    offset = np.einsum("k,kcij->cij", a_n, shape_maps) + np.einsum("k,kcij->cij", b_n, exp_maps)
    verts = (bfm.shape_basis.astype(np.float64) @ (a_n * bfm.shape_std) + bfm.exp_basis.astype(np.float64) @ (b_n * bfm.exp_std))
    np.testing.assert_allclose(offset, layout.vertices_to_map(verts) * SHAPE_MAP_SCALE, atol=1e-4)
    assert 0.01 < np.abs(offset).max() < 1.0
    with pytest.raises(ValueError, match="belongs to model"):
        layout.basis_maps(toy_face_model())


def test_grid_triangles(layout: UVLayout, bfm: FaceModel) -> None:
    t = layout.grid_triangles
    cov = layout.covered.reshape(-1)
    assert cov[t].all()
    np.testing.assert_array_equal(layout.grid_triangle_is_face, layout.face_mask.reshape(-1)[t].all(axis=1))
    # counter-clockwise seen from +z: the mean map's normals point toward the camera on the face
    p = layout.vertices_to_map(bfm.mean).reshape(3, -1).T.astype(np.float64)
    nz = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])[:, 2]
    assert (nz[layout.grid_triangle_is_face] > 0).mean() > 0.93  # measured 0.954 / 0.958
    # two triangles per full 2x2 block of covered cells
    s = layout.size
    c2 = layout.covered
    full = (c2[:-1, :-1] & c2[1:, :-1] & c2[:-1, 1:] & c2[1:, 1:]).sum()
    assert 2 * full <= len(t) <= 2 * (s - 1) ** 2


def test_flip_perm(layout: UVLayout) -> None:
    s = layout.size
    fp = layout.flip_perm
    face = np.flatnonzero(layout.face_mask.reshape(-1))

    def rc(c: np.ndarray) -> np.ndarray:
        return np.stack([c // s, c % s], 1)

    twice = np.abs(rc(fp[fp[face]]) - rc(face)).max(1)
    assert np.mean(twice == 0) > 0.95 and twice.max() <= 3
    # the layout itself is nearly mirror-symmetric in columns
    assert np.percentile(np.abs(rc(fp[face])[:, 1] - (s - 1 - rc(face)[:, 1])), 99) <= 1
    # landmark cells go to their partner's cell within a cell
    kc = layout.kpt_cells
    assert np.abs(rc(fp[kc[:, 0] * s + kc[:, 1]]) - kc[FLIP_68]).max() <= 1
    unc = np.flatnonzero(~layout.covered.reshape(-1))
    np.testing.assert_array_equal(fp[unc], unc)


def test_layout_disk_cache_and_timing(bfm: FaceModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(assets.ENV_HOME, str(tmp_path))
    monkeypatch.setattr(uvmod, "_LAYOUT_MEMO", {})
    t0 = time.perf_counter()
    built = get_uv_layout(bfm, 256)
    dt = time.perf_counter() - t0
    print(f"layout 256 built in {dt:.2f} s (triangles not cached)")
    assert dt < 20
    path = uvmod.layout_cache_path(bfm, 256)
    assert path.is_file() and path.parent == tmp_path
    monkeypatch.setattr(uvmod, "_LAYOUT_MEMO", {})
    loaded = get_uv_layout(bfm, 256)
    assert loaded is not built
    for key in ("vertex_uv", "cell_vertices", "face_mask", "weight_mask", "grid_triangles", "flip_perm"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(built, key))
    assert (loaded.to_uv != built.to_uv).nnz == 0
    assert get_uv_layout(bfm, 256) is loaded  # memoised
    path.write_bytes(b"garbage")  # a corrupt derived cache is rebuilt
    monkeypatch.setattr(uvmod, "_LAYOUT_MEMO", {})
    np.testing.assert_array_equal(get_uv_layout(bfm, 256).face_mask, built.face_mask)


def test_toy_layout(toy: FaceModel) -> None:
    lay = build_uv_layout(toy, 64)
    assert lay.face_mask[tuple(lay.kpt_cells[17:].T)].all()
    assert 0.4 * 64 * 64 < lay.face_mask.sum() < 0.8 * 64 * 64
    mean = toy.mean.astype(np.float64)
    err = np.linalg.norm(lay.map_to_vertices(lay.vertices_to_map(mean)) - mean, axis=1)[_face_vertices(lay)]
    assert np.median(err) < 150  # toy cells are ~2,500 units wide
    m, sm, em = lay.basis_maps(toy)
    assert sm.shape == (6, 3, 64, 64) and em.shape == (3, 3, 64, 64)
    with pytest.raises(ValueError, match="UV size"):
        build_uv_layout(toy, 4)
