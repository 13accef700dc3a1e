"""The detector contract: RGB image in, boxes sorted by score out, plus a box-to-crop calibration.

Every detector returns a (possibly empty) ``list[Detection]``, best score first, boxes clipped to the image
(``0 <= x0 < x1 <= W``, ``0 <= y0 < y1 <= H``, image pixels, x right, y down) and declares a
:class:`dsfnet.crop.BoxCalibration` saying how its boxes relate to our landmark-box crop rule, so the crop
code never branches on which detector produced a box.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from dsfnet.crop import BoxCalibration

__all__ = ["Detection", "FaceDetector", "check_rgb_image"]


@dataclass(frozen=True)
class Detection:
    """One face box.

    Attributes:
        box: ``(4,)`` float64 ``[x0, y0, x1, y1]`` image pixels (continuous coordinates, pixel centres at integers).
        score: confidence in [0, 1] (1.0 for user-given boxes).
        keypoints5: ``(5, 2)`` float64 image pixels (right eye, left eye, nose, right and left mouth corner, as
            the detector orders them) or ``None``.
    """

    box: np.ndarray
    score: float
    keypoints5: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        b = np.asarray(self.box, dtype=np.float64).reshape(-1)
        if b.shape != (4,) or not np.isfinite(b).all():
            raise ValueError(f"Detection.box must be 4 finite numbers [x0, y0, x1, y1], got {self.box!r}")
        object.__setattr__(self, "box", b)
        object.__setattr__(self, "score", float(self.score))
        if self.keypoints5 is not None:
            k = np.asarray(self.keypoints5, dtype=np.float64).reshape(5, 2)
            object.__setattr__(self, "keypoints5", k)


def check_rgb_image(image: np.ndarray) -> np.ndarray:
    """Validate an ``(H, W, 3)`` uint8 RGB image (the detectors' input), returning it C-contiguous."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(
            f"detectors take an (H, W, 3) uint8 RGB image (use dsfnet.io.read_image), got {img.shape} {img.dtype}"
        )
    return np.ascontiguousarray(img)


def clip_box(box: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """Clip ``[x0, y0, x1, y1]`` to the image ``[0, W] x [0, H]``; ``None`` if less than a pixel remains."""
    b = np.asarray(box, dtype=np.float64).copy()
    b[[0, 2]] = np.clip(b[[0, 2]], 0.0, float(width))
    b[[1, 3]] = np.clip(b[[1, 3]], 0.0, float(height))
    if b[2] - b[0] < 1.0 or b[3] - b[1] < 1.0:
        return None
    return b


class FaceDetector(ABC):
    """Base class: subclasses implement :meth:`_detect`; :meth:`detect` validates, clips and sorts."""

    #: registry name
    name: ClassVar[str] = ""
    #: how this detector's boxes map to our crop (see :func:`dsfnet.crop.box_from_detection`)
    calibration: BoxCalibration = BoxCalibration()

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in an ``(H, W, 3)`` uint8 RGB image, best score first (stable for equal scores).

        Returns:
            a possibly empty list; boxes clipped to the image, boxes with less than 1 px left dropped.
        """
        img = check_rgb_image(image_rgb)
        h, w = img.shape[:2]
        out = []
        for d in self._detect(img):
            b = clip_box(d.box, w, h)
            if b is not None:
                out.append(Detection(b, d.score, d.keypoints5))
        return sorted(out, key=lambda d: -d.score)

    @abstractmethod
    def _detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Raw detections (any order, possibly outside the image)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(calibration={self.calibration})"
