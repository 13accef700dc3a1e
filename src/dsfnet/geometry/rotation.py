"""The rotation nearest to a matrix (orthogonal Procrustes / polar factor), NumPy.

For the batched, differentiable torch solvers of the weighted fits see :mod:`dsfnet.geometry.similarity`.
"""
from __future__ import annotations

import numpy as np


def nearest_rotation(m, *, allow_reflection: bool = False) -> np.ndarray:
    """The rotation closest (Frobenius) to ``m`` ``(..., 3, 3)``, from its SVD ``m = U·D·Vᵀ``, float64.

    ``R = U·diag(1, 1, d)·Vᵀ`` with ``d = sign det(U·Vᵀ)`` (a proper rotation, det +1); with
    ``allow_reflection`` ``R = U·Vᵀ``, the nearest orthogonal matrix (det ±1). It maximises ``tr(Rᵀ·m)``, so for a
    cross-covariance ``m = Σ y·xᵀ`` it is the rotation that best maps the points ``x`` onto ``y``.

    >>> r = nearest_rotation(np.diag([2.0, 1.0, -0.5]))
    >>> r.round(12).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    u, _, vt = np.linalg.svd(np.asarray(m, dtype=np.float64))
    if allow_reflection:
        return u @ vt
    d = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    return (u * np.stack([np.ones_like(d), np.ones_like(d), d], axis=-1)[..., None, :]) @ vt
