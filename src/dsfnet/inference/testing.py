"""Helpers to exercise :class:`~dsfnet.inference.FaceAligner` without trained weights (tests, docs, CI).

:func:`toy_aligner` wires the tiny synthetic face model (``dsfnet.facemodel.synthetic.toy_face_model``), its
UV layout, the real ``UVCodec`` and a :class:`~dsfnet.inference.runner.StaticRunner` returning the position
map of a known posed face, so every stage after the network (crop, decode, back-projection, visibility,
pose) runs for real and can be checked against exact numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsfnet.geometry import model_to_image, pose_para_to_matrix
from dsfnet.inference.runner import StaticRunner

__all__ = ["ToyFace", "posed_toy_face", "toy_aligner"]


@dataclass(frozen=True)
class ToyFace:
    """A posed toy face. ``vertices_crop``: ``(N, 3)`` crop px (absolute z); ``rotation``: proper R."""

    vertices_crop: np.ndarray
    rotation: np.ndarray
    face_model: object
    codec: object


def posed_toy_face(crop_size: int = 64, uv_size: int = 32, pitch: float = 0.0, yaw: float = 20.0,
                   roll: float = 0.0, width_fraction: float = 0.55) -> ToyFace:
    """The toy model's mean face posed (angles in degrees) and centred in an ``S×S`` crop."""
    from dsfnet.decode import UVCodec
    from dsfnet.facemodel.synthetic import toy_face_model
    from dsfnet.facemodel.uv import get_uv_layout

    fm = toy_face_model()
    layout = get_uv_layout(fm, uv_size, disk_cache=False)
    rot = pose_para_to_matrix(*np.radians([pitch, yaw, roll]))
    mean = np.asarray(fm.mean, dtype=np.float64)
    scale = width_fraction * crop_size / float(np.ptp(mean[:, 0]))
    centre = (mean.max(0) + mean.min(0)) / 2
    t = np.array([crop_size / 2, crop_size / 2, 0.0]) - scale * (rot @ centre)
    verts = model_to_image(mean, rot, scale, t, float(crop_size))
    return ToyFace(verts, rot, fm, UVCodec(layout, crop_size))


def toy_aligner(detector="none", crop_size: int = 64, uv_size: int = 32, pitch: float = 0.0, yaw: float = 20.0,
                roll: float = 0.0, seg: np.ndarray | None = None):
    """A :class:`FaceAligner` whose network always returns the posed toy face; returns ``(aligner, ToyFace)``."""
    from dsfnet.inference.aligner import FaceAligner

    toy = posed_toy_face(crop_size, uv_size, pitch, yaw, roll)
    runner = StaticRunner(toy.codec.encode(toy.vertices_crop), toy.rotation, crop_size, seg=seg)
    aligner = FaceAligner(detector=None if detector == "none" else detector, runner=runner, codec=toy.codec,
                          triangles=toy.face_model.triangles)
    return aligner, toy
