"""Changes of frame between y-up model space and y-down image space (``docs/CONVENTIONS.md``).

The reflection ``F = diag(1, -1, 1)`` between the two is written here and nowhere else.

* **model**: BFM units, x = subject's left, y up, +z toward the camera.
* **image**: pixels, x right, y down, +z toward the camera (larger z = nearer); orthographic.

A ``Pose_Para`` pose ``(pitch, yaw, roll, tx, ty, tz, s)`` places a model vertex ``v`` at
``p = s·R·v + t`` and then flips ``y ← H − y`` (H = image height), i.e.
``image = F·(s·R·v + t) + (0, H, 0)``. The linear part ``F·s·R`` has det < 0; :func:`model_to_image_rotation`
and :func:`image_to_model_rotation` convert between a proper rotation ``R`` and that reflected matrix.
"""
from __future__ import annotations

import numpy as np

from dsfnet.geometry.euler import pose_para_to_matrix

#: The diagonal of the y-flip ``F`` (for code that applies it as a per-axis scale, e.g. on tensors).
FLIP_Y_DIAG = (1.0, -1.0, 1.0)
#: The y-flip between y-up model space and y-down image space.
FLIP_Y = np.diag(FLIP_Y_DIAG)


def flip_y_points(points, height: float) -> np.ndarray:
    """Points between image pixels (y down) and the y-up frame of a ``Pose_Para`` pose: ``y ← H − y``.

    Args:
        points: ``(..., 2 | 3)`` rows (x, y[, z]), float.
        height: image height ``H`` in pixels.
    Returns:
        A float64 copy with ``y`` replaced by ``H − y`` (x and z unchanged); the map is its own inverse.

    >>> flip_y_points(np.array([[1.0, 2.0, 3.0]]), 10).tolist()
    [[1.0, 8.0, 3.0]]
    """
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 1] = height - out[..., 1]
    return out


def flip_y_rows(matrix) -> np.ndarray:
    """``F · M`` for a ``(..., 3, K)`` matrix (e.g. the linear part of a model → image affine): its y row negated,
    a float64 copy. ``F`` is its own inverse."""
    out = np.array(matrix, dtype=np.float64, copy=True)
    out[..., 1, :] *= -1
    return out


def model_to_image_rotation(rotation: np.ndarray) -> np.ndarray:
    """Proper rotation ``R`` (model → y-up camera) to the reflected matrix ``F @ R`` acting model → image.

    Args:
        rotation: ``(*, 3, 3)`` proper rotation.
    Returns:
        ``(*, 3, 3)`` matrix with det −1, applied to model points as ``points @ M.T``.
    """
    return FLIP_Y @ np.asarray(rotation, dtype=np.float64)


def image_to_model_rotation(reflected: np.ndarray) -> np.ndarray:
    """Inverse of :func:`model_to_image_rotation`: ``F @ M`` (``F`` is its own inverse), a proper rotation."""
    return FLIP_Y @ np.asarray(reflected, dtype=np.float64)


def model_to_image(vertices: np.ndarray, rotation: np.ndarray, scale: float, translation, height: float) -> np.ndarray:
    """Pose model-space vertices into image pixels.

    Args:
        vertices: ``(N, 3)`` model units, y up.
        rotation: ``(3, 3)`` proper rotation ``R`` (``Pose_Para`` convention).
        scale: ``s``, pixels per model unit.
        translation: ``(3,)`` ``t`` in the y-up frame before the flip (``Pose_Para[3:6]``).
        height: image height ``H`` in pixels.
    Returns:
        ``(N, 3)`` float64 image coordinates: x right, y down, z toward the camera (pixels).

    >>> model_to_image(np.array([[0.0, 1.0, 0.0]]), np.eye(3), 2.0, [0, 0, 0], 10).tolist()
    [[0.0, 8.0, 0.0]]
    """
    v = np.asarray(vertices, dtype=np.float64)
    posed = scale * v @ np.asarray(rotation, dtype=np.float64).T + np.asarray(translation, dtype=np.float64)
    out = posed @ FLIP_Y  # FLIP_Y is symmetric: the same as @ FLIP_Y.T
    out[:, 1] += height
    return out


def pose_para_to_image(vertices: np.ndarray, pose_para, height: float) -> np.ndarray:
    """Model vertices ``(N, 3)`` to image pixels ``(N, 3)`` with a 7-vector ``Pose_Para`` (radians)."""
    p = np.asarray(pose_para, dtype=np.float64).reshape(-1)
    if p.shape[0] != 7:
        raise ValueError(f"Pose_Para must have 7 values [pitch, yaw, roll, tx, ty, tz, s], got {p.shape[0]}")
    rot = pose_para_to_matrix(p[0], p[1], p[2])
    return model_to_image(vertices, rot, p[6], p[3:6], height)
