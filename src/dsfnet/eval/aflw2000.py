"""A folder in AFLW2000-3D layout: ``NAME.jpg`` (or .png) + ``NAME.mat`` per image, optionally ``gt.npz``.

Ground truth per image (all image pixels: x right, y down, z toward the camera):

* **landmarks**: ``pt3d_68`` from the ``.mat`` (the 3DDFA / AFLW2000-3D 68-point protocol). A ``.mat``
  without it (e.g. 300W-LP) falls back to the 68 model landmarks reconstructed from the parameters
  (``Sample.landmark_source`` says which).
* **re-annotated landmarks** (optional): when the folder holds a ``gt.npz`` with ``names`` and
  ``pts68_reannotated`` (2, 68) per image (3DDFA's re-annotation), the runner reports a second 68-point NME.
* **pose**: ``Pose_Para`` angles (pitch, yaw, roll) in degrees; the rotation in the ``Pose_Para`` convention.
* **dense mesh**: decoded from the annotation's parameters with **our** face model, i.e. the first 40 shape /
  10 expression coefficients (a truncation of the original 199/29 fit: dense numbers are therefore not
  comparable with published AFLW2000-3D dense results).
* **face region**: the face model's vertices whose UV position lies in the UV face mask
  (:func:`face_region_vertices`, forehead to chin, no ears or neck); the dense metrics use these.
* **face box**: the x-y bounding box of the GT landmarks (used by the synthetic occluders).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from dsfnet.data.readers import Annotation, annotation_landmarks, annotation_vertices, find_image_for, read_mat
from dsfnet.geometry import pose_para_to_matrix
from dsfnet.io.image import read_image

#: UV resolution used to select the face-region vertices
FACE_REGION_UV_SIZE = 256
DENSE_GT_NOTE = ("dense GT = the annotation's Pose_Para + first {ks} shape / {ke} expression coefficients decoded "
                 "with our face model (truncated from 199/29: not comparable with published dense numbers); "
                 "face region = {n} vertices inside the UV face mask")


def face_region_vertices(face_model, uv_size: int = FACE_REGION_UV_SIZE) -> np.ndarray:
    """Vertex ids ``(M,)`` int64 of the face region: vertices whose rounded UV cell is in the UV face mask
    (:func:`dsfnet.facemodel.uv.get_uv_layout`, forehead to chin, no ears or neck)."""
    from dsfnet.facemodel.uv import get_uv_layout

    layout = get_uv_layout(face_model, uv_size)
    cells = np.rint(layout.vertex_uv).astype(np.int64).clip(0, uv_size - 1)  # (col, row)
    inside = layout.face_mask[cells[:, 1], cells[:, 0]]
    return np.flatnonzero(inside).astype(np.int64)


def landmark_box(points: np.ndarray) -> np.ndarray:
    """``[x0, y0, x1, y1]`` x-y bounding box of ``(N, 2+)`` points."""
    p = np.asarray(points, dtype=np.float64)
    return np.concatenate([p[:, :2].min(0), p[:, :2].max(0)])


@dataclass
class Sample:
    """One evaluation image with its ground truth (image pixels; angles in degrees).

    Attributes:
        name: file name of the image.
        image: ``(H, W, 3)`` uint8 RGB.
        annotation: the parsed ``.mat``.
        landmarks: ``(68, 3)`` GT landmarks.
        landmark_source: ``"pt3d_68"`` or ``"model"`` (reconstructed from the parameters).
        landmarks_reannotated: ``(68, 2)`` or ``None``.
        pose_deg: ``(3,)`` ``[pitch, yaw, roll]`` degrees (``Pose_Para``).
        rotation: ``(3, 3)`` proper rotation (``Pose_Para`` convention).
        vertices: ``(N, 3)`` dense GT mesh (face-model order), or ``None`` without a face model.
        face_box: ``(4,)`` GT landmarks' x-y box ``[x0, y0, x1, y1]``.
    """

    name: str
    image: np.ndarray
    annotation: Annotation
    landmarks: np.ndarray
    landmark_source: str
    landmarks_reannotated: np.ndarray | None
    pose_deg: np.ndarray
    rotation: np.ndarray
    vertices: np.ndarray | None
    face_box: np.ndarray


class AFLW2000Folder:
    """Iterate a folder in AFLW2000-3D layout (sorted by file name).

    Args:
        folder: the folder.
        face_model: our ``FaceModel``; needed for the dense GT (and for landmarks when ``pt3d_68`` is absent).
            ``None``: no dense GT.
        limit: use only the first ``limit`` images (sorted).
    Raises:
        FileNotFoundError: no folder, or no ``.mat`` with an image next to it.
    """

    def __init__(self, folder: str | Path, face_model=None, limit: int | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.folder}")
        pairs = []
        for mat in sorted(self.folder.glob("*.mat")):
            img = find_image_for(mat)
            if img is not None:
                pairs.append((img, mat))
        if not pairs:
            raise FileNotFoundError(f"{self.folder}: no image + .mat pairs (AFLW2000-3D layout: NAME.jpg + NAME.mat)")
        self.pairs = pairs[:limit] if limit else pairs
        self.face_model = face_model
        self.region = face_region_vertices(face_model) if face_model is not None else None
        self.reannotated = self._read_reannotated()

    def _read_reannotated(self) -> dict[str, np.ndarray]:
        path = self.folder / "gt.npz"
        if not path.is_file():
            return {}
        with np.load(path, allow_pickle=False) as z:
            if "names" not in z or "pts68_reannotated" not in z:
                return {}
            names = [str(n) for n in z["names"]]
            pts = np.asarray(z["pts68_reannotated"], dtype=np.float64)
        if pts.shape != (len(names), 2, 68):
            raise ValueError(f"{path}: pts68_reannotated must be ({len(names)}, 2, 68), got {pts.shape}")
        return {n: p.T.copy() for n, p in zip(names, pts)}

    @property
    def dense_note(self) -> str | None:
        """What the dense GT is (for reports), or ``None`` without a face model."""
        if self.face_model is None:
            return None
        return DENSE_GT_NOTE.format(ks=self.face_model.shape_basis.shape[2], ke=self.face_model.exp_basis.shape[2],
                                    n=len(self.region))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Sample:
        img_path, mat_path = self.pairs[i]
        image = read_image(img_path)
        fm = self.face_model
        ks = fm.shape_basis.shape[2] if fm is not None else 40
        ke = fm.exp_basis.shape[2] if fm is not None else 10
        ann = read_mat(mat_path, n_shape=ks, n_exp=ke, image_size=image.shape[:2])
        if ann.pt3d_68 is not None:
            landmarks, source = ann.pt3d_68, "pt3d_68"
        elif fm is not None:
            landmarks, source = annotation_landmarks(fm, ann), "model"
        else:
            raise ValueError(f"{mat_path}: no pt3d_68; pass a face model to reconstruct the landmarks")
        pose = np.degrees(ann.pose_para[:3])
        return Sample(
            name=img_path.name, image=image, annotation=ann, landmarks=np.asarray(landmarks, dtype=np.float64),
            landmark_source=source, landmarks_reannotated=self.reannotated.get(img_path.name),
            pose_deg=pose, rotation=pose_para_to_matrix(*ann.pose_para[:3]),
            vertices=annotation_vertices(fm, ann) if fm is not None else None,
            face_box=landmark_box(landmarks))

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]
