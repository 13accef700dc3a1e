"""Overlay of aligned faces on an RGB image: shaded mesh (via ``dsfnet.render``), landmarks, pose axes, box."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from dsfnet.inference.face import Face
from dsfnet.io.draw import blend_layer, draw_box, draw_landmarks, draw_points, draw_pose_axes, draw_wireframe

__all__ = ["MESH_STYLES", "draw_faces", "shade_mesh"]

MESH_STYLES = ("shaded", "wireframe", "points", "none")


def shade_mesh(vertices: np.ndarray, triangles: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Render a mesh (image px) lit from the camera: ``(H, W, 3)`` float 0..255 layer and ``(H, W)`` mask.

    Lambertian shading with ``|n_z|`` of the per-vertex normals (winding independent).
    """
    from dsfnet.render import interpolate, rasterize, vertex_normals

    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    vn = vertex_normals(v, t)
    shade = 0.25 + 0.75 * np.abs(vn[:, 2:3])
    colors = shade * np.array([[200.0, 210.0, 235.0]])
    raster = rasterize(v, t, height, width)
    layer = interpolate(raster, t, colors)
    return layer, raster.mask


def draw_faces(image_rgb: np.ndarray, faces: Iterable[Face], *, mesh: str = "shaded", landmarks: bool = True,
               axes: bool = True, box: bool = True) -> np.ndarray:
    """Annotated copy of ``image_rgb`` (``(H, W, 3)`` uint8 RGB) with each face drawn.

    Args:
        mesh: ``"shaded"`` (z-buffered, needs ``dsfnet.render``; falls back to points if unavailable),
            ``"wireframe"``, ``"points"`` or ``"none"``.
    """
    if mesh not in MESH_STYLES:
        raise ValueError(f"unknown mesh style {mesh!r}; valid: {', '.join(MESH_STYLES)}")
    img = np.asarray(image_rgb)
    h, w = img.shape[:2]
    for f in faces:
        if mesh == "shaded":
            try:
                layer, mask = shade_mesh(f.vertices, f.triangles, h, w)
                img = blend_layer(img, layer, mask, alpha=0.55)
            except ImportError:  # pragma: no cover - render is part of the package
                img = draw_points(img, f.vertices, step=3)
        elif mesh == "wireframe":
            img = draw_wireframe(img, f.vertices, f.triangles, alpha=0.4)
        elif mesh == "points":
            img = draw_points(img, f.vertices, step=3)
        if box:
            img = draw_box(img, f.bbox, f.score)
        if landmarks:
            img = draw_landmarks(img, f.landmarks_2d, f.visibility, self_visibility=f.self_visibility)
        if axes:
            side = float(np.ptp(f.landmarks_2d[:, 0]) + np.ptp(f.landmarks_2d[:, 1])) / 2
            img = draw_pose_axes(img, f.rotation, f.landmarks_2d[30], length=max(10.0, 0.5 * side))
    return np.ascontiguousarray(img)
