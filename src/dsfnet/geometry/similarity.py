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
with a fixed tiny diagonal regulariser that separates equal singular values (keeping the SVD backward pass finite).

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
) -> Similarity:
    """Fit the similarity mapping ``src`` onto ``dst``.

    Args:
        src: ``(B, N, 3)`` or ``(N, 3)`` source points (rows); ``(B, 3, N)`` / ``(3, N)`` with ``channels_first``.
        dst: same shape as ``src``, target points.
        weights: ``(B, N)`` / ``(N,)`` non-negative weights, or None for uniform.
        allow_reflection: if True, ``E = I`` (orthogonal ``R``, det may be −1).
        with_scale: if False, ``c = 1`` (rigid fit).
        channels_first: points are columns (the layout of flattened UV maps; saves a transposed copy).
    Returns:
        :class:`Similarity` with batch dimension (``B = 1`` for unbatched input), in ``src``'s dtype.

    >>> s = torch.randn(1, 10, 3, dtype=torch.float64)
    >>> fit = weighted_umeyama(s, 2 * s + 1)
    >>> bool(torch.allclose(fit.scale, torch.tensor([2.0], dtype=torch.float64)))
    True
    """
    axis = -2 if channels_first else -1
    if src.shape != dst.shape or src.dim() not in (2, 3) or src.shape[axis] != 3:
        want = "(B, 3, N) or (3, N)" if channels_first else "(B, N, 3) or (N, 3)"
        raise ValueError(f"src and dst must both be {want}; got {tuple(src.shape)} and {tuple(dst.shape)}")
    if src.dim() == 2:
        src, dst = src[None], dst[None]
        weights = None if weights is None else weights[None]
    if not channels_first:
        src, dst = src.transpose(1, 2), dst.transpose(1, 2)  # views; the concatenation below copies once
    out_dtype = src.dtype if src.dtype.is_floating_point else torch.float32
    work = torch.promote_types(out_dtype, torch.float32)  # per-point passes: the input precision
    b, _, n = src.shape
    if n == 0:
        raise ValueError("weighted_umeyama needs at least one point")
    if weights is None:
        w = torch.ones(b, n, dtype=work, device=src.device)
    else:
        if weights.shape != (b, n):
            raise ValueError(f"weights must be (B, N) = {(b, n)}, got {tuple(weights.shape)}")
        w = torch.nan_to_num(weights.to(work), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    no_weight = w.sum(dim=1) <= _TINY
    w = torch.where(no_weight[:, None], torch.ones_like(w), w)

    # Weighted means, then every centred second moment from one (B, 6, 6) Gram matrix of the rows [s; d]:
    # two passes over the points, each a single matrix product, in the input precision (at least float32);
    # the 3×3 problem below is float64.
    pts = torch.cat([src, dst], dim=1).to(work)  # (B, 6, N)
    wn = w / w.sum(dim=1, keepdim=True)  # (B, N), sums to 1
    mu = torch.bmm(pts, wn[:, :, None])  # (B, 6, 1)
    pts = pts - mu
    gram = torch.bmm(pts * wn[:, None], pts.transpose(1, 2)).to(torch.float64)  # (B, 6, 6)
    mu = mu.to(torch.float64)
    mu_s, mu_d = mu[:, 0:3, 0], mu[:, 3:6, 0]
    var_s = torch.diagonal(gram[:, 0:3, 0:3], dim1=1, dim2=2).sum(dim=1)  # Σ w ‖X‖² / W
    cov = gram[:, 3:6, 0:3]  # (B, 3, 3) = Σ w Y Xᵀ / W

    # Fixed, tiny, unequal diagonal regulariser: breaks ties between singular values deterministically.
    scale_ref = cov.abs().amax(dim=(1, 2)).clamp_min(_TINY)
    reg = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64, device=cov.device)
    cov = cov + _REG * scale_ref[:, None, None] * torch.diag_embed(reg.expand(b, 3))
    u, sv, vh = torch.linalg.svd(cov)
    e = torch.ones(b, 3, dtype=torch.float64, device=cov.device)
    if not allow_reflection:
        det = torch.linalg.det(u @ vh)
        e = torch.cat([e[:, :2], torch.where(det < 0, -1.0, 1.0)[:, None]], dim=1)
    rot = u @ torch.diag_embed(e) @ vh

    degenerate = var_s <= _TINY * (1.0 + mu_s.abs().amax(dim=1) ** 2)
    if with_scale:
        scale = (sv * e).sum(dim=1) / torch.where(degenerate, torch.ones_like(var_s), var_s)
    else:
        scale = torch.ones_like(var_s)
    eye = torch.eye(3, dtype=torch.float64, device=cov.device).expand(b, 3, 3)
    rot = torch.where(degenerate[:, None, None], eye, rot)
    scale = torch.where(degenerate, torch.ones_like(scale), scale)
    trans = mu_d - scale[:, None] * torch.einsum("bij,bj->bi", rot, mu_s)
    well_posed = ~(no_weight | degenerate)
    return Similarity(scale.to(out_dtype), rot.to(out_dtype), trans.to(out_dtype), well_posed)


def weighted_umeyama_np(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, **kwargs) -> tuple[float, np.ndarray, np.ndarray]:
    """NumPy convenience wrapper for one point set ``(N, 3)``: returns ``(scale, rotation (3,3), translation (3,))``."""
    fit = weighted_umeyama(
        torch.as_tensor(np.asarray(src, dtype=np.float64)),
        torch.as_tensor(np.asarray(dst, dtype=np.float64)),
        None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64)),
        **kwargs,
    )
    return float(fit.scale[0]), fit.rotation[0].numpy(), fit.translation[0].numpy()
