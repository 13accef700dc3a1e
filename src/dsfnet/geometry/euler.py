"""Euler angles in the 300W-LP / AFLW2000-3D ``Pose_Para`` convention.

Convention (``docs/CONVENTIONS.md``, "Pose")
-------------------------------------------
Angles are **radians** here (degrees only at the public API). ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)`` with::

    Rx(a) = [[1, 0, 0], [0, cos a, sin a], [0, -sin a, cos a]]
    Ry(b) = [[cos b, 0, -sin b], [0, 1, 0], [sin b, 0, cos b]]
    Rz(c) = [[cos c, sin c, 0], [-sin c, cos c, 0], [0, 0, 1]]

``R`` is a proper rotation (det +1) acting on y-up model points; the image is obtained afterwards by the
y-flip of :mod:`dsfnet.geometry.frames`. Inverse: ``pitch = atan2(R[1,2], R[2,2])``,
``yaw = asin(-R[0,2])`` in [-pi/2, pi/2], ``roll = atan2(R[0,1], R[0,0])``; pitch and roll in (-pi, pi].

Near gimbal lock (|yaw| = pi/2, ``R[1,2]`` and ``R[2,2]`` both ~0) pitch and roll are not separable: we
return ``roll = 0`` and put the whole in-plane angle into pitch, so the result is finite and reproduces R.
"""
from __future__ import annotations

import numpy as np

_GIMBAL_EPS = 1e-9


def pose_para_to_matrix(pitch, yaw, roll) -> np.ndarray:
    """Rotation matrix from ``Pose_Para`` angles.

    Args:
        pitch, yaw, roll: scalars or arrays of the same shape ``(*,)``, radians.
    Returns:
        ``(*, 3, 3)`` float64 proper rotation ``Rx(pitch) @ Ry(yaw) @ Rz(roll)``.

    >>> np.allclose(pose_para_to_matrix(0.0, 0.0, 0.0), np.eye(3))
    True
    """
    a, b, c = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (pitch, yaw, roll)))
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    one, zero = np.ones_like(a), np.zeros_like(a)
    rx = np.stack([one, zero, zero, zero, ca, sa, zero, -sa, ca], -1).reshape(a.shape + (3, 3))
    ry = np.stack([cb, zero, -sb, zero, one, zero, sb, zero, cb], -1).reshape(a.shape + (3, 3))
    rz = np.stack([cc, sc, zero, -sc, cc, zero, zero, zero, one], -1).reshape(a.shape + (3, 3))
    return rx @ ry @ rz


def matrix_to_pose_para(rotation: np.ndarray) -> np.ndarray:
    """``Pose_Para`` angles from a proper rotation.

    Args:
        rotation: ``(*, 3, 3)`` proper rotation (det +1), as returned by :func:`pose_para_to_matrix`.
    Returns:
        ``(*, 3)`` float64 ``[pitch, yaw, roll]`` in radians; see the module docstring for ranges and gimbal lock.

    >>> np.round(matrix_to_pose_para(pose_para_to_matrix(0.1, -0.2, 0.3)), 6).tolist()
    [0.1, -0.2, 0.3]
    """
    r = np.asarray(rotation, dtype=np.float64)
    if r.shape[-2:] != (3, 3):
        raise ValueError(f"expected a (..., 3, 3) rotation, got shape {r.shape}")
    yaw = np.arcsin(np.clip(-r[..., 0, 2], -1.0, 1.0))
    locked = np.hypot(r[..., 1, 2], r[..., 2, 2]) < _GIMBAL_EPS
    pitch = np.arctan2(r[..., 1, 2], r[..., 2, 2])
    roll = np.arctan2(r[..., 0, 1], r[..., 0, 0])
    # At |yaw| = pi/2 (sin yaw = -R[0,2] = +-1) and roll = 0: R[1,0] = sin(pitch)*sin(yaw), R[1,1] = cos(pitch).
    locked_pitch = np.arctan2(r[..., 1, 0] * np.sign(-r[..., 0, 2]), r[..., 1, 1])
    pitch = np.where(locked, locked_pitch, pitch)
    roll = np.where(locked, 0.0, roll)
    return np.stack([pitch, yaw, roll], axis=-1)
