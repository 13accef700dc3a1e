"""YuNet face detector from the ``yuface`` wheel (libfacedetection compiled with its weights; works offline).

``yuface.detect(bgr_uint8, conf)`` returns ``(confs (N,) int16 0..100, boxes (N, 4) int16 XYWH,
landmarks (N, 10) int16 x, y pairs)`` in the pixels of the image it was given. Large images are slow and
detect worse (the wheel warns above 960 px), so images whose longer side exceeds ``max_side`` are
downscaled (``cv2.INTER_AREA``) before detection and the boxes scaled back.

``yuface.detect`` leaks ~37 KB per call inside its C code; calls go through one process-wide
:class:`~dsfnet.detect.recycling.RecyclingCaller`, so a long stream runs them in a worker process that is
replaced every 2,000 calls after the first 1,000 (~37 MB) (``benchmarks/detector_soak.py`` measures it).
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np

from dsfnet.crop import BoxCalibration
from dsfnet.detect.base import Detection, FaceDetector
from dsfnet.detect.recycling import RecyclingCaller

__all__ = ["YUFACE_CALIBRATION", "YuFaceDetector"]

#: Box-to-crop calibration of yuface boxes (max_side 800), fitted by ``benchmarks/fit_detector_calibration.py``
#: on ytf68 frames with 68 landmarks (NOT the AFLW2000-3D dev images): the 3,462 training faces for the fit,
#: the 770 annotated test faces held out; each face's best-IoU detection (4,232 of 4,232 matched).
#: Target crop: ``crop.box_from_landmarks(pts68, 1.5)``; with the detection's side s = (w + h)/2 the constants
#: are the medians of (target side / s) and (target centre − box centre) / s (x right, y down).
#: Held-out test: mean IoU with the landmark crop 0.897 (0.724 with the uncalibrated 1.5/0/0), median centre
#: error 2.7% of the crop side (12.2% uncalibrated), median side ratio 0.996 (1.099), IQR of the ratio 0.065.
#: ytf68 landmarks follow the 2-D (visible contour) convention; on near-frontal faces it matches the 3-D one.
YUFACE_CALIBRATION = BoxCalibration(side_scale=1.359, center_shift_x=0.013, center_shift_y=0.162)


def quiet_detect(bgr: np.ndarray, conf_threshold: float):
    """``yuface.detect`` without its size warning (the caller chose the size)."""
    import yuface

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return yuface.detect(bgr, conf_threshold)


#: every yuface call in this process goes through here (the leak is per process, so is the policy)
DETECT_CALLER = RecyclingCaller(__name__, "quiet_detect", in_process_calls=1000, calls_per_worker=2000)


class YuFaceDetector(FaceDetector):
    """YuNet (``yuface``) face detector.

    Args:
        conf_threshold: minimum confidence in [0, 1] (the wheel reports 0..100; we divide by 100).
        max_side: images whose longer side exceeds this many pixels are downscaled before detection.
    """

    name = "yuface"
    calibration = YUFACE_CALIBRATION

    def __init__(self, conf_threshold: float = 0.5, max_side: int = 800) -> None:
        if not 0.0 <= conf_threshold <= 1.0:
            raise ValueError(f"conf_threshold must be in [0, 1], got {conf_threshold}")
        if max_side < 64:
            raise ValueError(f"max_side must be at least 64 px, got {max_side}")
        try:
            import yuface  # noqa: F401
        except ImportError as exc:  # pragma: no cover - a dependency
            raise ImportError("the 'yuface' detector needs the PyPI package yuface: pip install yuface") from exc
        self.conf_threshold = float(conf_threshold)
        self.max_side = int(max_side)

    def _detect(self, image_rgb: np.ndarray) -> list[Detection]:
        h, w = image_rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        img = image_rgb
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            img = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
            sx, sy = size[0] / w, size[1] / h
        else:
            sx = sy = 1.0
        bgr = np.ascontiguousarray(img[:, :, ::-1])  # yuface takes OpenCV's B, G, R order
        confs, boxes, kps = DETECT_CALLER(bgr, self.conf_threshold)
        out = []
        for c, b, k in zip(np.asarray(confs), np.asarray(boxes, dtype=np.float64), np.asarray(kps, dtype=np.float64)):
            x, y, bw, bh = b
            if bw <= 0 or bh <= 0:
                continue
            box = np.array([x, y, x + bw, y + bh])
            pts = k.reshape(5, 2)
            # back to the original pixels; pixel centres at integers in both images
            box[[0, 2]] = (box[[0, 2]] + 0.5) / sx - 0.5
            box[[1, 3]] = (box[[1, 3]] + 0.5) / sy - 0.5
            pts = (pts + 0.5) / np.array([sx, sy]) - 0.5
            out.append(Detection(box, min(1.0, float(c) / 100.0), pts))
        return out
