"""Pure geometry: the one home of sign, order and unit conventions (see ``docs/CONVENTIONS.md``).

Matrix convention: point sets are rows ``(..., N, 3)`` and a rotation ``R`` acts on them as
``points @ R.T`` (the same as ``R @ p`` for a column vector ``p``). Every transpose elsewhere says why.

This package imports nothing else from dsfnet.
"""
from __future__ import annotations

from dsfnet.geometry.euler import matrix_to_pose_para, pose_para_to_matrix
from dsfnet.geometry.frames import (
    FLIP_Y,
    image_to_model_rotation,
    model_to_image,
    model_to_image_rotation,
    pose_para_to_image,
)
from dsfnet.geometry.morphable import decode_vertices, decode_vertices_torch
from dsfnet.geometry.similarity import Similarity, apply_similarity, procrustes_rotation, weighted_umeyama

__all__ = [
    "FLIP_Y",
    "Similarity",
    "apply_similarity",
    "decode_vertices",
    "decode_vertices_torch",
    "image_to_model_rotation",
    "matrix_to_pose_para",
    "model_to_image",
    "model_to_image_rotation",
    "pose_para_to_image",
    "pose_para_to_matrix",
    "procrustes_rotation",
    "weighted_umeyama",
]
