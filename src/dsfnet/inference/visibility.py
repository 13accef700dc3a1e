"""Landmark and vertex visibility, as two separate causes and their product (``docs/CONVENTIONS.md``, Visibility).

* **Self-occlusion** (:func:`zbuffer_visibility`): the decoded mesh hides the point from the camera. A point is
  self-visible when, somewhere within :data:`SELF_RADIUS` × S of its pixel, it is not behind the mesh's front surface
  by more than a depth tolerance (orthographic camera along −z; crop px; pixels off the mesh count as open). The
  neighbourhood matters on the outline: the 3D jaw landmarks of a frontal face sit on the mandible just below the
  cheek's front surface (10–40 crop px behind it at their own pixel, measured on real photos), yet they are the
  face's silhouette and are seen; the far cheek contour of a profile is buried deep inside the face and stays hidden.
* **External occlusion** (:func:`external_visibility`): something in front of the face (a mask, a hand, hair). It is
  the network's visible-face probability ``seg`` (image-space head, ``(S, S)`` in [0, 1]) read at the point, taken as
  the largest value within ``radius`` crop px of it: a point on the face's outline (the jaw) sits where ``seg`` falls
  from face to background, and its own pixel says little; an occluded point has no visible face anywhere near it.
  The jaw landmarks (0–16) are the face's outline itself, where the map falls to background from a few pixels inside
  it: each is read :data:`JAW_INSET` × S further in, toward the inner points' centre
  (:func:`landmark_external_visibility`). The value is the probability itself (0.5 the decision threshold): the
  radius and the inset were chosen on held-out identities (``scripts/tune_visibility.py``, ``docs/training.md``).
* ``visibility = self_visibility × external_visibility``; a point is reported visible when it is ≥ 0.5.

Everything here works in crop pixels (x right, y down, z toward the camera; pixel centres at integers).
"""
from __future__ import annotations

import cv2
import numpy as np

from dsfnet.geometry.landmarks import JAW

__all__ = ["EXTERNAL_RADIUS", "JAW_INSET", "SELF_RADIUS", "external_visibility", "inset_jaw",
           "landmark_external_visibility", "open_depth", "sample_bilinear", "zbuffer_visibility", "zbuffer_visibility_of"]

#: neighbourhood radius of :func:`external_visibility`, as a fraction of the crop side S
EXTERNAL_RADIUS = 0.015
#: how far inside the outline the jaw landmarks' external visibility is read, as a fraction of the crop side S
JAW_INSET = 0.04
#: neighbourhood radius of the self-occlusion test (:func:`zbuffer_visibility_of`), as a fraction of the crop side S
SELF_RADIUS = 0.03


