"""Geometry: Pose_Para Euler angles, frames, weighted Umeyama, 3DMM decode."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dsfnet.geometry import (
    FLIP_Y,
    decode_vertices,
    image_to_model_rotation,
    matrix_to_pose_para,
    model_to_image,
    model_to_image_rotation,
    pose_para_to_image,
    pose_para_to_matrix,
    procrustes_rotation,
    weighted_umeyama,
)
from dsfnet.geometry.similarity import Similarity


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


@pytest.mark.parametrize("solver", ["svd", "quaternion"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_umeyama_recovers_known_similarity(seed, solver):
    src, dst, rot, scale, trans = _random_similarity_batch(seed)
    fit = weighted_umeyama(src, dst, solver=solver)
    np.testing.assert_allclose(fit.rotation.numpy(), rot, atol=1e-5)
    np.testing.assert_allclose(fit.scale.numpy(), scale, rtol=1e-5)
    np.testing.assert_allclose(fit.translation.numpy(), trans, atol=1e-5 * 50)
    assert fit.well_posed.all()
    np.testing.assert_allclose(fit.apply(src).numpy(), dst.numpy(), atol=1e-5)


@pytest.mark.parametrize("solver", ["svd", "quaternion"])
def test_umeyama_ignores_downweighted_outliers(solver):
    src, dst, rot, scale, trans = _random_similarity_batch(3)
    dst = dst.clone()
    dst[:, :40] += torch.randn(dst.shape[0], 40, 3, dtype=dst.dtype) * 100  # 20% gross outliers
    w = torch.ones(dst.shape[:2], dtype=dst.dtype)
    w[:, :40] = 0.0
    fit = weighted_umeyama(src, dst, w, solver=solver)
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


@pytest.mark.parametrize("solver", ["svd", "quaternion"])
def test_umeyama_degenerate_inputs_never_nan(solver):
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
    fit = weighted_umeyama(src, dst, w, solver=solver)
    assert fit.well_posed.tolist() == [False, False, True]
    for t in (fit.scale, fit.rotation, fit.translation):
        assert torch.isfinite(t).all()
    assert torch.allclose(fit.rotation[1], torch.eye(3, dtype=torch.float64))
    np.testing.assert_allclose(fit.apply(src)[2].detach().numpy(), dst[2].numpy(), atol=1e-6)
    assert torch.allclose(torch.linalg.det(fit.rotation), torch.ones(3, dtype=torch.float64))
    # uniform fallback equals the unweighted fit
    ref = weighted_umeyama(src[:1].detach(), dst[:1], solver=solver)
    np.testing.assert_allclose(fit.rotation[0].detach().numpy(), ref.rotation[0].numpy(), atol=1e-9)
    fit.apply(src).sum().backward()
    assert torch.isfinite(src.grad).all()


@pytest.mark.parametrize("solver", ["svd", "quaternion"])
def test_umeyama_deterministic_and_differentiable(solver):
    n = 50 if solver == "svd" else 20  # fewer points for the slower quaternion graph (gradcheck cost ∝ n)
    src, dst, *_ = _random_similarity_batch(6, b=2, n=n)
    src = src.requires_grad_(True)
    w = torch.rand(2, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    a = weighted_umeyama(src, dst, w, solver=solver)
    b = weighted_umeyama(src, dst, w, solver=solver)
    assert torch.equal(a.rotation, b.rotation) and torch.equal(a.scale, b.scale)
    assert torch.autograd.gradcheck(lambda s, ww: weighted_umeyama(s, dst, ww, solver=solver).apply(s), (src, w), atol=1e-5)


def test_weighted_moments_same_with_and_without_autograd():
    """Training (autograd recording) and inference compute the moments with different products: same numbers."""
    from dsfnet.geometry.similarity import weighted_moments

    g = torch.Generator().manual_seed(3)
    src, dst = torch.randn(4, 3, 500, generator=g), torch.randn(4, 3, 500, generator=g)
    w = torch.rand(4, 500, generator=g)
    with torch.no_grad():
        plain = weighted_moments(src, dst, w)
    graph = weighted_moments(src.requires_grad_(True), dst, w.requires_grad_(True))
    for name in ("mu_s", "mu_d", "var_s", "cov"):
        torch.testing.assert_close(getattr(graph, name).detach(), getattr(plain, name), rtol=1e-5, atol=1e-6)
    graph.cov.sum().backward()
    assert src.grad is not None and w.grad is not None


def test_umeyama_unbatched_points_and_bad_shapes():
    rng = np.random.default_rng(7)
    s = torch.as_tensor(rng.normal(size=(30, 3)))
    fit = weighted_umeyama(s, 3 * s + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert float(fit.scale[0]) == pytest.approx(3.0)
    np.testing.assert_allclose(fit.rotation[0].numpy(), np.eye(3), atol=1e-9)
    with pytest.raises(ValueError, match="src and dst"):
        weighted_umeyama(torch.zeros(4, 3), torch.zeros(5, 3))


# --- the SVD-free (quaternion) solver against the SVD one ---------------------------------------------------


def _assert_same_fit(a, b, rot_tol: float, rel_tol: float) -> None:
    """Two fits agree: rotation entries to ``rot_tol``, scale relative and translation relative to its size to ``rel_tol``."""
    np.testing.assert_allclose(b.rotation.numpy(), a.rotation.numpy(), rtol=0, atol=rot_tol)
    np.testing.assert_allclose(b.scale.numpy(), a.scale.numpy(), rtol=rel_tol, atol=0)
    t_ref = a.translation.abs().amax(dim=1, keepdim=True).clamp_min(1.0)
    assert float(((b.translation - a.translation).abs() / t_ref).max()) < rel_tol
    assert torch.equal(a.well_posed, b.well_posed)


def _noisy_problem(seed: int, b: int = 16, n: int = 300, axes=(1.0, 1.0, 1.0), outliers: float = 0.2,
                   max_angle: float | None = None, reflect: bool = False):
    """Random similarities with Gaussian noise and down-weighted (not zero-weighted) gross outliers."""
    rng = np.random.default_rng(seed)
    src = rng.normal(size=(b, n, 3)) * np.asarray(axes)
    if max_angle is None:
        rot = random_rotation(rng, b)
    else:  # rotations by angles in [max_angle − 1e-3, max_angle] about random axes (Rodrigues)
        k = rng.normal(size=(b, 3))
        k /= np.linalg.norm(k, axis=1, keepdims=True)
        th = max_angle - rng.uniform(0, 1e-3, size=b)
        th[0] = max_angle
        kx = np.zeros((b, 3, 3))
        kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
        kx -= kx.transpose(0, 2, 1)
        rot = np.eye(3) + np.sin(th)[:, None, None] * kx + (1 - np.cos(th))[:, None, None] * kx @ kx
    scale = rng.uniform(0.2, 5, size=b)
    trans = rng.normal(size=(b, 3)) * 20
    dst = scale[:, None, None] * np.einsum("bnj,bij->bni", src, rot) + trans[:, None]
    dst += rng.normal(size=dst.shape) * 0.05 * scale[:, None, None]
    w = rng.uniform(0.2, 1.0, size=(b, n))
    bad = rng.random(size=(b, n)) < outliers
    dst[bad] += rng.normal(size=(int(bad.sum()), 3)) * 10
    w[bad] *= 0.05
    if reflect:
        dst = dst * np.array([1.0, -1.0, 1.0])
    return torch.tensor(src), torch.tensor(dst), torch.tensor(w), rot


@pytest.mark.parametrize("dtype, rot_tol, rel_tol", [(torch.float64, 1e-9, 1e-9), (torch.float32, 1e-5, 1e-5)])
@pytest.mark.parametrize(
    "case",
    [
        {"seed": 0},  # isotropic clouds
        {"seed": 1, "outliers": 0.4},
        {"seed": 2, "axes": (1.0, 1.2, 0.3)},  # face-like: wide, tall, shallow
        {"seed": 3, "axes": (1.0, 1.3, 0.02)},  # nearly flat
        {"seed": 4, "axes": (1.0, 0.7, 0.0)},  # exactly planar
        {"seed": 5, "max_angle": np.pi},  # rotations at and just below 180°
        {"seed": 6, "max_angle": np.pi, "axes": (1.0, 1.2, 0.3)},
        {"seed": 7, "reflect": True},  # det Σ < 0: best proper rotation of a reflected cloud
        {"seed": 8, "reflect": True, "axes": (1.0, 1.2, 0.3)},
    ],
    ids=["iso", "outliers", "face", "flat", "planar", "180", "180-face", "reflected", "reflected-face"],
)
def test_quaternion_solver_matches_svd(case, dtype, rot_tol, rel_tol):
    src, dst, w, rot = _noisy_problem(**case)
    src, dst, w = src.to(dtype), dst.to(dtype), w.to(dtype)
    a = weighted_umeyama(src, dst, w, solver="svd")
    b = weighted_umeyama(src, dst, w, solver="quaternion")
    _assert_same_fit(a, b, rot_tol, rel_tol)
    assert b.rotation.dtype == dtype and bool(b.well_posed.all())
    r = b.rotation.double()
    np.testing.assert_allclose((r @ r.transpose(1, 2)).numpy(), np.broadcast_to(np.eye(3), r.shape), atol=10 * rot_tol)
    np.testing.assert_allclose(torch.linalg.det(r).numpy(), 1.0, atol=10 * rot_tol)
    if not case.get("reflect"):  # the fit is close to the generating rotation (noise, down-weighted outliers)
        assert np.abs(r.numpy() - rot).max() < 0.2
    # the same through the channels-first layout the model uses
    c = weighted_umeyama(src.transpose(1, 2), dst.transpose(1, 2), w, channels_first=True, solver="quaternion")
    torch.testing.assert_close(c.rotation, b.rotation, rtol=0, atol=rot_tol)


def test_quaternion_solver_degenerate_inputs_match_svd():
    """Zero weights and coincident points take the same fallbacks (outputs and flags); ties give proper rotations."""
    src, dst, *_ = _random_similarity_batch(9, b=5, n=20)
    src, dst = src.clone(), dst.clone()
    w = torch.rand(5, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w[0] = 0.0  # all weights zero -> uniform
    w[1, :5] = float("nan")  # non-finite weights count as zero
    src[2] = 3.0  # coincident source points -> c = 1, R = I, t = μ_d − μ_s
    dst[3] = -2.0  # coincident target points: Σ ≈ 0 (rounding noise), so any rotation; c ≈ 0, t ≈ −2
    line = torch.linspace(-1, 1, 20, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    src[4], dst[4] = line, 2 * line + 1  # collinear: any rotation about the line is optimal
    a = weighted_umeyama(src, dst, w, solver="svd")
    b = weighted_umeyama(src, dst, w, solver="quaternion")
    assert a.well_posed.tolist() == b.well_posed.tolist() == [False, True, False, True, True]
    keep = [0, 1, 2]  # the unique fits: the two weight fallbacks and the coincident-source fallback
    _assert_same_fit(*(Similarity(f.scale[keep], f.rotation[keep], f.translation[keep], f.well_posed[keep]) for f in (a, b)),
                     1e-9, 1e-9)
    assert torch.equal(b.rotation[2], torch.eye(3, dtype=torch.float64)) and float(b.scale[2]) == 1.0
    torch.testing.assert_close(b.translation[2], (w[2, :, None] * dst[2]).sum(dim=0) / w[2].sum() - 3.0)
    for f in (a, b):
        assert torch.isfinite(f.rotation).all() and torch.isfinite(f.translation).all()
        np.testing.assert_allclose(torch.linalg.det(f.rotation).numpy(), 1.0, atol=1e-12)
        assert abs(float(f.scale[3])) < 1e-12
        np.testing.assert_allclose(f.apply(src)[3].numpy(), dst[3].numpy(), atol=1e-9)
        # collinear: different but equally good proper rotations; both map the line onto its image
        np.testing.assert_allclose(f.apply(src)[4].numpy(), dst[4].numpy(), atol=1e-9)
        np.testing.assert_allclose(f.scale[4].item(), 2.0, atol=1e-9)


def test_quaternion_solver_gradients_finite_and_close_to_svd():
    src, dst, w, _ = _noisy_problem(10, b=3, n=40, axes=(1.0, 1.2, 0.3))
    grads = {}
    for solver in ("svd", "quaternion"):
        s, ww = src.clone().requires_grad_(True), w.clone().requires_grad_(True)
        fit = weighted_umeyama(s, dst, ww, solver=solver)
        (fit.apply(s).square().sum() + fit.rotation.sum() + fit.scale.sum()).backward()
        grads[solver] = (s.grad, ww.grad)
        assert all(torch.isfinite(g).all() for g in grads[solver])
    for g_svd, g_q in zip(*grads.values()):
        torch.testing.assert_close(g_q, g_svd, rtol=1e-7, atol=1e-7)
    # Σ = 0 (coincident targets) and coincident sources: finite gradients through the fallbacks
    s = src[:2].clone()
    s[1] = 1.0
    d = dst[:2].clone()
    d[0] = 0.5
    s.requires_grad_(True)
    fit = weighted_umeyama(s, d, solver="quaternion")
    (fit.apply(s).sum() + fit.rotation.sum()).backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("eps", [0.05, 1e-4, 0.0])
def test_quaternion_solver_small_eigengap(eps):
    """Σ = Q·diag(1, ½, −(½ − ε))·Pᵀ: the best proper rotation is Q·Pᵀ, the runner-up (a half turn about the
    first axis) is 2ε worse. With a clear gap the solver matches the SVD; as ε → 0 it may stop between the two,
    but always returns a proper rotation whose objective is within 2ε of the best."""
    rng = np.random.default_rng(13)
    q, p = (torch.tensor(random_rotation(rng, 4)) for _ in range(2))
    cov = q @ torch.diag(torch.tensor([1.0, 0.5, -(0.5 - eps)], dtype=torch.float64)) @ p.transpose(1, 2)
    r = procrustes_rotation(cov, solver="quaternion")
    np.testing.assert_allclose((r @ r.transpose(1, 2)).numpy(), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(torch.linalg.det(r).numpy(), 1.0, atol=1e-12)
    best = (1.0 + eps) * np.ones(4)  # tr((Q Pᵀ)ᵀ Σ) = 1 + ½ − ½ + ε
    objective = (r * cov).sum(dim=(1, 2)).numpy()
    assert np.all(objective <= best + 1e-12) and np.all(objective >= best - 2 * eps - 1e-12)
    if eps >= 0.05:
        torch.testing.assert_close(r, q @ p.transpose(1, 2), rtol=0, atol=1e-9)
        torch.testing.assert_close(r, procrustes_rotation(cov, solver="svd"), rtol=0, atol=1e-9)


def test_quaternion_solver_argument_checks():
    src, dst, *_ = _random_similarity_batch(11, b=1, n=10)
    with pytest.raises(ValueError, match="proper rotations only"):
        weighted_umeyama(src, dst, solver="quaternion", allow_reflection=True)
    with pytest.raises(ValueError, match="solver must be one of"):
        weighted_umeyama(src, dst, solver="eig")


class _QuaternionFit(torch.nn.Module):
    def forward(self, src, dst, w):
        fit = weighted_umeyama(src, dst, w, solver="quaternion", channels_first=True)
        return fit.scale, fit.rotation, fit.translation, fit.well_posed


def test_quaternion_solver_exports_to_onnx():
    """The solver alone (float32 points, float64 3×3 problem) exports (opset 17) and ONNX Runtime reproduces it."""
    import io

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    src, dst, w, _ = _noisy_problem(12, b=4, n=200, axes=(1.0, 1.2, 0.3))
    src, dst, w = (t.float() for t in (src.transpose(1, 2), dst.transpose(1, 2), w))
    src[3] = 0.0  # coincident sources: the fallback inside the graph (at 0, so that float32 centring is exact:
    # the σ² ≈ 0 test is absolute, and float32 rounding of a mean elsewhere leaves σ² ~ 1e-15 in either backend)
    w[2] = 0.0  # zero weights: the uniform fallback
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(_QuaternionFit(), (src[:2], dst[:2], w[:2]), buf, input_names=["src", "dst", "w"],
                          output_names=["scale", "rotation", "translation", "well_posed"], opset_version=17, dynamo=False,
                          dynamic_axes={k: {0: "batch"} for k in ("src", "dst", "w", "scale", "rotation", "translation", "well_posed")})
        ref = _QuaternionFit()(src, dst, w)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"src": src.numpy(), "dst": dst.numpy(), "w": w.numpy()})  # batch 4, traced at 2
    assert [g.dtype for g in got] == [np.float32, np.float32, np.float32, np.bool_]
    for g, r in zip(got[:3], ref[:3]):
        np.testing.assert_allclose(g, r.numpy(), rtol=1e-5, atol=1e-5)
    assert got[3].tolist() == ref[3].tolist() == [True, True, False, False]


# --- 3DMM decode ------------------------------------------------------------------------------------------


def test_decode_vertices():
    rng = np.random.default_rng(8)
    mean = rng.normal(size=(50, 3)).astype(np.float32)
    sb = rng.normal(size=(50, 3, 4)).astype(np.float32)
    eb = rng.normal(size=(50, 3, 2)).astype(np.float32)
    alpha, beta = rng.normal(size=(3, 4)), rng.normal(size=(3, 2))
    v = decode_vertices(mean, sb, eb, alpha, beta)
    np.testing.assert_allclose(v, mean + np.einsum("nck,bk->bnc", sb, alpha) + np.einsum("nck,bk->bnc", eb, beta),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v[1, 7], mean[7] + sb[7] @ alpha[1] + eb[7] @ beta[1], rtol=1e-5)
    # truncated coefficient vectors pad with zeros
    np.testing.assert_allclose(decode_vertices(mean, sb, eb, alpha[0, :2], beta[0, :1]), decode_vertices(mean, sb, eb, np.r_[alpha[0, :2], 0, 0], [beta[0, 0], 0]))
    with pytest.raises(ValueError, match="coefficients"):
        decode_vertices(mean, sb, eb, np.zeros(5), beta[0])


def test_nearest_rotation():
    from dsfnet.geometry import nearest_rotation, pose_para_to_matrix

    r = pose_para_to_matrix(0.2, -0.4, 0.1)
    np.testing.assert_allclose(nearest_rotation(r), r, atol=1e-12)
    noisy = nearest_rotation(r + 0.01 * np.random.default_rng(0).normal(size=(3, 3)))
    np.testing.assert_allclose(noisy @ noisy.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(noisy) == pytest.approx(1.0)
