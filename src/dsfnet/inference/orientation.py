"""Photos taken sideways or upside down: find the orientation in which the faces are upright, and map the faces
found in a rotated copy back to the photo.

Why: the detector finds rotated faces (with a lower score) and the network, trained on upright crops, returns
confident-looking garbage for them; but its visible-face probability tells: on upright faces the mean external
visibility of the 68 points is ~0.94, on the same face turned by 90° or 180° it falls to 0.05–0.75 (measured on
``wild/insightface_samples/inspireface/bulk/r*.jpg``). :func:`orientation_score` is the detection score times that
mean; ``FaceAligner`` tries the copies rotated by 90°, 180° and 270° when the photo's best face scores below
:data:`UPRIGHT_SCORE` (or none is found) and switches to the orientation whose best face scores highest, if that
face reaches :data:`UPRIGHT_SCORE` itself (a masked upright face scores low in every orientation and stays upright).

Frames: ``numpy.rot90(image, k)`` turns the photo counter-clockwise by ``k``·90° as displayed. A point ``(x, y)`` of
the rotated copy (image px, y down) comes from the photo's point given by :func:`unrotate_points`. In the y-up
camera frame a counter-clockwise turn on screen is a rotation by +k·90° about z, so a face's rotation in the photo is
``Rz(−k·90°) · R_rotated``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from dsfnet.inference.face import Face, pose_dict, stored_field

__all__ = ["UPRIGHT_SCORE", "orientation_score", "rotate_face_back", "unrotate_points"]

#: below this :func:`orientation_score` of the best face, the other orientations are tried
UPRIGHT_SCORE = 0.8


def orientation_score(face: Face) -> float:
    """Detection score × mean external visibility of the 68 landmarks (high for an upright, well-aligned face)."""
    return float(face.score) * float(np.mean(face.external_visibility))


def unrotate_points(points: np.ndarray, k: int, height: int, width: int) -> np.ndarray:
    """``(N, 2+)`` points of ``numpy.rot90(photo, k)`` (image px) → the same points in the ``height × width`` photo
    (extra columns, e.g. z, unchanged).

    >>> unrotate_points(np.array([[0.0, 0.0]]), 1, 3, 5).tolist()  # rot90 puts the photo's top-right corner at (0, 0)
    [[4.0, 0.0]]
    """
    p = np.array(points, dtype=np.float64, copy=True)
    x, y = p[:, 0].copy(), p[:, 1].copy()
    k %= 4
    if k == 1:
        p[:, 0], p[:, 1] = width - 1 - y, x
    elif k == 2:
        p[:, 0], p[:, 1] = width - 1 - x, height - 1 - y
    elif k == 3:
        p[:, 0], p[:, 1] = y, height - 1 - x
    return p


def _box_back(box: np.ndarray, k: int, height: int, width: int) -> np.ndarray:
    b = np.asarray(box, dtype=np.float64)
    corners = unrotate_points(np.array([[b[0], b[1]], [b[2], b[3]]]), k, height, width)
    return np.concatenate([corners.min(0), corners.max(0)])


def rotate_face_back(face: Face, k: int, height: int, width: int) -> Face:
    """A face found in ``numpy.rot90(photo, k)``, expressed in the ``height × width`` photo: landmarks, mesh (still
    lazy), boxes and pose."""
    if k % 4 == 0:
        return face
    t = np.radians(-90.0 * k)
    rz = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    lmk = unrotate_points(face.landmarks_3d, k, height, width)
    turned = lambda: unrotate_points(face.vertices, k, height, width)  # noqa: E731
    vertices = turned if callable(stored_field(face, "vertices")) else turned()
    return dataclasses.replace(
        face, bbox=_box_back(face.bbox, k, height, width), crop_box=_box_back(face.crop_box, k, height, width),
        landmarks_2d=lmk[:, :2].copy(), landmarks_3d=lmk, pose=pose_dict(rz @ face.rotation), vertices=vertices,
        vertex_visibility=stored_field(face, "vertex_visibility"))