def sample_bilinear(channel: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample an ``(H, W)`` map at ``(K, 2)`` pixel positions (x, y), clamped to the border."""
    h, w = channel.shape
    x = np.clip(xy[:, 0], 0, w - 1)
    y = np.clip(xy[:, 1], 0, h - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    top = channel[y0, x0] * (1 - fx) + channel[y0, x1] * fx
    bot = channel[y1, x0] * (1 - fx) + channel[y1, x1] * fx
    return top * (1 - fy) + bot * fy


def open_depth(raster, radius: float = 0.0) -> np.ndarray:
    """The raster's front depth ``(H, W)`` float32 with pixels off the mesh at −inf, replaced by its smallest value
    within ``radius`` px (a disc) when ``radius`` > 0: the nearest way past the surface in front."""
    d = np.where(np.asarray(raster.face_id) >= 0, np.asarray(raster.depth), -np.inf).astype(np.float32)
    r = max(0, int(round(radius)))
    if r == 0:
        return d
    return cv2.erode(d, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)),
                     borderType=cv2.BORDER_CONSTANT, borderValue=-np.inf)


def zbuffer_visibility_of(raster, points_crop: np.ndarray, tolerance: float, radius: float = 0.0,
                          depth: np.ndarray | None = None) -> np.ndarray:
    """Self-visibility of ``(K, 3)`` crop-px points against an existing raster of the mesh (``raster.depth``,
    ``raster.face_id`` of :func:`dsfnet.render.rasterize`): ``(K,)`` float64 in {0, 1}. A point is hidden when, at
    every pixel within ``radius`` of its own, the front surface is more than ``tolerance`` nearer the camera; points
    outside the raster count as visible. ``depth``: ``open_depth(raster, radius)`` when already computed."""
    d = open_depth(raster, radius) if depth is None else depth
    h, w = d.shape
    pts = np.asarray(points_crop, dtype=np.float64)
    ij = np.round(pts[:, :2]).astype(np.int64)
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
    vis = np.ones(len(pts))
    front = d[ij[inside, 1], ij[inside, 0]]
    vis[inside] = np.where(pts[inside, 2] < front - tolerance, 0.0, 1.0)
    return vis


def zbuffer_visibility(vertices_crop: np.ndarray, triangles: np.ndarray, points_crop: np.ndarray, size: int,
                       tolerance: float, radius: float = 0.0) -> np.ndarray:
    """1.0 where a point is not behind the mesh's front surface, else 0.0 (self-occlusion).

    Args:
        vertices_crop: ``(N, 3)`` crop px (z toward the camera). triangles: ``(T, 3)``.
        points_crop: ``(K, 3)`` crop px. size: crop side S. tolerance: allowed depth gap, crop px.
        radius: neighbourhood radius, crop px (:func:`zbuffer_visibility_of`; 0 = the point's own pixel).
    Returns:
        ``(K,)`` float64 in {0, 1}; points outside the crop or off the mesh count as visible.
    """
    from dsfnet.render import rasterize

    return zbuffer_visibility_of(rasterize(vertices_crop, triangles, size, size), points_crop, tolerance, radius)


def dilate_seg(seg: np.ndarray, radius: float) -> np.ndarray:
    """``seg`` ``(S, S)`` with every pixel replaced by the largest value within ``radius`` px (a disc)."""
    r = max(0, int(round(radius)))
    s = np.asarray(seg, dtype=np.float32)
    if r == 0:
        return s
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(s, kernel)


def external_visibility(seg: np.ndarray, points_crop: np.ndarray, radius: float | None = None,
                        dilated: np.ndarray | None = None) -> np.ndarray:
    """External (not self-) visibility of ``(K, 2+)`` crop-px points from the network's ``seg`` ``(S, S)``.

    Args:
        seg: visible-face probability in [0, 1].
        points_crop: crop px (x, y first).
        radius: neighbourhood radius in crop px (default :data:`EXTERNAL_RADIUS` × S).
        dilated: ``dilate_seg(seg, radius)`` when already computed (mesh vertices and landmarks share it).
    Returns:
        ``(K,)`` float64 in [0, 1]; ≥ 0.5 = seen.
    """
    s = np.asarray(seg, dtype=np.float32)
    if dilated is None:
        dilated = dilate_seg(s, EXTERNAL_RADIUS * s.shape[0] if radius is None else radius)
    return np.clip(sample_bilinear(dilated, np.asarray(points_crop, dtype=np.float64)[:, :2]), 0.0, 1.0)


def inset_jaw(landmarks_crop: np.ndarray, distance: float) -> np.ndarray:
    """``(68, 2)`` copy of ``landmarks_crop`` (crop px) with the jaw points 0–16 moved ``distance`` px toward the
    centre of the inner points 17–67 (at most all the way to it)."""
    p = np.asarray(landmarks_crop, dtype=np.float64)[:, :2].copy()
    c = p[17:].mean(0)
    d = c - p[JAW]
    n = np.linalg.norm(d, axis=1, keepdims=True)
    p[JAW] += d * np.minimum(1.0, distance / np.maximum(n, 1e-9))
    return p


def landmark_external_visibility(seg: np.ndarray, landmarks_crop: np.ndarray, dilated: np.ndarray | None = None,
                                 inset: float | None = None) -> np.ndarray:
    """:func:`external_visibility` of the 68 landmarks ``(68, 2+)`` crop px, the jaw read ``inset`` px inside the
    outline (default :data:`JAW_INSET` × S; :func:`inset_jaw`)."""
    s = np.asarray(seg, dtype=np.float32)
    pts = inset_jaw(landmarks_crop, JAW_INSET * s.shape[0] if inset is None else inset)
    return external_visibility(s, pts, dilated=dilated)
