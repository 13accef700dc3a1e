"""The 3DDFA_V2 teacher as a predictor in our conventions: :class:`Teacher` (image + roi → :class:`TeacherOutput`).

Input conventions (converted here): the crop in **BGR** channel order (:func:`~dsfnet.teacher.roi.cut_roi`),
``(x − 127.5) / 128``, 120×120. Outputs are converted by :mod:`dsfnet.teacher.convert`. The teacher's own
landmarks / vertices (``TeacherOutput.landmarks``, ``.vertices``) use the full 3×4 ``P``; the difference to the
``Pose_Para`` form is well under a pixel.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from dsfnet.geometry import decode_vertices
from dsfnet.teacher.constants import N_PARAMS, TEACHER_SIZE
from dsfnet.teacher.convert import affine_to_pose_para, params_to_image_affine
from dsfnet.teacher.files import load_param_stats, teacher_files
from dsfnet.teacher.roi import check_image, cut_roi


@dataclass
class TeacherOutput:
    """The teacher's prediction for one face, in our conventions.

    Attributes:
        pose_para: ``(7,)`` ``[pitch, yaw, roll (rad), tx, ty, tz (px), s]``: ``pose_para_to_image(V, pose_para, H)``
            with ``V`` decoded from ``shape``/``exp`` reproduces :attr:`vertices` (up to the non-rigid part of P).
        shape: ``(Ks,)`` raw identity coefficients (40).
        exp: ``(Ke,)`` raw expression coefficients (10).
        landmarks: ``(68, 3)`` image pixels (x right, y down, z toward the camera), from the full affine.
        roi_box: ``(4,)`` the crop used ``[x0, y0, x1, y1]`` (unrounded).
        affine: ``(3, 4)`` model units → image pixels (y down): ``image = v @ affine[:, :3].T + affine[:, 3]``.
        params: ``(62,)`` the de-normalised teacher parameters (its own crop frame).
    """

    pose_para: np.ndarray
    shape: np.ndarray
    exp: np.ndarray
    landmarks: np.ndarray
    roi_box: np.ndarray
    affine: np.ndarray
    params: np.ndarray
    _face_model: object = field(repr=False, default=None)
    _vertices: np.ndarray | None = field(repr=False, default=None)

    @property
    def rotation(self) -> np.ndarray:
        """``(3, 3)`` proper rotation in the ``Pose_Para`` convention."""
        from dsfnet.geometry import pose_para_to_matrix

        return pose_para_to_matrix(*self.pose_para[:3])

    @property
    def vertices(self) -> np.ndarray:
        """``(N, 3)`` dense mesh in image pixels, face-model vertex order (decoded on first access)."""
        if self._vertices is None:
            fm = self._face_model
            v = decode_vertices(fm.mean, fm.shape_basis, fm.exp_basis, self.shape, self.exp).astype(np.float64)
            self._vertices = v @ self.affine[:, :3].T + self.affine[:, 3]
        return self._vertices


class Teacher:
    """3DDFA_V2 MobileNetV1-0.5 wrapped in our conventions.

    Args:
        weights_path: ``mb05_120x120.pth`` (given by the user; never shipped).
        param_stats_path: ``param_mean_std_62d_120x120.pkl``.
        face_model: our ``FaceModel`` with at least 40 shape / 10 expression components (the same bases).
        device: torch device (default CPU).
    """

    def __init__(self, weights_path: str | Path, param_stats_path: str | Path, face_model,
                 device: str = "cpu") -> None:
        from dsfnet.teacher.network import load_teacher_network  # torch: imported when a teacher is built

        self.device = device
        self.net = load_teacher_network(weights_path, device)
        self.param_mean, self.param_std = load_param_stats(param_stats_path)
        ks, ke = face_model.shape_basis.shape[2], face_model.exp_basis.shape[2]
        if ks != 40 or ke != 10:
            raise ValueError(f"the teacher predicts 40 shape / 10 expression coefficients; the face model has {ks}/{ke}")
        self.face_model = face_model
        kp = np.asarray(face_model.keypoints)
        self._kp = (face_model.mean[kp].astype(np.float64), face_model.shape_basis[kp].astype(np.float64),
                    face_model.exp_basis[kp].astype(np.float64))
        # centroid of the decoded mesh is linear in the coefficients; the spread is taken from the mean shape
        mean = np.asarray(face_model.mean, dtype=np.float64)
        self._centroid = (mean.mean(0), face_model.shape_basis.mean(0, dtype=np.float64),
                          face_model.exp_basis.mean(0, dtype=np.float64))
        centred = mean - mean.mean(0)
        self._covariance = centred.T @ centred / len(centred)

    # -- low level ---------------------------------------------------------------------------------
    def run_crops(self, crops_bgr: np.ndarray) -> np.ndarray:
        """``(B, 120, 120, 3)`` uint8 BGR crops → ``(B, 62)`` de-normalised parameters (crop frame)."""
        import torch

        c = np.asarray(crops_bgr)
        if c.ndim == 3:
            c = c[None]
        if c.ndim != 4 or c.shape[1:] != (TEACHER_SIZE, TEACHER_SIZE, 3) or c.dtype != np.uint8:
            raise ValueError(f"expected (B, 120, 120, 3) uint8 BGR crops, got shape {c.shape}, dtype {c.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(c.transpose(0, 3, 1, 2))).to(self.device, torch.float32)
        x = (x - 127.5) / 128.0
        with torch.inference_mode():
            out = self.net(x).double().cpu().numpy()
        return out * self.param_std + self.param_mean

    def convert(self, params: np.ndarray, roi_box: Sequence[float], height: float) -> TeacherOutput:
        """One de-normalised parameter vector ``(62,)`` + its roi → :class:`TeacherOutput` (image of height H)."""
        p = np.asarray(params, dtype=np.float64).reshape(-1)
        if p.shape != (N_PARAMS,):
            raise ValueError(f"expected {N_PARAMS} parameters, got {p.shape}")
        affine = params_to_image_affine(p, roi_box)
        shape, exp = p[12:52].copy(), p[52:62].copy()
        mean, sb, eb = self._kp
        lm_model = mean + sb @ shape + eb @ exp
        landmarks = lm_model @ affine[:, :3].T + affine[:, 3]
        c0, cs, ce = self._centroid
        pose = affine_to_pose_para(affine, height, c0 + cs @ shape + ce @ exp, self._covariance)
        return TeacherOutput(pose_para=pose, shape=shape, exp=exp,
                             landmarks=landmarks, roi_box=np.asarray(roi_box, dtype=np.float64)[:4].copy(),
                             affine=affine, params=p, _face_model=self.face_model)

    # -- public --------------------------------------------------------------------------------------
    def predict(self, image_rgb: np.ndarray, roi_box: Sequence[float]) -> TeacherOutput:
        """Predict one face.

        Args:
            image_rgb: ``H×W×3`` uint8 RGB.
            roi_box: the teacher's crop ``[x0, y0, x1, y1]`` (a rule of :mod:`dsfnet.teacher.roi`).
        """
        img = check_image(image_rgb)
        params = self.run_crops(cut_roi(img, roi_box))[0]
        return self.convert(params, roi_box, img.shape[0])

    def predict_batch(self, images_rgb: Sequence[np.ndarray], roi_boxes: Sequence[Sequence[float]],
                      batch_size: int = 64) -> list[TeacherOutput]:
        """Predict many faces (pseudo-labelling): one roi per image; network calls in chunks of ``batch_size``."""
        if len(images_rgb) != len(roi_boxes):
            raise ValueError(f"got {len(images_rgb)} images but {len(roi_boxes)} roi boxes")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        outputs: list[TeacherOutput] = []
        for start in range(0, len(images_rgb), batch_size):
            imgs = [check_image(im) for im in images_rgb[start:start + batch_size]]
            boxes = roi_boxes[start:start + batch_size]
            params = self.run_crops(np.stack([cut_roi(im, b) for im, b in zip(imgs, boxes)]))
            outputs.extend(self.convert(p, b, im.shape[0]) for p, b, im in zip(params, boxes, imgs))
        return outputs


def load_teacher(face_model, teacher_dir: str | os.PathLike, device: str = "cpu") -> Teacher:
    """The :class:`Teacher` in ``teacher_dir`` (FileNotFoundError naming a missing file)."""
    weights, stats = teacher_files(teacher_dir)
    return Teacher(weights, stats, face_model, device=device)
