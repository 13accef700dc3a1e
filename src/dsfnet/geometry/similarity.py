"""Confidence-weighted similarity alignment (weighted Umeyama), batched, differentiable, deterministic.

Given point sets ``src`` and ``dst`` ``(B, N, 3)`` and weights ``w`` ``(B, N)`` (≥ 0), find the
similarity ``dst ≈ c · src @ R.T + t`` minimising ``Σ w_i ‖c R s_i + t − d_i‖²``:

* ``W = Σ w``, weighted means ``μ_s``, ``μ_d``; centred ``X``, ``Y``;
* ``Σ = (1/W) Σ w_i Y_i X_iᵀ``, ``σ² = (1/W) Σ w_i ‖X_i‖²``, ``Σ = U D Vᵀ``;
* ``R = U E Vᵀ`` with ``E = diag(1, 1, sign det(U Vᵀ))`` (proper rotation), or ``E = I`` when
  ``allow_reflection=True`` (then ``R`` may have det −1);
* ``c = tr(D E) / σ²``, ``t = μ_d − c R μ_s``.

The model → image map contains the reflection ``F`` (y up → y down). Callers that want a proper rotation
apply ``dsfnet.geometry.frames.FLIP_Y`` to one side first; see ``docs/CONVENTIONS.md``.

No random sampling and no random noise: the weighted moments are accumulated over the points in the input
precision (at least float32; means removed before the second moments), and the 3×3 problem is solved in float64
by one of two solvers (``solver=``):

* ``"svd"`` (default): the SVD above, with a fixed tiny diagonal regulariser that separates equal singular values
  (keeping the SVD backward pass finite). ``torch.linalg.svd`` has no ONNX operator.
* ``"quaternion"``: Horn's closed form (J. Opt. Soc. Am. A 4(4), 1987), proper rotations only. With
  ``S = Σᵀ`` (``S_ab = Σ w X_a Y_b / W``), the symmetric traceless 4×4 matrix

  ``N = [[Sxx+Syy+Szz, Syz−Szy, Szx−Sxz, Sxy−Syx], [·, Sxx−Syy−Szz, Sxy+Syx, Szx+Sxz],
  [·, ·, −Sxx+Syy−Szz, Syz+Szy], [·, ·, ·, −Sxx−Syy+Szz]]``

  satisfies ``qᵀ N q = tr(R(q)ᵀ Σ)`` for unit quaternions ``q``, so the best proper rotation is ``R(q₁)`` for
  the eigenvector ``q₁`` of N's largest eigenvalue. Its eigenvalues are ``±σ₁ ± σ₂ ± σ₃`` (``σ`` the singular
  values of Σ), so ``|λ| ≤ √3·‖Σ‖_F``: with ``Σ`` scaled to unit Frobenius norm, ``A = (N + √3·I)/(4√3)`` is
  positive semi-definite with trace 1 and the same eigenvectors, and ``A^(2^k)`` (``k`` =
  :data:`QUATERNION_SQUARINGS` matrix squarings, renormalised by the trace every few) converges to ``λ₁^(2^k)·q₁q₁ᵀ``
  at the rate ``((λ₂ + √3)/(λ₁ + √3))^(2^k)``. Its column with the largest diagonal entry, normalised, is ``±q₁``
  (a column of the projector; the sign does not matter). Then ``c = tr(Rᵀ Σ)/σ²`` and ``t`` as above. The gap
  ``λ₁ − λ₂ = 2(σ₂ + sign(det Σ)·σ₃)`` vanishes only where the best rotation is not unique (collinear points,
  or a reflection-like Σ with ``σ₂ = σ₃``); there the result is still a proper rotation from the (near-)optimal
  eigenspace. Only matrix products, sums, one argmax and a gather, with a fixed operation count: it exports to
  ONNX (used by ``dsfnet.model.export``) and gives the SVD solver's result to float64 rounding (tests compare
  them to 1e-9).

Degenerate input falls back, never to NaN:

* all weights zero (or non-finite) → uniform weights over the points;
* ``σ² ≈ 0`` (all source points coincide) → ``c = 1``, ``R = I``, ``t = μ_d − μ_s``;
* collinear or coplanar points → a valid rotation (one of the equally good ones), chosen deterministically.

``Similarity.well_posed`` flags samples that needed a fallback.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_REG = 1e-12  # relative diagonal regulariser of the cross-covariance
_TINY = 1e-20
#: solvers of the 3×3 rotation problem (see the module docstring)
SOLVERS = ("svd", "quaternion")
#: matrix squarings of the quaternion solver (``A^4096``): converged to float64 rounding when the relative eigen-gap
#: ``δ = (λ₁ − λ₂)/(λ₁ + √3)`` (unit-norm Σ) exceeds ~0.01, as ``(1 − δ)^4096 < 1e-17``. DSFNet's fits have δ > 0.3
#: (7 squarings would do; measured on the lite model), the tests' flat, planar and reflected clouds 0.02–0.3. A
#: smaller gap means a nearly non-unique best rotation; the result is then still a proper rotation, between the
#: nearly optimal ones (its ``tr(Rᵀ Σ)`` is within ``λ₁ − λ₂`` of the best).
QUATERNION_SQUARINGS = 12
_RENORM_EVERY = 8  # trace renormalisation: the top eigenvalue stays ≥ 4^-(2^8) ≈ 1e-154 between two of them


def _horn_tables() -> tuple[np.ndarray, np.ndarray]:
    """Constant linear maps ``vec(Σ) (9) → vec(N) (16)`` and ``vec(q qᵀ) (16) → vec(R(q)) (9)`` (row-major)."""
    to_n = np.zeros((4, 4, 3, 3))
    # (i, j) of N  ←  sum of sign · Σ[a, b]; Σ[a, b] = S[b, a] (S_ab = Σ w X_a Y_b)
    entries = {
        (0, 0): [(1, 0, 0), (1, 1, 1), (1, 2, 2)],
        (1, 1): [(1, 0, 0), (-1, 1, 1), (-1, 2, 2)],
        (2, 2): [(-1, 0, 0), (1, 1, 1), (-1, 2, 2)],
        (3, 3): [(-1, 0, 0), (-1, 1, 1), (1, 2, 2)],
        (0, 1): [(1, 2, 1), (-1, 1, 2)],  # Syz − Szy
        (0, 2): [(1, 0, 2), (-1, 2, 0)],  # Szx − Sxz
        (0, 3): [(1, 1, 0), (-1, 0, 1)],  # Sxy − Syx
        (1, 2): [(1, 1, 0), (1, 0, 1)],  # Sxy + Syx
        (1, 3): [(1, 0, 2), (1, 2, 0)],  # Szx + Sxz
        (2, 3): [(1, 2, 1), (1, 1, 2)],  # Syz + Szy
    }
    for (i, j), terms in entries.items():
        for sign, a, b in terms:
            to_n[i, j, a, b] += sign
            if i != j:
                to_n[j, i, a, b] += sign
    to_r = np.zeros((4, 4, 3, 3))  # R(q) for q = (w, x, y, z), acting on column vectors; Q = q qᵀ is symmetric
    diag_signs = {0: (1, 1, -1, -1), 1: (1, -1, 1, -1), 2: (1, -1, -1, 1)}
    for k, signs in diag_signs.items():
        for m, sgn in enumerate(signs):
            to_r[m, m, k, k] = sgn
    off = {  # R[a, b] = 2(q_i q_j ± q_0 q_m): ((a, b), [(sign, i, j), ...])
        (0, 1): [(1, 1, 2), (-1, 0, 3)], (1, 0): [(1, 1, 2), (1, 0, 3)],
        (0, 2): [(1, 1, 3), (1, 0, 2)], (2, 0): [(1, 1, 3), (-1, 0, 2)],
        (1, 2): [(1, 2, 3), (-1, 0, 1)], (2, 1): [(1, 2, 3), (1, 0, 1)],
    }
    for (a, b), terms in off.items():
        for sign, i, j in terms:  # 2 q_i q_j = Q_ij + Q_ji
            to_r[i, j, a, b] += sign
            to_r[j, i, a, b] += sign
    return to_n.reshape(16, 9).T.copy(), to_r.reshape(16, 9)  # (9, 16), (16, 9): right-multiplied


_TO_N, _TO_R = (torch.from_numpy(t) for t in _horn_tables())


def horn_rotation(cov: torch.Tensor) -> torch.Tensor:
    """The proper rotation ``R`` maximising ``tr(Rᵀ Σ)`` for ``(B, 3, 3)`` float64 ``Σ``, without an SVD.

    Horn's quaternion method with the top eigenvector from :data:`QUATERNION_SQUARINGS` squarings of the
    shifted, normalised 4×4 matrix (module docstring). A fixed sequence of tensor operations: traceable, exports to
    ONNX, deterministic, differentiable (gradients stay finite for ``Σ = 0``, which gives ``R = I``). Written for
    a small exported graph: no size arithmetic (``reshape(-1, …)``, broadcasting), a one-hot row instead of an
    expanded gather index.
    """
    # unit Frobenius norm (the tiny floor inside the root keeps Σ = 0 finite in both passes: then A = I/4, R = I)
    norm = torch.sqrt((cov * cov).sum(dim=(1, 2), keepdim=True) + _TINY * _TINY)
    root3 = 3.0 ** 0.5
    eye4 = torch.eye(4, dtype=cov.dtype, device=cov.device)
    n = ((cov / norm).reshape(-1, 9) @ _TO_N.to(cov)).reshape(-1, 4, 4)  # eigenvalues in [−√3, √3]
    a = (n + root3 * eye4) / (4.0 * root3)  # PSD, trace 1, top eigenvalue ≥ 1/4
    for i in range(QUATERNION_SQUARINGS):
        a = a @ a
        if (i + 1) % _RENORM_EVERY == 0:
            a = a / (a * eye4).sum(dim=(1, 2), keepdim=True)
    col = (a * eye4).sum(dim=2).argmax(dim=1)  # the column with the largest diagonal entry: |q_j| ≥ 1/2
    q = (a * eye4[col][:, None, :]).sum(dim=2)  # that column (one-hot selection: exact)
    q = q / torch.sqrt((q * q).sum(dim=1, keepdim=True))
    return ((q[:, :, None] * q[:, None, :]).reshape(-1, 16) @ _TO_R.to(cov)).reshape(-1, 3, 3)


def _solve_rotation(cov: torch.Tensor, allow_reflection: bool, solver: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, tr(Rᵀ Σ))`` for ``(B, 3, 3)`` float64 ``Σ``: the 3×3 step of :func:`weighted_umeyama`."""
    if solver == "quaternion":
        rot = horn_rotation(cov)
        return rot, (rot * cov).sum(dim=(1, 2))  # tr(Rᵀ Σ) = tr(D E) of the SVD form
    b = cov.shape[0]
    # Fixed, tiny, unequal diagonal regulariser: breaks ties between singular values deterministically.
    scale_ref = cov.abs().amax(dim=(1, 2)).clamp_min(_TINY)
    reg = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64, device=cov.device)
    cov = cov + _REG * scale_ref[:, None, None] * torch.diag_embed(reg.expand(b, 3))
    u, sv, vh = torch.linalg.svd(cov)
    e = torch.ones(b, 3, dtype=torch.float64, device=cov.device)
    if not allow_reflection:
        det = torch.linalg.det(u @ vh)
        e = torch.cat([e[:, :2], torch.where(det < 0, -1.0, 1.0)[:, None]], dim=1)
    return u @ torch.diag_embed(e) @ vh, (sv * e).sum(dim=1)


