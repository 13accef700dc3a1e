"""Scatter, alignment, point selection and PointNet of ``dsfnet.model.lifting``, and the ground-truth round trip
(ground-truth heads and coefficients in, the ground-truth position map and rotation out)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dsfnet.geometry import pose_para_to_matrix
from dsfnet.model import create_model
from dsfnet.geometry import weighted_umeyama
from dsfnet.model.lifting import (PointNet, fit_similarity, fit_weights, flat_cells, gather_cells, grid_to_cells,
                                  scatter_to_uv, select_cells, van_der_corput)
from testing.analytic_face import surface, synthetic_face

FLIP = np.diag([1.0, -1.0, 1.0])


def _g(cell: float, u: int) -> float:
    """Normalised grid value of a cell centre (CONVENTIONS: g = (cell + 0.5)/(U/2) − 1)."""
    return (cell + 0.5) / (u / 2) - 1


def test_grid_to_cells_convention() -> None:
    u = 8
    grid = torch.tensor([[_g(3, u), _g(0, u), -1.0, 0.999999], [_g(5, u), _g(7, u), -1.0, 0.999999]]).reshape(1, 2, 1, 4)
    # (row, col) = (5, 3), (7, 0), (0, 0), (7, 7)
    assert grid_to_cells(grid, u).tolist() == [[5 * u + 3, 7 * u + 0, 0, 63]]


def test_scatter_hand_made() -> None:
    h = w = u = 4
    ps = 140.0
    grid = torch.full((1, 2, h, w), _g(3, u))
    seg = torch.zeros(1, 1, h, w)
    conf = torch.full((1, 1, h, w), 0.9)
    depth = torch.zeros(1, 1, h, w)
    face_mask = torch.ones(u, u)
    face_mask[2, 2] = 0

    def put(r, c, cell, s, cf, d):
        grid[0, 0, r, c], grid[0, 1, r, c] = _g(cell[1], u), _g(cell[0], u)
        seg[0, 0, r, c], conf[0, 0, r, c], depth[0, 0, r, c] = s, cf, d

    put(0, 0, (1, 2), 0.9, 0.3, 0.1)   # collides with (0, 1): less confident, loses
    put(0, 1, (1, 2), 0.9, 0.7, 0.2)   # wins cell (1, 2)
    put(1, 0, (3, 3), 0.4, 0.9, 0.5)   # not visible (seg <= 0.5): nothing lands in (3, 3)
    put(2, 3, (0, 0), 0.8, 0.5, -0.3)  # tie on confidence with (3, 3): lower pixel index (11) wins
    put(3, 3, (0, 0), 0.8, 0.5, 0.4)
    put(3, 0, (2, 2), 0.9, 0.9, 0.6)   # lands off the face mask: dropped
    depth.requires_grad_(True)
    out = scatter_to_uv(grid, seg, conf, depth, uv_size=u, pos_scale=ps, face_mask=face_mask)
    assert out.count.tolist() == [2.0]
    expected_m = torch.zeros(u, u)
    expected_m[1, 2] = expected_m[0, 0] = 1
    assert torch.equal(out.m_uv[0, 0], expected_m)
    torch.testing.assert_close(out.d_uv[0, :, 1, 2], torch.tensor([1 / ps, 0 / ps, 0.2]))
    torch.testing.assert_close(out.d_uv[0, :, 0, 0], torch.tensor([3 / ps, 2 / ps, -0.3]))
    assert out.c_uv[0, 0, 1, 2].item() == pytest.approx(0.7)
    assert out.c_uv[0, 0, 0, 0].item() == pytest.approx(0.5)
    assert float(out.c_uv.sum()) == pytest.approx(1.2)  # C_uv = 0 off M_uv
    assert float(out.d_uv.detach().abs().sum()) == pytest.approx((1 + 0 + 3 + 2) / ps + 0.2 + 0.3, rel=1e-6)
    assert out.source[0, 1 * u + 2].item() == 1 and out.source[0, 0].item() == 11
    # gradients reach exactly the two kept pixels' depth
    out.d_uv[:, 2].sum().backward()
    grad = torch.zeros(h, w)
    grad[0, 1] = grad[2, 3] = 1
    assert torch.equal(depth.grad[0, 0], grad)


def test_scatter_empty_seg_fills_nothing() -> None:
    grid = torch.zeros(2, 2, 8, 8)
    out = scatter_to_uv(grid, torch.zeros(2, 1, 8, 8), torch.ones(2, 1, 8, 8), torch.ones(2, 1, 8, 8),
                        uv_size=8, pos_scale=10.0, face_mask=torch.ones(8, 8))
    assert out.count.tolist() == [0.0, 0.0]
    assert float(out.d_uv.abs().sum()) == 0.0 and float(out.c_uv.sum()) == 0.0


def test_fit_similarity_recovers_proper_rotation_through_flip() -> None:
    torch.manual_seed(0)
    src = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    r = pose_para_to_matrix(0.3, -0.6, 0.2)
    m = FLIP @ r  # model (y up) -> crop (y down): det -1
    dst = 0.2 * np.einsum("ij,bjn->bin", m, src.flatten(2).numpy()) + np.array([0.5, 0.4, 0.1])[None, :, None]
    dst = torch.as_tensor(dst).reshape(src.shape)
    w = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    fit = fit_similarity(src, dst, w, flip=True)
    np.testing.assert_allclose(fit.rotation[0].numpy(), r, atol=1e-9)
    assert np.linalg.det(fit.rotation[0].numpy()) == pytest.approx(1.0)
    np.testing.assert_allclose(fit.matrix[0].numpy(), m, atol=1e-9)
    assert fit.scale.item() == pytest.approx(0.2)
    torch.testing.assert_close(fit.apply_map(src), dst)


@pytest.mark.parametrize("solver", ["svd", "quaternion"])
def test_fit_similarity_mask_equals_fit_on_the_masks_cells(solver) -> None:
    """A cell mask (weight 0 elsewhere, uniform-over-the-mask fallback) gives the fit on the mask's cells."""
    torch.manual_seed(3)
    u = 8
    src, dst = torch.randn(3, 3, u, u, dtype=torch.float64), torch.randn(3, 3, u, u, dtype=torch.float64)
    dst[:, :, :4] = 0.7 * src[:, :, :4] + 0.2  # an exact similarity on the upper half ...
    dst[:, :, 4:] += 50.0  # ... and garbage outside it
    mask = torch.zeros(u, u)
    mask[:4] = 1
    w = torch.rand(3, 1, u, u, dtype=torch.float64)
    w[1] = 0.0  # no weight at all: uniform over the mask
    w[2, :, :4] = 0.0  # weight only outside the mask: the same fallback
    index = torch.nonzero(mask.reshape(-1)).reshape(-1)
    # the fit on the mask's cells alone (gathered), with the uniform fallback where they carry no weight
    w_in = w.flatten(1)[:, index]
    w_in = torch.where(w_in.sum(dim=1, keepdim=True) > 0, w_in, 1.0)
    a = weighted_umeyama(flat_cells(src)[:, :, index], flat_cells(dst)[:, :, index], w_in, channels_first=True,
                         solver=solver)
    c = fit_similarity(src, dst, fit_weights(w, mask), flip=False, solver=solver)
    for k_c, k_a in (("scale", "scale"), ("matrix", "rotation"), ("translation", "translation"), ("rotation", "rotation")):
        torch.testing.assert_close(getattr(c, k_c), getattr(a, k_a), rtol=0, atol=1e-9)
    assert c.well_posed.tolist() == [True, False, False]
    torch.testing.assert_close(a.scale, torch.full((3,), 0.7, dtype=torch.float64))


