"""Overlays drawn with OpenCV on ``(H, W, 3)`` uint8 **RGB** images (image pixels: x right, y down).

All functions return a new image and leave the input untouched. Colours are RGB tuples. Sub-pixel
positions are drawn with OpenCV's fixed-point ``shift`` so points sit where they belong at any scale.
A shaded mesh needs the rasteriser (``dsfnet.render``) and lives in ``dsfnet.inference.visualize``;
this module only blends the rendered layer (:func:`blend_layer`).
"""
from __future__ import annotations

import cv2
import numpy as np

from dsfnet.geometry import model_to_image_rotation

__all__ = [
    "blend_layer",
    "draw_box",
    "draw_landmarks",
    "draw_points",
    "draw_pose_axes",
    "draw_wireframe",
]

_SHIFT = 4  # fixed-point bits for sub-pixel drawing
_ONE = 1 << _SHIFT

VISIBLE_COLOR = (40, 220, 60)
HIDDEN_COLOR = (255, 70, 40)  # hidden by something in front of the face (external occlusion)
SELF_HIDDEN_COLOR = (90, 150, 255)  # hidden by the face itself (self-occlusion)
BOX_COLOR = (255, 200, 0)


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    return np.ascontiguousarray(img).copy()


def _fixed(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * _ONE)), int(round(float(p[1]) * _ONE))


def _auto_size(image: np.ndarray, points: np.ndarray | None = None) -> float:
    """A drawing scale in pixels: ~1/100 of the face (or image) size, at least 1."""
    if points is not None and len(points):
        span = float(np.ptp(points[:, 0]) + np.ptp(points[:, 1])) / 2
    else:
        span = float(min(image.shape[:2])) / 2
    return max(1.0, span / 60.0)


def draw_landmarks(
    image: np.ndarray,
    landmarks: np.ndarray,
    visibility: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    radius: float | None = None,
    self_visibility: np.ndarray | None = None,
    visible_color=VISIBLE_COLOR,
    hidden_color=HIDDEN_COLOR,
    self_hidden_color=SELF_HIDDEN_COLOR,
) -> np.ndarray:
    """Landmarks as dots: visible ones filled, hidden ones (visibility < ``threshold``) as hollow circles.

    Args:
        landmarks: ``(K, 2+)`` image pixels (x, y first).
        visibility: optional ``(K,)`` in [0, 1]; all visible when omitted.
        self_visibility: optional ``(K,)``: hidden points whose self-visibility is also < ``threshold`` (behind the
            face itself) are drawn in ``self_hidden_color``, the others (covered by an occluder) in ``hidden_color``.
    """
    img = _check_image(image)
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"landmarks must be (K, 2 or 3), got shape {pts.shape}")
    vis = np.ones(len(pts)) if visibility is None else np.asarray(visibility, dtype=np.float64).reshape(-1)
    if len(vis) != len(pts):
        raise ValueError(f"visibility has {len(vis)} values for {len(pts)} landmarks")
    own = np.ones(len(pts)) if self_visibility is None else np.asarray(self_visibility, dtype=np.float64).reshape(-1)
    if len(own) != len(pts):
        raise ValueError(f"self_visibility has {len(own)} values for {len(pts)} landmarks")
    r = radius if radius is not None else _auto_size(img, pts[:, :2])
    ri = max(1, int(round(r * _ONE)))
    for p, v, o in zip(pts[:, :2], vis, own):
        if not np.isfinite(p).all():
            continue
        if v >= threshold:
            cv2.circle(img, _fixed(p), ri, visible_color, -1, cv2.LINE_AA, _SHIFT)
        else:
            colour = self_hidden_color if o < threshold else hidden_color
            cv2.circle(img, _fixed(p), ri, colour, max(1, int(round(r / 2))), cv2.LINE_AA, _SHIFT)
    return img


