"""Helpers to exercise :class:`~dsfnet.inference.FaceAligner` without trained weights (tests only).

:func:`toy_aligner` wires the synthetic face model (:func:`testing.face_model.toy_face_model`), its
UV layout, the real ``UVCodec`` and a :class:`StaticRunner` returning the position
map of a known posed face, so every stage after the network (crop, decode, back-projection, visibility,
pose) runs for real and can be checked against exact numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsfnet.geometry import model_to_image, pose_para_to_matrix
from testing.face_model import toy_face

__all__ = ["StaticRunner", "ToyFace", "posed_toy_face", "toy_aligner"]


class StaticRunner:
    """A runner (``dsfnet.inference.runner.NetworkRunner``) that returns the same known outputs for every crop.

    Args:
        face_uvm: ``(3, U, U)`` position map (pm units, crop frame, nose-relative z).
        rotation: ``(3, 3)`` proper rotation.
        input_size: crop side S it pretends to take.
        seg: optional ``(S, S)`` visible-face probability.
    """

    def __init__(self, face_uvm: np.ndarray, rotation: np.ndarray, input_size: int, seg: np.ndarray | None = None) -> None:
        self.face_uvm = np.asarray(face_uvm, dtype=np.float32)
        if self.face_uvm.ndim != 3 or self.face_uvm.shape[0] != 3 or self.face_uvm.shape[1] != self.face_uvm.shape[2]:
            raise ValueError(f"face_uvm must be (3, U, U), got {self.face_uvm.shape}")
        self.rotation = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        self.input_size = int(input_size)
        self.uv_size = int(self.face_uvm.shape[-1])
        self.seg = None if seg is None else np.asarray(seg, dtype=np.float32).reshape(1, self.input_size, self.input_size)
        self.calls = 0
        self.last_crops: np.ndarray | None = None

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        c = np.asarray(crops)
        s = self.input_size
        if c.ndim != 4 or c.shape[1:] != (s, s, 3) or c.dtype != np.uint8:
            raise ValueError(f"runner expects (B, {s}, {s}, 3) uint8 RGB crops, got {c.shape} {c.dtype}")
        self.calls += 1
        self.last_crops = c
        b = len(c)
        out = {"face_uvm": np.repeat(self.face_uvm[None], b, 0), "rotation": np.repeat(self.rotation[None], b, 0)}
        if self.seg is not None:
            out["seg"] = np.repeat(self.seg[None], b, 0)
        return out


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

    fm, layout = toy_face(uv_size)
    rot = pose_para_to_matrix(*np.radians([pitch, yaw, roll]))
    mean = np.asarray(fm.mean, dtype=np.float64)
    scale = width_fraction * crop_size / float(np.ptp(mean[:, 0]))
    centre = (mean.max(0) + mean.min(0)) / 2
    t = np.array([crop_size / 2, crop_size / 2, 0.0]) - scale * (rot @ centre)
    verts = model_to_image(mean, rot, scale, t, float(crop_size))
    return ToyFace(verts, rot, fm, UVCodec(layout, crop_size))


def toy_aligner(detector="none", crop_size: int = 64, uv_size: int = 32, pitch: float = 0.0, yaw: float = 20.0,
                roll: float = 0.0, seg: np.ndarray | None = None, passes: int = 1):
    """A :class:`FaceAligner` whose network always returns the posed toy face; returns ``(aligner, ToyFace)``.

    One alignment pass by default: the static network returns the same crop-frame face whatever the crop, so the
    exact-number tests are written for the box's crop."""
    from dsfnet.inference.aligner import FaceAligner

    toy = posed_toy_face(crop_size, uv_size, pitch, yaw, roll)
    runner = StaticRunner(toy.codec.encode(toy.vertices_crop), toy.rotation, crop_size, seg=seg)
    aligner = FaceAligner(detector=None if detector == "none" else detector, runner=runner, codec=toy.codec,
                          triangles=toy.face_model.triangles, passes=passes)
    return aligner, toy