def _select_points(features, valid, face_index, priority, n_points):
    """The PointNet's points as DSFNet takes them: the selected cells' features and their mask."""
    cells, mask = select_cells(valid, face_index, priority, n_points)
    return gather_cells(features, cells), mask


def test_select_points_deterministic_and_masked() -> None:
    u = 8
    face_index = torch.arange(10, 50)
    priority = torch.as_tensor(van_der_corput(40), dtype=torch.float32)
    assert sorted(van_der_corput(8).tolist()) == [i / 8 for i in range(8)]
    feats = torch.arange(u * u, dtype=torch.float32).reshape(1, 1, -1)
    valid = torch.zeros(1, u * u)
    valid[0, 20:30] = 1  # 10 valid face cells
    pts, mask = _select_points(feats, valid, face_index, priority, 16)
    assert pts.shape == (1, 1, 16) and mask.sum().item() == 10  # all valid kept, 6 padded
    assert sorted(pts[0, 0][mask[0] > 0].tolist()) == list(range(20, 30))
    pts4, mask4 = _select_points(feats, valid, face_index, priority, 4)
    assert mask4.sum().item() == 4
    # the 4 kept cells are the valid ones of highest fixed priority
    ranks = (torch.arange(20, 30) - 10)
    best = ranks[torch.argsort(priority[ranks], descending=True)[:4]] + 10
    assert sorted(pts4[0, 0].tolist()) == sorted(best.float().tolist())


