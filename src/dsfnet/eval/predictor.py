"""The evaluation predictor protocol (:class:`Predictor`, defined here) and the predictors evaluation ships with.

A predictor turns an image plus a face location into a :class:`Prediction` in image pixels. It applies its
**own** crop rule: from 68 ground-truth landmarks (the AFLW2000-3D protocol) or from a detector/user box.

* :class:`GroundTruthPredictor` returns the annotation itself (every metric must be exactly 0: a check of
  the pipeline).
* :class:`TeacherPredictor` runs 3DDFA_V2 (:mod:`dsfnet.teacher`).
* Our network is plugged in by :func:`create_dsfnet_predictor` (:class:`AlignerPredictor` over :mod:`dsfnet.inference`, imported lazily).

Optional hook: a predictor may define ``set_ground_truth(sample)``; the runner calls it with the current
:class:`~dsfnet.eval.aflw2000.Sample` before predicting (only the GT predictor needs it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class Prediction:
    """One face.

    Attributes:
        landmarks: ``(68, 3)`` image px, x right, y down, z toward the camera.
        rotation: ``(3, 3)`` proper rotation, ``Pose_Para`` convention, or ``None``.
        vertices: ``(N, 3)`` image px in the face model's vertex order (dense mesh), or ``None``.
    """

    landmarks: np.ndarray
    rotation: np.ndarray | None = None
    vertices: np.ndarray | None = None

    def __post_init__(self) -> None:
        lm = np.asarray(self.landmarks, dtype=np.float64)
        if lm.shape != (68, 3):
            raise ValueError(f"Prediction.landmarks must be (68, 3) image pixels, got {lm.shape}")
        self.landmarks = lm
        if self.rotation is not None:
            r = np.asarray(self.rotation, dtype=np.float64)
            if r.shape != (3, 3):
                raise ValueError(f"Prediction.rotation must be (3, 3), got {r.shape}")
            self.rotation = r
        if self.vertices is not None:
            v = np.asarray(self.vertices)
            if v.ndim != 2 or v.shape[1] != 3:
                raise ValueError(f"Prediction.vertices must be (N, 3), got {v.shape}")


@runtime_checkable
class Predictor(Protocol):
    """What :mod:`dsfnet.eval` runs."""

    name: str

    def predict_from_landmarks(self, image_rgb: np.ndarray, landmarks_2d: np.ndarray) -> Prediction:
        """Predict with the predictor's own crop rule applied to ``(68, 2)`` GT landmarks (image px)."""
        ...



def _check_inputs(image_rgb: np.ndarray, landmarks_2d: np.ndarray | None = None) -> None:
    img = np.asarray(image_rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got shape {img.shape}, dtype {img.dtype}")
    if landmarks_2d is not None:
        lm = np.asarray(landmarks_2d)
        if lm.ndim != 2 or lm.shape[0] != 68 or lm.shape[1] < 2:
            raise ValueError(f"expected (68, 2) landmarks, got shape {lm.shape}")


class GroundTruthPredictor:
    """Returns the current sample's ground truth (landmarks, ``Pose_Para`` rotation, dense GT mesh).

    Needs ``set_ground_truth(sample)`` before each prediction (the runner does it).
    """

    name = "gt"

    def __init__(self) -> None:
        self._sample = None

    def set_ground_truth(self, sample) -> None:
        """Remember ``sample`` (a :class:`~dsfnet.eval.aflw2000.Sample`)."""
        self._sample = sample

    def _prediction(self) -> Prediction:
        s = self._sample
        if s is None:
            raise RuntimeError("GroundTruthPredictor: call set_ground_truth(sample) before predicting")
        return Prediction(landmarks=s.landmarks.copy(), rotation=s.rotation.copy(),
                          vertices=None if s.vertices is None else s.vertices.copy())

    def predict_from_landmarks(self, image_rgb: np.ndarray, landmarks_2d: np.ndarray) -> Prediction:
        _check_inputs(image_rgb, landmarks_2d)
        return self._prediction()



class TeacherPredictor:
    """3DDFA_V2 MobileNetV1-0.5 as a :class:`Predictor` (its own crop rules, see :mod:`dsfnet.teacher.roi`).

    Args:
        teacher: a :class:`dsfnet.teacher.Teacher`.
        dense: also return the dense mesh (53k vertices; needed for the dense metrics).
    """

    name = "teacher"

    def __init__(self, teacher, dense: bool = True) -> None:
        self.teacher = teacher
        self.dense = dense

    @classmethod
    def from_dir(cls, teacher_dir: str | Path, face_model, device: str = "cpu", dense: bool = True) -> "TeacherPredictor":
        """Load from a teacher folder (:func:`dsfnet.teacher.load_teacher`)."""
        from dsfnet.teacher import load_teacher

        return cls(load_teacher(face_model, teacher_dir, device=device), dense=dense)

    def _wrap(self, out) -> Prediction:
        return Prediction(landmarks=out.landmarks, rotation=out.rotation,
                          vertices=out.vertices if self.dense else None)

    def predict_from_landmarks(self, image_rgb: np.ndarray, landmarks_2d: np.ndarray) -> Prediction:
        from dsfnet.teacher.roi import roi_from_landmarks

        _check_inputs(image_rgb, landmarks_2d)
        return self._wrap(self.teacher.predict(image_rgb, roi_from_landmarks(np.asarray(landmarks_2d)[:, :2])))



class AlignerPredictor:
    """Our network, through the public :class:`dsfnet.inference.FaceAligner`, as a :class:`Predictor`.

    Landmark and vertex z are relative to the nose tip (image px); every metric removes z offsets anyway.

    Args:
        aligner: a ``FaceAligner`` (its detector is not run; crops come from the evaluation's landmarks).
    """

    name = "dsfnet"

    def __init__(self, aligner) -> None:
        self.aligner = aligner

    @staticmethod
    def _wrap(face) -> Prediction:
        return Prediction(landmarks=face.landmarks_3d, rotation=face.rotation, vertices=face.vertices)

    def predict_from_landmarks(self, image_rgb: np.ndarray, landmarks_2d: np.ndarray) -> Prediction:
        """Crop by our landmark rule (``crop.box_from_landmarks``) from ``(68, 2)`` image px."""
        _check_inputs(image_rgb, landmarks_2d)
        return self._wrap(self.aligner.predict_from_landmarks(image_rgb, np.asarray(landmarks_2d)[:, :2]))



def create_dsfnet_predictor(weights: str | Path | None, config: str = "lite", device: str = "cpu",
                            backend: str = "torch") -> Predictor:
    """Our network as a :class:`Predictor` (raises ``WeightsNotFoundError`` when there are no weights)."""
    from dsfnet.inference import FaceAligner

    return AlignerPredictor(FaceAligner(device=device, config=config, weights=weights, backend=backend))
