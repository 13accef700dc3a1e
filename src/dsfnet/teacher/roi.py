"""The teacher's crop rules (3DDFA_V2's) and its input crop.

* From 68 landmarks: the square of side ``√2·max(w, h)`` around their box centre (:func:`roi_from_landmarks`).
* From a FaceBoxes-style detector box ``[l, t, r, b]``: side ``int(1.58·s)`` around the box centre moved down by
  ``0.14·s``, ``s = (w + h)/2`` (:func:`roi_from_detection`).
* From one of our detector boxes with its :class:`~dsfnet.crop.BoxCalibration`: our crop widened to the
  landmark-crop size (:func:`roi_from_calibrated_detection`).

The roi corners are rounded to integers for cutting, outside is black, bilinear resize to 120×120, BGR
(:func:`cut_roi`). Mapping back to the image uses the unrounded roi (:mod:`dsfnet.teacher.convert`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dsfnet.teacher.constants import TEACHER_SIZE


def roi_from_landmarks(points: np.ndarray) -> np.ndarray:
    """3DDFA_V2's crop from landmarks: square of side ``sqrt(2)·max(w, h)`` centred on the points' box.

    Args:
        points: ``(N, 2+)`` image pixels (x, y first).
    Returns:
        ``(4,)`` float64 ``[x0, y0, x1, y1]`` (not rounded).

    >>> roi_from_landmarks(np.array([[0.0, 0.0], [10.0, 20.0]])).round(3).tolist()
    [-9.142, -4.142, 19.142, 24.142]
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or len(p) < 2 or not np.isfinite(p[:, :2]).all():
        raise ValueError(f"landmarks must be finite (N>=2, 2 or 3) image pixels, got shape {p.shape}")
    lo, hi = p[:, :2].min(0), p[:, :2].max(0)
    c = (lo + hi) / 2
    half = math.sqrt(2.0) * float((hi - lo).max()) / 2
    if half <= 0:
        raise ValueError("landmarks span an empty box")
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def roi_from_detection(box: Sequence[float]) -> np.ndarray:
    """3DDFA_V2's crop from a detector box ``[l, t, r, b]``: side ``int(1.58·s)``, centre moved down ``0.14·s``."""
    l, t, r, b = (float(v) for v in list(box)[:4])
    if not (r > l and b > t):
        raise ValueError(f"detector box must have r > l and b > t, got {list(box)}")
    s = ((r - l) + (b - t)) / 2
    cx, cy = (l + r) / 2, (t + b) / 2 + 0.14 * s
    side = float(int(s * 1.58))
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def roi_from_calibrated_detection(box, calibration=None) -> np.ndarray:
    """The teacher's first-pass crop ``[x0, y0, x1, y1]`` from a detector box ``[l, t, r, b]``.

    With the detector's ``calibration`` (:class:`dsfnet.crop.BoxCalibration`, which maps its boxes to our crop of
    side 1.5 × the landmark box): that crop, widened by √2/1.5 around its centre to the size of the teacher's
    landmark crop (√2 × the landmark box, :func:`roi_from_landmarks`). Without one: 3DDFA_V2's rule for FaceBoxes
    boxes (:func:`roi_from_detection`).
    """
    if calibration is None:
        return roi_from_detection(box)
    from dsfnet.crop import LANDMARK_BOX_SCALE, box_from_detection, square_box

    c = box_from_detection(np.asarray(box, dtype=np.float64)[:4], calibration)
    side = (c[2] - c[0]) * np.sqrt(2.0) / LANDMARK_BOX_SCALE
    return square_box((c[0] + c[2]) / 2, (c[1] + c[3]) / 2, side)


def jitter_roi(roi_box: Sequence[float], scale: float, dx: float, dy: float) -> np.ndarray:
    """``roi_box`` ``[x0, y0, x1, y1]`` scaled about its centre by ``scale`` and moved by ``(dx, dy)`` × its side.

    >>> jitter_roi([0, 0, 100, 100], 1.1, 0.1, -0.05).round(3).tolist()
    [5.0, -10.0, 115.0, 100.0]
    """
    b = np.asarray(roi_box, dtype=np.float64)[:4]
    c, side = (b[:2] + b[2:]) / 2, float(b[2] - b[0])
    c = c + np.array([dx, dy]) * side
    half = side * scale / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def cut_roi(image_rgb: np.ndarray, roi_box: Sequence[float]) -> np.ndarray:
    """The teacher's input crop: ``(120, 120, 3)`` uint8 **BGR** (corners rounded, black outside, bilinear)."""
    import cv2

    img = check_image(image_rgb)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(round(float(v))) for v in list(roi_box)[:4])
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"roi box must have x1 > x0 and y1 > y0, got {list(roi_box)}")
    out = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    sx, sy, ex, ey = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ex > sx and ey > sy:
        out[sy - y0:ey - y0, sx - x0:ex - x0] = img[sy:ey, sx:ex, ::-1]  # RGB -> BGR here, the teacher's order
    return cv2.resize(out, (TEACHER_SIZE, TEACHER_SIZE), interpolation=cv2.INTER_LINEAR)


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as an array, checked to be ``H×W×3`` uint8 RGB (ValueError otherwise)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got shape {img.shape}, dtype {img.dtype}")
    return img
