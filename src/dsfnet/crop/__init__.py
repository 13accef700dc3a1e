"""Face crops: box → square crop → network input, and the transform back to image pixels.

The one crop used by training data, evaluation and inference. Conventions (``docs/CONVENTIONS.md``):
image and crop pixels have x right, y down, pixel centres at integer coordinates (OpenCV). A crop is
described by a 2×3 similarity ``A`` mapping image pixels to crop pixels (``crop = A @ [x, y, 1]``);
depth ``z`` is scaled by the same factor ``k = sqrt(|det A[:, :2]|)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: the crop side is this factor times the mean of the landmark box's width and height (the landmark-box crop of
#: SADRNet, PRNet and DSFNet, for training and the AFLW2000-3D evaluation; ``docs/CONVENTIONS.md``, "Crops")
LANDMARK_BOX_SCALE = 1.5


@dataclass(frozen=True)
class BoxCalibration:
    """How a detector's boxes relate to our landmark-box crops.

    The crop is the square of side ``side_scale · (w + h)/2`` centred at the box centre moved by
    ``(center_shift_x, center_shift_y) · (w + h)/2`` (y down). Each detector declares its own.
    """

    side_scale: float = LANDMARK_BOX_SCALE
    center_shift_x: float = 0.0
    center_shift_y: float = 0.0


def square_box(center_x: float, center_y: float, side: float) -> np.ndarray:
    """``[x0, y0, x1, y1]`` float64 of the square of ``side`` pixels centred at ``(center_x, center_y)``."""
    if not np.isfinite([center_x, center_y, side]).all() or side <= 0:
        raise ValueError(f"invalid square box: centre ({center_x}, {center_y}), side {side}")
    h = side / 2.0
    return np.array([center_x - h, center_y - h, center_x + h, center_y + h], dtype=np.float64)


def box_from_landmarks(points: np.ndarray, scale: float = LANDMARK_BOX_SCALE) -> np.ndarray:
    """Square crop box from landmarks: centre of their bounding box, side ``scale·(w+h)/2``
    (``docs/CONVENTIONS.md``, "Crops").

    Args:
        points: ``(N, 2+)`` image pixels (x, y first).
    Returns:
        ``(4,)`` ``[x0, y0, x1, y1]``.
    >>> box_from_landmarks(np.array([[0.0, 0.0], [10.0, 20.0]])).tolist()
    [-6.25, -1.25, 16.25, 21.25]
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or len(p) < 2:
        raise ValueError(f"landmarks must be (N>=2, 2 or 3), got shape {p.shape}")
    lo, hi = p[:, :2].min(0), p[:, :2].max(0)
    c = (lo + hi) / 2
    return square_box(c[0], c[1], scale * ((hi - lo).sum() / 2))


def box_from_detection(box, calibration: BoxCalibration = BoxCalibration()) -> np.ndarray:
    """Square crop box from a detector box ``[l, t, r, b]`` using the detector's :class:`BoxCalibration`."""
    l, t, r, b = (float(v) for v in box)
    if not (r > l and b > t):
        raise ValueError(f"detector box must have r > l and b > t, got {list(box)}")
    s = ((r - l) + (b - t)) / 2
    cx = (l + r) / 2 + calibration.center_shift_x * s
    cy = (t + b) / 2 + calibration.center_shift_y * s
    return square_box(cx, cy, calibration.side_scale * s)


def crop_matrix(box, size: int) -> np.ndarray:
    """2×3 affine mapping image pixels into the ``size×size`` crop of the square ``box``.

    Box coordinates are continuous (pixel centres at integers, so pixel ``j`` spans ``[j − 0.5, j + 0.5]``).
    Crop pixel ``i`` spans image ``[x0 + i/k, x0 + (i+1)/k]``, so its centre ``x' = i`` sits at
    ``x0 + (i + 0.5)/k``: ``x' = k·(x − x0) − 0.5`` with ``k = size/(x1 − x0)``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = x1 - x0
    if side <= 0 or abs((y1 - y0) - side) > 1e-6 * max(1.0, side):
        raise ValueError(f"crop box must be a non-empty square, got {list(box)}")
    k = size / side
    return np.array([[k, 0.0, -k * x0 - 0.5], [0.0, k, -k * y0 - 0.5]], dtype=np.float64)


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int, border_value: int | tuple = 0) -> np.ndarray:
    """Cut the crop: bilinear warp of ``image`` (H×W or H×W×C) by ``matrix``; outside pixels are ``border_value``."""
    return cv2.warpAffine(
        image,
        np.asarray(matrix, dtype=np.float64),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )


def matrix_scale(matrix: np.ndarray) -> float:
    """The similarity's isotropic scale ``k = sqrt(|det A[:, :2]|)`` (used for z)."""
    m = np.asarray(matrix, dtype=np.float64)
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 similarity to ``(..., N, 2)`` or ``(..., N, 3)`` points; z (if present) is scaled by k."""
    p = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    out = p.copy()
    out[..., :2] = p[..., :2] @ m[:, :2].T + m[:, 2]
    if p.shape[-1] == 3:
        out[..., 2] = p[..., 2] * matrix_scale(m)
    return out


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2×3 affine (crop → image)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
