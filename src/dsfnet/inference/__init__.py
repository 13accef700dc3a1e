"""Inference: the public :class:`FaceAligner` API, result type, network runners, video tracking and overlays."""
from __future__ import annotations

from dsfnet.inference.aligner import FaceAligner, decode_face, zbuffer_visibility
from dsfnet.inference.face import Face, pose_dict
from dsfnet.inference.runner import (
    BACKENDS,
    NetworkRunner,
    OnnxRunner,
    TorchRunner,
    WeightsNotFoundError,
    resolve_weights,
)
from dsfnet.inference.smoothing import OneEuroFilter
from dsfnet.inference.tracking import FaceTracker

__all__ = [
    "BACKENDS",
    "Face",
    "FaceAligner",
    "FaceTracker",
    "NetworkRunner",
    "OneEuroFilter",
    "OnnxRunner",
    "TorchRunner",
    "WeightsNotFoundError",
    "decode_face",
    "pose_dict",
    "resolve_weights",
    "zbuffer_visibility",
]
