"""Geometry: Pose_Para Euler angles, frames, weighted Umeyama, 3DMM decode."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dsfnet.geometry import (
    FLIP_Y,
    decode_vertices,
    decode_vertices_torch,
    image_to_model_rotation,
    matrix_to_pose_para,
    model_to_image,
    model_to_image_rotation,
    pose_para_to_image,
    pose_para_to_matrix,
    weighted_umeyama,
)
from dsfnet.geometry.similarity import weighted_umeyama_np


def random_rotation(rng: np.random.Generator, n: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.linalg.det(q))[:, None, None]  # proper rotations
    return q


# --- Euler ------------------------------------------------------------------------------------------------


def test_convention_pose_para_matrix_signs():
    a = 0.3
    # Rx(a) = [[1,0,0],[0,cos,sin],[0,-sin,cos]]
    np.testing.assert_allclose(pose_para_to_matrix(a, 0, 0), [[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]])
    np.testing.assert_allclose(pose_para_to_matrix(0, a, 0), [[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    np.testing.assert_allclose(pose_para_to_matrix(0, 0, a), [[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]])
    # order: R = Rx(pitch) Ry(yaw) Rz(roll)
    r = pose_para_to_matrix(0.1, 0.2, 0.3)
    np.testing.assert_allclose(r, pose_para_to_matrix(0.1, 0, 0) @ pose_para_to_matrix(0, 0.2, 0) @ pose_para_to_matrix(0, 0, 0.3))


def test_convention_positive_yaw_turns_nose_to_image_left():
    # The nose (+z in model space) at yaw > 0 moves towards -x, i.e. image left.
    nose = np.array([[0.0, 0.0, 1.0]])
    p = model_to_image(nose, pose_para_to_matrix(0, np.deg2rad(30), 0), 1.0, [0, 0, 0], 0)
    assert p[0, 0] < -0.4


def test_euler_round_trip_full_range():
    rng = np.random.default_rng(0)
    n = 5000
    pitch = rng.uniform(-np.pi, np.pi, n)
    yaw = rng.uniform(-np.pi / 2 + 1e-3, np.pi / 2 - 1e-3, n)
    roll = rng.uniform(-np.pi, np.pi, n)
    angles = matrix_to_pose_para(pose_para_to_matrix(pitch, yaw, roll))
    np.testing.assert_allclose(angles, np.stack([pitch, yaw, roll], 1), atol=1e-6)
    # and matrix -> angles -> matrix for random rotations
    rots = random_rotation(rng, 1000)
    back = pose_para_to_matrix(*matrix_to_pose_para(rots).T)
    np.testing.assert_allclose(back, rots, atol=1e-9)


def test_euler_gimbal_lock_is_finite_and_reproduces_matrix():
    for yaw in (np.pi / 2, -np.pi / 2):
        r = pose_para_to_matrix(0.4, yaw, 0.0)
        angles = matrix_to_pose_para(r)
        assert np.all(np.isfinite(angles))
        assert angles[2] == 0.0
        np.testing.assert_allclose(pose_para_to_matrix(*angles), r, atol=1e-9)


def test_euler_rejects_bad_shape():
    with pytest.raises(ValueError, match="3, 3"):
        matrix_to_pose_para(np.eye(4))


# --- frames -----------------------------------------------------------------------------------------------


def test_convention_model_to_image_flips_y():
    v = np.array([[0.0, 1.0, 2.0]])
    p = model_to_image(v, np.eye(3), 3.0, [10.0, 20.0, 5.0], height=100)
    np.testing.assert_allclose(p, [[10.0, 100 - (3.0 + 20.0), 11.0]])
    np.testing.assert_allclose(pose_para_to_image(v, [0, 0, 0, 10, 20, 5, 3], 100), p)


def test_reflection_round_trip():
    r = pose_para_to_matrix(0.2, -0.5, 0.1)
    m = model_to_image_rotation(r)
    assert np.linalg.det(m) == pytest.approx(-1.0)
    np.testing.assert_allclose(image_to_model_rotation(m), r)
    np.testing.assert_allclose(FLIP_Y @ FLIP_Y, np.eye(3))


# --- weighted Umeyama --------------------------------------------------------------------------------------


def _random_similarity_batch(seed: int, b: int = 8, n: int = 200):
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(b, n, 3)) * rng.uniform(0.5, 3, size=(b, 1, 3))
    rot = random_rotation(rng, b)
    scale = rng.uniform(0.1, 10, size=b)
    trans = rng.normal(size=(b, 3)) * 50
    dst = scale[:, None, None] * np.einsum("bnj,bij->bni", src, rot) + trans[:, None]
    return torch.tensor(src), torch.tensor(dst), rot, scale, trans


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_umeyama_recovers_known_similarity(seed):
    src, dst, rot, scale, trans = _random_similarity_batch(seed)
    fit = weighted_umeyama(src, dst)
    np.testing.assert_allclose(fit.rotation.numpy(), rot, atol=1e-5)
    np.testing.assert_allclose(fit.scale.numpy(), scale, rtol=1e-5)
    np.testing.assert_allclose(fit.translation.numpy(), trans, atol=1e-5 * 50)
    assert fit.well_posed.all()
    np.testing.assert_allclose(fit.apply(src).numpy(), dst.numpy(), atol=1e-5)


def test_umeyama_ignores_downweighted_outliers():
    src, dst, rot, scale, trans = _random_similarity_batch(3)
    dst = dst.clone()
    dst[:, :40] += torch.randn(dst.shape[0], 40, 3, dtype=dst.dtype) * 100  # 20% gross outliers
    w = torch.ones(dst.shape[:2], dtype=dst.dtype)
    w[:, :40] = 0.0
    fit = weighted_umeyama(src, dst, w)
    np.testing.assert_allclose(fit.rotation.numpy(), rot, atol=1e-5)
    np.testing.assert_allclose(fit.scale.numpy(), scale, rtol=1e-5)
    unweighted = weighted_umeyama(src, dst)
    assert np.abs(unweighted.rotation.numpy() - rot).max() > 1e-3  # the outliers do matter without weights


def test_umeyama_reflection_handling():
    src, dst, rot, scale, trans = _random_similarity_batch(4, b=2)
    flip = torch.tensor(FLIP_Y)
    dst_reflected = dst @ flip  # det -1 map
    proper = weighted_umeyama(src, dst_reflected)
    assert torch.allclose(torch.linalg.det(proper.rotation), torch.ones(2, dtype=torch.float64))
    free = weighted_umeyama(src, dst_reflected, allow_reflection=True)
    np.testing.assert_allclose(free.rotation.numpy(), FLIP_Y @ rot, atol=1e-5)
    # the documented way: flip one side first, solve for a proper rotation
    pre = weighted_umeyama(src, dst_reflected @ flip)
    np.testing.assert_allclose(pre.rotation.numpy(), rot, atol=1e-5)


def test_umeyama_degenerate_inputs_never_nan():
    src, dst, *_ = _random_similarity_batch(5, b=3, n=20)
    w = torch.ones(3, 20, dtype=torch.float64)
    w[0] = 0.0  # all weights zero -> uniform fallback
    src = src.clone()
    src[1] = 1.0  # all source points equal -> identity + translation
    line = torch.linspace(0, 1, 20, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    src[2] = line  # collinear
    dst = dst.clone()
    dst[2] = 2 * line + 1
    src.requires_grad_(True)
    fit = weighted_umeyama(src, dst, w)
    assert fit.well_posed.tolist() == [False, False, True]
    for t in (fit.scale, fit.rotation, fit.translation):
        assert torch.isfinite(t).all()
    assert torch.allclose(fit.rotation[1], torch.eye(3, dtype=torch.float64))
    np.testing.assert_allclose(fit.apply(src)[2].detach().numpy(), dst[2].numpy(), atol=1e-6)
    # uniform fallback equals the unweighted fit
    ref = weighted_umeyama(src[:1].detach(), dst[:1])
    np.testing.assert_allclose(fit.rotation[0].detach().numpy(), ref.rotation[0].numpy(), atol=1e-9)
    fit.apply(src).sum().backward()
    assert torch.isfinite(src.grad).all()


def test_umeyama_deterministic_and_differentiable():
    src, dst, *_ = _random_similarity_batch(6, b=2, n=50)
    src = src.requires_grad_(True)
    w = torch.rand(2, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    a = weighted_umeyama(src, dst, w)
    b = weighted_umeyama(src, dst, w)
    assert torch.equal(a.rotation, b.rotation) and torch.equal(a.scale, b.scale)
    assert torch.autograd.gradcheck(lambda s, ww: weighted_umeyama(s, dst, ww).apply(s), (src, w), atol=1e-5)


def test_umeyama_numpy_wrapper_and_bad_shapes():
    rng = np.random.default_rng(7)
    s = rng.normal(size=(30, 3))
    c, r, t = weighted_umeyama_np(s, 3 * s + [1, 2, 3])
    assert c == pytest.approx(3.0)
    np.testing.assert_allclose(r, np.eye(3), atol=1e-9)
    with pytest.raises(ValueError, match="src and dst"):
        weighted_umeyama(torch.zeros(4, 3), torch.zeros(5, 3))


# --- 3DMM decode ------------------------------------------------------------------------------------------


def test_decode_numpy_matches_torch():
    rng = np.random.default_rng(8)
    mean = rng.normal(size=(50, 3)).astype(np.float32)
    sb = rng.normal(size=(50, 3, 4)).astype(np.float32)
    eb = rng.normal(size=(50, 3, 2)).astype(np.float32)
    alpha, beta = rng.normal(size=(3, 4)), rng.normal(size=(3, 2))
    v = decode_vertices(mean, sb, eb, alpha, beta)
    vt = decode_vertices_torch(torch.tensor(mean), torch.tensor(sb), torch.tensor(eb), torch.tensor(alpha, dtype=torch.float32), torch.tensor(beta, dtype=torch.float32))
    np.testing.assert_allclose(v, vt.numpy(), atol=1e-4)
    np.testing.assert_allclose(v[1, 7], mean[7] + sb[7] @ alpha[1] + eb[7] @ beta[1], rtol=1e-5)
    # truncated coefficient vectors pad with zeros
    np.testing.assert_allclose(decode_vertices(mean, sb, eb, alpha[0, :2], beta[0, :1]), decode_vertices(mean, sb, eb, np.r_[alpha[0, :2], 0, 0], [beta[0, 0], 0]))
    with pytest.raises(ValueError, match="coefficients"):
        decode_vertices(mean, sb, eb, np.zeros(5), beta[0])