def clean_weights(weights: torch.Tensor) -> torch.Tensor:
    """Weights as :func:`weighted_umeyama` uses them: NaN and ±inf count as 0, negatives as 0."""
    return torch.where(weights * 0.0 == 0.0, weights, 0.0).clamp_min(0.0)  # w·0 is 0 iff w is finite


def _check_solver(solver: str, allow_reflection: bool) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "quaternion" and allow_reflection:
        raise ValueError("the quaternion solver gives proper rotations only; use solver='svd' with allow_reflection=True")


def procrustes_rotation(cov: torch.Tensor, *, allow_reflection: bool = False, solver: str = "svd") -> torch.Tensor:
    """The rotation ``R`` maximising ``tr(Rᵀ Σ)`` for a ``(B, 3, 3)`` cross-covariance ``Σ`` (the orthogonal
    Procrustes / polar factor), with the solvers and conventions of :func:`weighted_umeyama`; in ``Σ``'s dtype.

    >>> r = procrustes_rotation(torch.diag(torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64))[None])
    >>> bool(torch.allclose(r, torch.eye(3, dtype=torch.float64)))
    True
    """
    _check_solver(solver, allow_reflection)
    rot, _ = _solve_rotation(cov.to(torch.float64), allow_reflection, solver)
    return rot.to(cov.dtype)


