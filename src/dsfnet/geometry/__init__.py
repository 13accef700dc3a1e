"""Pure geometry: the one home of sign, order and unit conventions (see ``docs/CONVENTIONS.md``).

Matrix convention: point sets are rows ``(..., N, 3)`` and a rotation ``R`` acts on them as
``points @ R.T`` (the same as ``R @ p`` for a column vector ``p``). Every transpose elsewhere says why.

Owners: :mod:`~dsfnet.geometry.euler` (``Pose_Para`` angles), :mod:`~dsfnet.geometry.frames` (the y-flip between
model and image space), :mod:`~dsfnet.geometry.posmap` (UV map units, nose-relative depth),
:mod:`~dsfnet.geometry.rotation` (nearest rotation), :mod:`~dsfnet.geometry.boxes` (pixels of a box, coverage),
:mod:`~dsfnet.geometry.similarity` (weighted similarity fits, torch), :mod:`~dsfnet.geometry.morphable` (3DMM
decode). The torch-based names are imported on first use, so the NumPy ones stay cheap to import.

This package imports nothing else from dsfnet.
"""
from __future__ import annotations

from dsfnet._lazy import lazy_getattr
from dsfnet.geometry.euler import matrix_to_pose_para, pose_para_to_matrix
from dsfnet.geometry.frames import (
    FLIP_Y,
    FLIP_Y_DIAG,
    flip_y_points,
    flip_y_rows,
    image_to_model_rotation,
    model_to_image,
    model_to_image_rotation,
    pose_para_to_image,
)
from dsfnet.geometry.morphable import decode_vertices
from dsfnet.geometry.rotation import nearest_rotation

_LAZY = {
    "Similarity": "dsfnet.geometry.similarity",
    "apply_similarity": "dsfnet.geometry.similarity",
    "procrustes_rotation": "dsfnet.geometry.similarity",
    "weighted_umeyama": "dsfnet.geometry.similarity",
}

__all__ = [
    "FLIP_Y",
    "FLIP_Y_DIAG",
    "decode_vertices",
    "flip_y_points",
    "flip_y_rows",
    "image_to_model_rotation",
    "matrix_to_pose_para",
    "model_to_image",
    "model_to_image_rotation",
    "nearest_rotation",
    "pose_para_to_image",
    "pose_para_to_matrix",
    *_LAZY,
]


__getattr__ = lazy_getattr(__name__, _LAZY)
