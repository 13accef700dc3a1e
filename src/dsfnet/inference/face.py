"""The per-face result type of the public API and its JSON form."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Face", "pose_dict"]


def _finite_list(a: np.ndarray, ndigits: int) -> list:
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError("refusing to serialise NaN/inf in a face result")
    return np.round(a, ndigits).tolist()


def pose_dict(rotation: np.ndarray) -> dict[str, Any]:
    """``{"yaw", "pitch", "roll"}`` in **degrees** (``Pose_Para`` convention) plus ``"rotation"`` (3x3 list)."""
    from dsfnet.geometry import matrix_to_pose_para

    r = np.asarray(rotation, dtype=np.float64)
    pitch, yaw, roll = np.degrees(matrix_to_pose_para(r))
    return {"yaw": float(yaw), "pitch": float(pitch), "roll": float(roll), "rotation": r}


@dataclass
class Face:
    """One aligned face. Frames and units follow ``docs/CONVENTIONS.md``.

    Attributes:
        bbox: ``(4,)`` ``[x0, y0, x1, y1]`` image px: the detector's (or the given) box.
        score: detector confidence in [0, 1] (1.0 for given boxes, the track's last detection score in videos).
        landmarks_2d: ``(68, 2)`` image px (x right, y down), iBUG 300-W order.
        landmarks_3d: ``(68, 3)`` image px; z toward the camera, **relative to the nose tip** (landmark 30 has
            z = 0; the rest of the face is mostly negative), scaled like x and y.
        visibility: ``(68,)`` in [0, 1]: ``self_visibility × external_visibility``; ≥ 0.5 = the point is seen.
        pose: ``{"yaw", "pitch", "roll"}`` degrees (``Pose_Para`` convention: ``R = Rx(pitch) Ry(yaw) Rz(roll)``)
            and ``"rotation"``: the proper ``(3, 3)`` ``R`` acting on y-up model points.
        vertices: ``(N, 3)`` dense mesh in image px, same z convention as ``landmarks_3d``, face-model vertex order.
            May be given as a zero-argument function: it is then computed on first access (``FaceAligner`` does
            this, so a face costs its 53k vertices only when they are used).
        triangles: ``(T, 3)`` int vertex indices of ``vertices``.
        crop_box: ``(4,)`` the square crop the network saw, image px.
        self_visibility: ``(68,)`` {0, 1}: 0 = hidden by the face itself (behind the decoded mesh, e.g. the far
            cheek of a profile); the jawline of a frontal face is 1.
        external_visibility: ``(68,)`` in [0, 1]: the network's probability that nothing (mask, hand, hair,
            object) covers the point; 1 when the network gives no visible-face map.
        vertex_visibility: ``(N,)`` float32 in [0, 1], the same product for every mesh vertex (None if not computed;
            a function is evaluated on first access, like ``vertices``).
        (Definitions: ``docs/CONVENTIONS.md``, Visibility; :mod:`dsfnet.inference.visibility`.)
    """

    bbox: np.ndarray
    score: float
    landmarks_2d: np.ndarray
    landmarks_3d: np.ndarray
    visibility: np.ndarray
    pose: dict[str, Any]
    vertices: np.ndarray
    triangles: np.ndarray
    crop_box: np.ndarray = field(default_factory=lambda: np.zeros(4))
    self_visibility: np.ndarray | None = None
    external_visibility: np.ndarray | None = None
    vertex_visibility: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(np.asarray(self.visibility))
        if self.self_visibility is None:
            self.self_visibility = np.ones(n)
        if self.external_visibility is None:
            self.external_visibility = np.asarray(self.visibility, dtype=np.float64).copy()

    @property
    def rotation(self) -> np.ndarray:
        """The proper ``(3, 3)`` rotation (``pose["rotation"]``)."""
        return np.asarray(self.pose["rotation"], dtype=np.float64)

    def to_dict(self, mesh: str | None = None, ndigits: int = 3) -> dict[str, Any]:
        """JSON-ready dict (the ``faces[]`` entry of ``results.jsonl``); ``mesh`` is the mesh file name or None.

        Keys: ``bbox, score, landmarks_2d (68x[x,y]), landmarks_3d (68x[x,y,z]), visibility (68),
        self_visibility (68), external_visibility (68), pose {yaw, pitch, roll, rotation (3x[3])}, mesh``.
        Numbers rounded to ``ndigits`` (rotation to 6 digits).
        """
        return {
            "bbox": _finite_list(self.bbox, ndigits),
            "score": round(float(self.score), 4),
            "landmarks_2d": _finite_list(self.landmarks_2d, ndigits),
            "landmarks_3d": _finite_list(self.landmarks_3d, ndigits),
            "visibility": _finite_list(self.visibility, 3),
            "self_visibility": _finite_list(self.self_visibility, 3),
            "external_visibility": _finite_list(self.external_visibility, 3),
            "pose": {
                "yaw": round(float(self.pose["yaw"]), 3),
                "pitch": round(float(self.pose["pitch"]), 3),
                "roll": round(float(self.pose["roll"]), 3),
                "rotation": _finite_list(self.rotation, 6),
            },
            "mesh": mesh,
        }


def _lazy_field(name: str) -> property:
    """A dataclass field whose value may be a zero-argument function, called once on first access."""
    key = "_" + name

    def get(self):
        value = self.__dict__.get(key)
        if callable(value):
            value = value()
            self.__dict__[key] = value
        return value

    def set(self, value) -> None:
        self.__dict__[key] = value

    return property(get, set, doc=f"``{name}`` (computed on first access when given as a function)")


def stored_field(face: Face, name: str):
    """What ``face`` holds for the lazy field ``name`` (``"vertices"`` or ``"vertex_visibility"``): the value, or the
    function that will compute it (so a copy of the face can stay lazy)."""
    return face.__dict__.get("_" + name)


Face.vertices = _lazy_field("vertices")
Face.vertex_visibility = _lazy_field("vertex_visibility")