@dataclass(frozen=True)
class Similarity:
    """A batch of similarities ``y = scale · x @ rotation.T + translation``.

    Attributes:
        scale: ``(B,)``.
        rotation: ``(B, 3, 3)``.
        translation: ``(B, 3)``.
        well_posed: ``(B,)`` bool, False where a degenerate-input fallback was used.
    """

    scale: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    well_posed: torch.Tensor

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """Transform ``(B, N, 3)`` points (rows)."""
        return apply_similarity(points, self.scale, self.rotation, self.translation)

    def matrix(self) -> torch.Tensor:
        """``(B, 3, 4)`` matrix ``[c·R | t]``."""
        return torch.cat([self.scale[:, None, None] * self.rotation, self.translation[:, :, None]], dim=2)


def apply_similarity(points: torch.Tensor, scale: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """``scale · points @ rotation.T + translation`` for ``points (B, N, 3)``, ``scale (B,)``,
    ``rotation (B, 3, 3)``, ``translation (B, 3)``; returns ``(B, N, 3)``."""
    return scale[:, None, None] * torch.einsum("bnj,bij->bni", points, rotation) + translation[:, None, :]


def weighted_umeyama(
    src: torch.Tensor,
    dst: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    allow_reflection: bool = False,
    with_scale: bool = True,
    channels_first: bool = False,
    solver: str = "svd",
) -> Similarity:
    """Fit the similarity mapping ``src`` onto ``dst``.

    Args:
        src: ``(B, N, 3)`` or ``(N, 3)`` source points (rows); ``(B, 3, N)`` / ``(3, N)`` with ``channels_first``.
        dst: same shape as ``src``, target points.
        weights: ``(B, N)`` / ``(N,)`` non-negative weights, or None for uniform.
        allow_reflection: if True, ``E = I`` (orthogonal ``R``, det may be −1).
        with_scale: if False, ``c = 1`` (rigid fit).
        channels_first: points are columns (the layout of flattened UV maps; saves a transposed copy).
        solver: ``"svd"`` or ``"quaternion"`` (SVD-free, ONNX-exportable; proper rotations only, so it needs
            ``allow_reflection=False``). Both give the same fit (module docstring).
    Returns:
        :class:`Similarity` with batch dimension (``B = 1`` for unbatched input), in ``src``'s dtype.

    >>> s = torch.randn(1, 10, 3, dtype=torch.float64)
    >>> fit = weighted_umeyama(s, 2 * s + 1)
    >>> bool(torch.allclose(fit.scale, torch.tensor([2.0], dtype=torch.float64)))
    True
    """
    _check_solver(solver, allow_reflection)
    axis = -2 if channels_first else -1
    if src.shape != dst.shape or src.dim() not in (2, 3) or src.shape[axis] != 3:
        want = "(B, 3, N) or (3, N)" if channels_first else "(B, N, 3) or (N, 3)"
        raise ValueError(f"src and dst must both be {want}; got {tuple(src.shape)} and {tuple(dst.shape)}")
    if src.dim() == 2:
        src, dst = src[None], dst[None]
        weights = None if weights is None else weights[None]
    if not channels_first:
        src, dst = src.transpose(1, 2), dst.transpose(1, 2)  # views
    out_dtype = src.dtype if src.dtype.is_floating_point else torch.float32
    b, _, n = src.shape
    if n == 0:
        raise ValueError("weighted_umeyama needs at least one point")
    if weights is not None and weights.shape != (b, n):
        raise ValueError(f"weights must be (B, N) = {(b, n)}, got {tuple(weights.shape)}")
    moments = weighted_moments(src, dst, weights)
    return similarity_from_moments(moments, allow_reflection=allow_reflection, with_scale=with_scale, solver=solver,
                                   dtype=out_dtype)


@dataclass(frozen=True)
class WeightedMoments:
    """What the fit needs from the points (all float64): weighted means ``mu_s``, ``mu_d`` ``(B, 3)``, source
    variance ``var_s = Σ w ‖X‖² / W`` ``(B,)``, cross-covariance ``cov = Σ w Y Xᵀ / W`` ``(B, 3, 3)``, and
    ``no_weight`` ``(B,)`` bool (the uniform fallback was used)."""

    mu_s: torch.Tensor
    mu_d: torch.Tensor
    var_s: torch.Tensor
    cov: torch.Tensor
    no_weight: torch.Tensor

    def scale_dst(self, diag: torch.Tensor) -> "WeightedMoments":
        """The moments of ``(diag · dst)`` for a ``(3,)`` diagonal map (e.g. the y-flip), without touching the points."""
        return WeightedMoments(self.mu_s, self.mu_d * diag, self.var_s, self.cov * diag[:, None], self.no_weight)


@dataclass(frozen=True)
class NormalizedWeights:
    """Fit weights ready for :func:`weighted_moments`: ``wn (B, N, 1)`` (≥ 0, summing to 1 per sample) and
    ``no_weight (B,)`` bool (the uniform fallback was used). Several fits with the same weights share them."""

    wn: torch.Tensor
    no_weight: torch.Tensor

    def detach(self) -> "NormalizedWeights":
        return NormalizedWeights(self.wn.detach(), self.no_weight)


def normalize_weights(weights: torch.Tensor, mask: torch.Tensor | None = None,
                      dtype: torch.dtype = torch.float32) -> NormalizedWeights:
    """``(B, N)`` weights → :class:`NormalizedWeights` in ``dtype`` (at least float32). NaN, ±inf and negatives
    count as 0. With ``mask`` (``(N,)`` {0, 1}) points outside count with weight 0, and the all-zero-weight
    fallback is uniform over the mask's points (without it, over all points)."""
    work = torch.promote_types(dtype, torch.float32)
    w = clean_weights(weights.to(work))
    fallback = 1.0
    if mask is not None:
        fallback = mask.reshape(1, -1).to(work)
        w = w * fallback
    no_weight = w.sum(dim=1) <= _TINY
    w = torch.where(no_weight[:, None], fallback, w)
    return NormalizedWeights((w / w.sum(dim=1, keepdim=True))[:, :, None], no_weight)


def _records_grad(*tensors: torch.Tensor) -> bool:
    """Autograd is recording an eager (not traced) computation on any of ``tensors``."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or not torch.is_grad_enabled():
        return False
    return any(t.requires_grad for t in tensors)


class _CrossMoment(torch.autograd.Function):
    """``a @ bᵀ`` for ``a, b (B, 3, N)`` → ``(B, 3, 3)``, whose backward keeps the ``(B, 3, N)`` layout
    (``G @ b`` and ``Gᵀ @ a``) instead of autograd's ``(B, N, 3)`` product for the transposed operand."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return torch.matmul(a, b.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        a, b = ctx.saved_tensors
        grad_a = torch.matmul(grad, b) if ctx.needs_input_grad[0] else None
        grad_b = torch.matmul(grad.transpose(1, 2), a) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


def weighted_moments(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | NormalizedWeights | None = None,
                     mask: torch.Tensor | None = None) -> WeightedMoments:
    """The weighted moments of :func:`weighted_umeyama` for channels-first points.

    Args:
        src: ``(B, 3, N)``.
        dst: ``(B, 3, N)``, or ``(1, 3, N)`` shared by the batch (broadcast, never copied).
        weights: ``(B, N)`` (NaN, ±inf and negatives count as 0), :class:`NormalizedWeights`, or None for uniform.
        mask: optional ``(N,)`` {0, 1} (not with :class:`NormalizedWeights`): see :func:`normalize_weights`.
    Returns:
        :class:`WeightedMoments`. Two passes over the points in the input precision (at least float32; means
        removed before the second moments), each a matrix product plus an elementwise pass; float64 results.
    """
    work = torch.promote_types(src.dtype if src.dtype.is_floating_point else torch.float32, torch.float32)
    src, dst = src.to(work), dst.to(work)
    if not isinstance(weights, NormalizedWeights):
        weights = normalize_weights(torch.ones_like(src[:, 0]) if weights is None else weights, mask, work)
    elif mask is not None:
        raise ValueError("mask applies to raw weights; pass it to normalize_weights instead")
    wn, no_weight = weights.wn.to(work), weights.no_weight
    w_row = wn.transpose(1, 2)  # (B, 1, N)
    recording = _records_grad(src, dst, wn)  # yc and xw below derive from these: one decision for both products
    if recording:
        # the same products, written so that the backward pass avoids tall-skinny batched matmuls ((B, N, 3) results),
        # which CPU BLAS runs 2-4x slower than these elementwise passes and than _CrossMoment's backward
        mu_s, mu_d = (src * w_row).sum(dim=2, keepdim=True), (dst * w_row).sum(dim=2, keepdim=True)  # (B, 3, 1)
    else:
        mu_s, mu_d = torch.matmul(src, wn), torch.matmul(dst, wn)
    xs = src - mu_s
    xw = xs * w_row
    var_s = (xw * xs).sum(dim=(1, 2))
    yc = dst - mu_d
    # (B, 3, 3) = Σ w Y Xᵀ / W
    cov = _CrossMoment.apply(yc, xw) if recording else torch.matmul(yc, xw.transpose(1, 2))
    f64 = torch.float64
    return WeightedMoments(mu_s[:, :, 0].to(f64), mu_d[:, :, 0].to(f64), var_s.to(f64), cov.to(f64), no_weight)


def similarity_from_moments(moments: WeightedMoments, *, allow_reflection: bool = False, with_scale: bool = True,
                            solver: str = "svd", dtype: torch.dtype = torch.float32) -> Similarity:
    """The similarity fit (the 3×3 problem, in float64) from :func:`weighted_moments`; results in ``dtype``.

    Written without size arithmetic and expanded constants: this part is also an exported ONNX graph.
    """
    _check_solver(solver, allow_reflection)
    mu_s, mu_d, var_s = moments.mu_s, moments.mu_d, moments.var_s
    rot, trace = _solve_rotation(moments.cov, allow_reflection, solver)
    degenerate = var_s <= _TINY * (1.0 + mu_s.abs().amax(dim=1) ** 2)
    if with_scale:
        scale = torch.where(degenerate, 1.0, trace / torch.where(degenerate, 1.0, var_s))
    else:
        scale = torch.ones_like(var_s)
    rot = torch.where(degenerate[:, None, None], torch.eye(3, dtype=torch.float64, device=rot.device), rot)
    trans = mu_d - scale[:, None] * (rot @ mu_s[:, :, None])[:, :, 0]
    well_posed = ~(moments.no_weight | degenerate)
    return Similarity(scale.to(dtype), rot.to(dtype), trans.to(dtype), well_posed)
