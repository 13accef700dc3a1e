"""Face detectors behind one small contract (:class:`FaceDetector`) and a registry by name.

>>> sorted(list_detectors())
['boxes', 'yuface']
"""
from __future__ import annotations

from typing import Any

from dsfnet.detect.base import Detection, FaceDetector, check_rgb_image
from dsfnet.detect.boxes import BoxesDetector, load_boxes_file, parse_boxes
from dsfnet.detect.yuface_detector import YUFACE_CALIBRATION, YuFaceDetector

__all__ = [
    "DETECTORS",
    "YUFACE_CALIBRATION",
    "BoxesDetector",
    "Detection",
    "FaceDetector",
    "YuFaceDetector",
    "check_rgb_image",
    "create_detector",
    "list_detectors",
    "load_boxes_file",
    "parse_boxes",
]

#: name -> detector class
DETECTORS: dict[str, type[FaceDetector]] = {cls.name: cls for cls in (YuFaceDetector, BoxesDetector)}


def list_detectors() -> list[str]:
    """Registered detector names."""
    return sorted(DETECTORS)


def create_detector(name: str | FaceDetector, **kwargs: Any) -> FaceDetector:
    """A detector by registry name (an instance is passed through).

    Raises:
        ValueError: unknown name; the message lists the valid names.
    """
    if isinstance(name, FaceDetector):
        return name
    try:
        cls = DETECTORS[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; valid names: {', '.join(list_detectors())}") from None
    return cls(**kwargs)