def test_pointnet_ignores_padding_and_order() -> None:
    torch.manual_seed(1)
    net = PointNet(6, (8, 16), 5, 3).eval()
    pts = torch.randn(1, 6, 12)
    mask = torch.ones(1, 12)
    mask[0, 9:] = 0
    out = net(pts, mask)
    pts2 = pts.clone()
    pts2[0, :, 9:] = 100.0 * torch.randn(6, 3)  # garbage in the padding
    perm = torch.tensor([3, 1, 0, 2, 8, 7, 6, 5, 4, 9, 10, 11])
    out2 = net(pts2[:, :, perm], mask[:, perm])
    torch.testing.assert_close(out["shape_is"], out2["shape_is"])
    torch.testing.assert_close(out["pointnet_feature"], out2["pointnet_feature"])
    empty = net(pts, torch.zeros(1, 12))
    assert float(empty["pointnet_feature"].detach().abs().sum()) == 0.0


def _render_gt(layout, size: int, pos_scale: float, rot: np.ndarray, scale: float, trans: np.ndarray,
               shape: np.ndarray, exp: np.ndarray, supersample: int = 8):
    """Point-splat z-buffer rendering of the analytic face: seg, grid, depth, conf ``(size, size)`` and P_gt ``(3,U,U)``."""
    u = layout.size
    m = scale * (FLIP @ rot)
    axis = np.arange(-0.5, u - 0.5, 1.0 / supersample) + 0.5 / supersample
    rr, cc = np.meshgrid(axis, axis, indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    pts = surface(rr, cc, u, shape, exp, layout.n_shape, layout.n_exp) @ m.T + trans
    nose = layout.kpt_cells[30]
    z_nose = (surface(np.array([nose[0]]), np.array([nose[1]]), u, shape, exp, layout.n_shape, layout.n_exp) @ m.T + trans)[0, 2]
    pts[:, 2] -= z_nose
    fx, fy = pts[:, 0] * pos_scale, pts[:, 1] * pos_scale
    px, py = np.rint(fx).astype(int), np.rint(fy).astype(int)
    inside = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    pix = np.where(inside, py * size + px, size * size)
    zmax = np.full(size * size + 1, -np.inf)
    np.maximum.at(zmax, pix, pts[:, 2])
    # z-buffer: samples on the front surface of their pixel (within 2 px of depth) ...
    front = inside & (pts[:, 2] >= zmax[pix] - 2.0 / pos_scale)
    # ... and among them the one nearest the pixel centre (the front-most one would bias x, y by up to 0.5 px)
    dist = (fx - px) ** 2 + (fy - py) ** 2
    order = np.lexsort((dist, pix))
    order = order[front[order]]
    first = order[np.r_[True, pix[order][1:] != pix[order][:-1]]]
    seg = np.zeros(size * size)
    grid = np.zeros((2, size * size))
    depth = np.zeros(size * size)
    conf = np.zeros(size * size)
    face = layout.in_face(rr[first], cc[first])
    p = pix[first]
    seg[p] = face
    grid[0, p] = (cc[first] + 0.5) / (u / 2) - 1
    grid[1, p] = (rr[first] + 0.5) / (u / 2) - 1
    depth[p] = pts[first, 2]
    dist2 = (cc[first] - np.rint(cc[first])) ** 2 + (rr[first] - np.rint(rr[first])) ** 2
    conf[p] = np.exp(-dist2 / 0.05)  # the pixel nearest a cell centre wins that cell
    rows, cols = np.meshgrid(np.arange(u, dtype=float), np.arange(u, dtype=float), indexing="ij")
    p_gt = surface(rows.ravel(), cols.ravel(), u, shape, exp, layout.n_shape, layout.n_exp) @ m.T + trans
    p_gt[:, 2] -= z_nose
    return (seg.reshape(size, size), grid.reshape(2, size, size), depth.reshape(size, size), conf.reshape(size, size),
            p_gt.T.reshape(3, u, u))


@pytest.mark.parametrize("angles", [(0.2, -0.5, 0.1), (-0.3, 0.25, -0.4)])
def test_gt_heads_recover_pose(angles) -> None:
    """Round trip: GT seg/grid/depth + GT coefficients through scatter and alignment give P_gt and R."""
    u, size = 64, 256
    fm, layout = synthetic_face(u)
    model = create_model("lite", fm, layout=layout, uv_size=u, input_size=size, fusion_input_stride=4).eval()
    ps = model.config.pos_scale
    rng = np.random.default_rng(3)
    shape, exp = rng.normal(size=40), rng.normal(size=10)
    rot = pose_para_to_matrix(*angles)
    seg, grid, depth, conf, p_gt = _render_gt(layout, size, ps, rot, 0.17, np.array([128 / ps, 120 / ps, 0.3]), shape, exp)
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)[None]
    heads = {"grid": t(grid), "seg": t(seg)[:, None], "conf": t(conf)[:, None], "depth": t(depth)[:, None],
             "shape_ms": torch.zeros(1, 40), "exp_ms": torch.zeros(1, 10), "tm_ms_z": torch.zeros(1, 12),
             "msf": torch.zeros(1, model.config.msf_channels, 8, 8)}
    class GTCoefficients(torch.nn.Module):  # in place of the PointNet: the true coefficients
        def forward(self, points, mask):
            return {"shape_is": t(shape), "exp_is": t(exp)}

    model.pointnet = GTCoefficients()
    with torch.no_grad():
        out = model.forward_from_heads(heads, branch="image", return_all=True)
    assert not bool(out["fallback"][0])
    assert out["visible_cells"].item() > 0.3 * float(layout.face_mask.sum())
    r_est = out["rotation"][0].double().numpy()
    angle = np.arccos(np.clip((np.trace(r_est.T @ rot) - 1) / 2, -1, 1))
    print(f"GT heads: rotation error {angle:.2e} rad")
    assert angle < 1e-3, angle
    assert np.linalg.det(r_est) == pytest.approx(1.0, abs=1e-5)
    # P_is matches P_gt up to the quantisation of the image grid (dense NME-style, face cells)
    face = layout.face_mask
    err = np.linalg.norm(out["face_uvm"][0].numpy()[:, face] - p_gt[:, face], axis=0).mean()
    extent = np.sqrt(np.ptp(p_gt[0, face]) * np.ptp(p_gt[1, face]))
    print(f"GT heads: P_is error {100 * err / extent:.3f}% of the face size")
    assert err / extent < 3e-3, err / extent
