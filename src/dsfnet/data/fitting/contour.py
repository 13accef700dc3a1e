"""Candidate vertices of the jaw landmarks under the 2D (silhouette) convention ("landmark marching")."""
from __future__ import annotations

from typing import Any

import numpy as np

from dsfnet.data.fitting.options import CHIN


def contour_candidates(face_model: Any, n_per_line: int = 32, band: float = 0.03) -> np.ndarray:
    """Candidate vertices for the 17 jaw landmarks under the 2D (silhouette) convention.

    Built from the mean shape (model units, y up). ``W`` is half the x-distance between jaw points 0 and 16.
    For jaw point ``j`` with fixed vertex ``k_j`` at ``(x_j, y_j, z_j)`` on side ``sign(x_j)``, the candidates
    form a horizontal strip at the height of ``k_j``: vertices with ``|y − y_j| < band·W`` on the same side with

    * ``0.3·|x_j| ≤ |x| ≤ |x_j| + 0.05·W`` (from the cheek toward the midline, up to the side of the face), and
    * ``z ≥ z_j − 0.3·W`` for the upper jaw (points 0–4 and 12–16: the cheek, where the near-side outline
      moves back toward the ear) or ``z ≥ z_j − 0.05·W`` for the lower jaw (5–7, 9–11: the mandible's edge).

    The strip is ordered by the angle ``atan2(|x|, z − z_c)`` around a vertical axis behind the face
    (``z_c = z_0 − 0.5·W``), cut into ``n_per_line − 1`` equal angle bins, and in each bin the vertex closest to
    height ``y_j`` is kept. ``k_j`` is always candidate 0; the chin (8) has only itself.

    Args:
        face_model: object with ``mean (N, 3)`` and ``keypoints (68,)``.
        n_per_line: candidates per jaw point (rows are padded with ``k_j``).
        band: half-height of the strip as a fraction of ``W``.
    Returns:
        ``(17, n_per_line)`` int64 vertex ids.
    """
    mean = np.asarray(face_model.mean, dtype=np.float64)
    kp = np.asarray(face_model.keypoints, dtype=np.int64)
    half_w = 0.5 * abs(mean[kp[16], 0] - mean[kp[0], 0])
    if not half_w > 0:
        raise ValueError("face model's jaw points 0 and 16 coincide in x; cannot build contour lines")
    z_axis = 0.5 * (mean[kp[0], 2] + mean[kp[16], 2]) - 0.5 * half_w
    out = np.repeat(kp[:17, None], n_per_line, axis=1)
    for j in range(17):
        if j == CHIN:
            continue
        xj, yj, zj = mean[kp[j]]
        side = 1.0 if xj > 0 else -1.0
        ax = side * mean[:, 0]
        behind = 0.3 if (j <= 4 or j >= 12) else 0.05
        dy = np.abs(mean[:, 1] - yj)
        sel = np.flatnonzero((dy < band * half_w) & (ax >= 0.3 * abs(xj)) & (ax <= abs(xj) + 0.05 * half_w)
                             & (mean[:, 2] >= zj - behind * half_w))
        if sel.size == 0:
            continue
        theta = np.arctan2(ax[sel], mean[sel, 2] - z_axis)
        lo, hi = theta.min(), theta.max()
        bins = np.minimum(((theta - lo) / max(hi - lo, 1e-12) * (n_per_line - 1)).astype(np.int64), n_per_line - 2)
        chosen = []
        for b in range(n_per_line - 1):
            in_bin = sel[bins == b]
            if in_bin.size:
                chosen.append(int(in_bin[np.argmin(dy[in_bin])]))
        ids = [int(kp[j])] + [c for c in chosen if c != kp[j]]
        out[j, :len(ids)] = ids[:n_per_line]
    return out
