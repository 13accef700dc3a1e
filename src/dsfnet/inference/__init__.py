"""Inference: the public :class:`FaceAligner` API, result type, network runners, video tracking and overlays."""
from __future__ import annotations

from dsfnet.inference.aligner import FaceAligner, decode_face, zbuffer_visibility
from dsfnet.inference.face import Face, pose_dict
from dsfnet.inference.onnx import OnnxRunner
from dsfnet.inference.runner import NetworkRunner, TorchRunner
from dsfnet.inference.smoothing import OneEuroFilter
from dsfnet.inference.tracking import FaceTracker
from dsfnet.model.weights import BACKENDS, WeightsNotFoundError  # re-exported: what FaceAligner(weights=...) raises

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
    "zbuffer_visibility",
]
