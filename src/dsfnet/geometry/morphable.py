"""3DMM decoding: ``V = mean + shape_basis · α + exp_basis · β`` in model units (y up).

Shapes: ``mean (N, 3)``, ``shape_basis (N, 3, Ks)``, ``exp_basis (N, 3, Ke)``. Coefficients here are
**raw** (the scale of 300W-LP ``Shape_Para``/``Exp_Para``); multiply normalised network outputs by the
face model's ``shape_std``/``exp_std`` first (``docs/CONVENTIONS.md``).
"""
from __future__ import annotations

import numpy as np


def decode_vertices(mean: np.ndarray, shape_basis: np.ndarray, exp_basis: np.ndarray, alpha, beta) -> np.ndarray:
    """Decode raw coefficients to vertices (NumPy).

    Args:
        mean: ``(N, 3)``; shape_basis: ``(N, 3, Ks)``; exp_basis: ``(N, 3, Ke)``.
        alpha: ``(*, Ks)`` or shorter (missing trailing components are zero); beta: ``(*, Ke)`` likewise.
    Returns:
        ``(*, N, 3)`` float32 vertices, model units.

    >>> decode_vertices(np.zeros((2, 3)), np.ones((2, 3, 1)), np.ones((2, 3, 1)), [1.0], [2.0])[0].tolist()
    [3.0, 3.0, 3.0]
    """
    a = _pad(np.asarray(alpha, dtype=np.float64), shape_basis.shape[2])
    e = _pad(np.asarray(beta, dtype=np.float64), exp_basis.shape[2])
    out = np.einsum("nck,...k->...nc", shape_basis, a) + np.einsum("nck,...k->...nc", exp_basis, e)
    return (out + mean).astype(np.float32)


def _pad(coeffs: np.ndarray, k: int) -> np.ndarray:
    if coeffs.shape[-1] > k:
        raise ValueError(f"got {coeffs.shape[-1]} coefficients, the basis has {k}")
    if coeffs.shape[-1] < k:
        pad = np.zeros(coeffs.shape[:-1] + (k - coeffs.shape[-1],))
        coeffs = np.concatenate([coeffs, pad], axis=-1)
    return coeffs
