""":class:`FaceAligner` as an evaluation predictor (``dsfnet.eval.predictor.Predictor`` protocol).

``dsfnet.eval`` imports :func:`create_eval_predictor` lazily; the eval types are imported lazily here too, so
the two packages do not import each other at module load.
"""
from __future__ import annotations

import os

import numpy as np

from dsfnet.crop import BoxCalibration
from dsfnet.inference.aligner import FaceAligner
from dsfnet.inference.face import Face

__all__ = ["AlignerPredictor", "create_eval_predictor"]


def _prediction(face: Face):
    from dsfnet.eval.predictor import Prediction

    return Prediction(landmarks=face.landmarks_3d, rotation=face.rotation, vertices=face.vertices)


class AlignerPredictor:
    """Evaluation predictor over a :class:`FaceAligner` (landmarks z are relative to the nose tip, image px).

    Args:
        aligner: the aligner (its detector is not run; boxes come from the evaluation).
        box_calibration: crop rule for :meth:`predict_from_box`; default the aligner's detector calibration
            (boxes like a face detector's), or the landmark-box rule without a detector.
    """

    name = "dsfnet"

    def __init__(self, aligner: FaceAligner, box_calibration: BoxCalibration | None = None) -> None:
        self.aligner = aligner
        self.box_calibration = box_calibration

    def predict_from_landmarks(self, image_rgb: np.ndarray, landmarks_2d: np.ndarray):
        """Crop by our landmark rule (``crop.box_from_landmarks``, scale 1.5) from ``(68, 2)`` image px."""
        return _prediction(self.aligner.predict_from_landmarks(image_rgb, np.asarray(landmarks_2d)[:, :2]))

    def predict_from_box(self, image_rgb: np.ndarray, box):
        """Crop from a ``[l, t, r, b]`` box (image px) through ``box_calibration``."""
        faces = self.aligner.predict(image_rgb, boxes=[box], box_calibration=self.box_calibration)
        return _prediction(faces[0])


def create_eval_predictor(weights: str | os.PathLike | None = None, config: str = "lite", device: str = "cpu",
                          backend: str = "torch", box_calibration: BoxCalibration | None = None) -> AlignerPredictor:
    """Our network as an evaluation predictor (raises ``WeightsNotFoundError`` when there are no weights)."""
    aligner = FaceAligner(device=device, config=config, weights=weights, detector="yuface", backend=backend)
    return AlignerPredictor(aligner, box_calibration)