def draw_points(image: np.ndarray, points: np.ndarray, *, color=(230, 230, 255), alpha: float = 0.5, step: int = 1) -> np.ndarray:
    """A light point cloud: every ``step``-th point of ``(N, 2+)`` image pixels, blended with ``alpha``."""
    img = _check_image(image)
    p = np.asarray(points, dtype=np.float64)[::max(1, int(step)), :2]
    p = p[np.isfinite(p).all(1)]
    ij = np.round(p).astype(np.int64)
    h, w = img.shape[:2]
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
    ij = ij[ok]
    layer = img.astype(np.float32)
    layer[ij[:, 1], ij[:, 0]] = (1 - alpha) * layer[ij[:, 1], ij[:, 0]] + alpha * np.asarray(color, np.float32)
    return np.round(layer).astype(np.uint8)


def draw_wireframe(
    image: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, *, color=(200, 200, 255), alpha: float = 0.6, thickness: int = 1
) -> np.ndarray:
    """Mesh edges ``(T, 3)`` over ``(N, 2+)`` vertices in image pixels, blended with ``alpha``."""
    img = _check_image(image)
    v = np.asarray(vertices, dtype=np.float64)[:, :2]
    t = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    edges = np.unique(np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1), axis=0)
    edges = edges[np.isfinite(v[edges]).all(axis=(1, 2))]
    lines = np.round(v[edges] * _ONE).astype(np.int32)  # (E, 2, 2)
    overlay = img.copy()
    cv2.polylines(overlay, list(lines), False, color, thickness, cv2.LINE_AA, _SHIFT)
    return cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0)


def blend_layer(image: np.ndarray, layer_rgb: np.ndarray, mask: np.ndarray, *, alpha: float = 0.6) -> np.ndarray:
    """Blend an ``(H, W, 3)`` rendered layer over ``image`` where ``mask (H, W)`` is true."""
    img = _check_image(image)
    layer = np.asarray(layer_rgb, dtype=np.float32)
    m = np.asarray(mask, dtype=bool)
    if layer.shape != img.shape or m.shape != img.shape[:2]:
        raise ValueError(f"layer {layer.shape} and mask {m.shape} must match the image {img.shape}")
    out = img.astype(np.float32)
    out[m] = (1 - alpha) * out[m] + alpha * np.clip(layer[m], 0, 255)
    return np.round(out).astype(np.uint8)


def draw_pose_axes(image: np.ndarray, rotation: np.ndarray, origin, *, length: float | None = None, thickness: int = 2) -> np.ndarray:
    """The head's axes at ``origin`` (e.g. the nose tip, image pixels): x red, y green, z blue.

    ``rotation`` is the proper ``Pose_Para`` rotation ``R`` (y-up model frame, ``docs/CONVENTIONS.md``);
    the axis directions in the image are the columns of ``F @ R`` (x: subject's left, y: up, z: toward
    the camera), drawn from their x, y parts so a frontal face shows x right and y up.
    """
    img = _check_image(image)
    m = model_to_image_rotation(np.asarray(rotation, dtype=np.float64))
    o = np.asarray(origin, dtype=np.float64)[:2]
    if not np.isfinite(o).all() or not np.isfinite(m).all():
        return img
    size = length if length is not None else max(10.0, min(img.shape[:2]) / 8)
    for axis, col in ((2, (60, 90, 255)), (1, (40, 220, 60)), (0, (255, 50, 50))):  # z first: drawn under
        tip = o + size * m[:2, axis]
        cv2.arrowedLine(img, _fixed(o), _fixed(tip), col, thickness, cv2.LINE_AA, _SHIFT, 0.15)
    return img


def draw_box(image: np.ndarray, box, score: float | None = None, *, color=BOX_COLOR, thickness: int = 2) -> np.ndarray:
    """A box ``[x0, y0, x1, y1]`` (image pixels) with its score written above it."""
    img = _check_image(image)
    x0, y0, x1, y1 = (float(v) for v in box)
    cv2.rectangle(img, _fixed((x0, y0)), _fixed((x1, y1)), color, thickness, cv2.LINE_AA, _SHIFT)
    if score is not None:
        scale = max(0.4, (x1 - x0) / 250)
        org = (int(round(x0)), max(12, int(round(y0)) - 4))
        cv2.putText(img, f"{score:.2f}", org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, max(1, thickness - 1), cv2.LINE_AA)
    return img
