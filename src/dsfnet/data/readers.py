"""Readers for 300W-LP / AFLW2000-3D annotation files (``.mat``, MATLAB v5, read with ``scipy.io.loadmat``).

Keys used (shapes as stored):

* ``Pose_Para`` (1, 7): ``[pitch, yaw, roll, tx, ty, tz, s]``: radians, then the translation in pixels of the
  y-up frame before the flip, then the scale (pixels per model unit). See ``docs/CONVENTIONS.md``.
* ``Shape_Para`` (199, 1) and ``Exp_Para`` (29, 1): **raw** 3DMM coefficients (BFM scale). Our face model keeps
  the first Ks / Ke (40 / 10 for the built-in model); the rest are dropped (a truncation, so meshes decoded
  from an annotation are an approximation of the original fit: ~1-3 px on 450 px images at the 68 landmarks).
* ``pt2d``: (2, 21) AFLW points in AFLW2000-3D, (2, 68) landmarks in 300W-LP; image pixels, x row then y row.
* ``pt3d_68`` (3, 68), AFLW2000-3D only: the 68 landmarks in **image** pixels (x right, y down, z).
* ``roi`` (1, 4): the dataset's face box (not used by our crops).

Image height (needed for the ``y ← H − y`` flip of ``Pose_Para``) comes from the image file next to the
``.mat`` (same stem, read from the header only) unless given.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsfnet.geometry import decode_vertices, pose_para_to_image

#: image suffixes looked for next to a ``.mat`` file, in order
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class Annotation:
    """One 300W-LP / AFLW2000-3D fit.

    Attributes:
        pose_para: ``(7,)`` float64 ``[pitch, yaw, roll (rad), tx, ty, tz (px), s]`` (``Pose_Para`` convention).
        shape: ``(Ks,)`` float64 raw identity coefficients (first Ks of ``Shape_Para``).
        exp: ``(Ke,)`` float64 raw expression coefficients (first Ke of ``Exp_Para``).
        pt2d: ``(K, 2)`` float64 image pixels (x, y); K = 21 (AFLW2000-3D) or 68 (300W-LP); ``None`` if absent.
        pt3d_68: ``(68, 3)`` float64 image pixels (x right, y down, z toward the camera), or ``None``.
        roi: ``(4,)`` float64 the dataset's box ``[x0, y0, x1, y1]``, or ``None``.
        image_size: ``(H, W)`` of the image the pose refers to.
        path: the ``.mat`` file.
    """

    pose_para: np.ndarray
    shape: np.ndarray
    exp: np.ndarray
    pt2d: np.ndarray | None
    pt3d_68: np.ndarray | None
    roi: np.ndarray | None
    image_size: tuple[int, int]
    path: Path | None = None


def image_size_of(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file, from its header (Pillow). Raises ``ValueError`` if it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read the size of image {path}: {exc}") from exc
    return int(h), int(w)


def find_image_for(mat_path: str | Path) -> Path | None:
    """The image with the same stem as ``mat_path`` (suffixes :data:`IMAGE_SUFFIXES`), or ``None``."""
    mat_path = Path(mat_path)
    for suffix in IMAGE_SUFFIXES:
        for cand in (mat_path.with_suffix(suffix), mat_path.with_suffix(suffix.upper())):
            if cand.is_file():
                return cand
    return None


def _vector(mat: dict, key: str, path: Path, min_len: int) -> np.ndarray:
    a = np.asarray(mat[key], dtype=np.float64).reshape(-1)
    if a.size < min_len or not np.isfinite(a[:min_len]).all():
        raise ValueError(f"{path}: {key} must hold at least {min_len} finite values, got shape "
                         f"{np.shape(mat[key])}")
    return a


def read_mat(path: str | Path, n_shape: int = 40, n_exp: int = 10,
             image_size: tuple[int, int] | None = None) -> Annotation:
    """Read a 300W-LP / AFLW2000-3D ``.mat`` annotation.

    Args:
        path: the ``.mat`` file.
        n_shape, n_exp: keep the first Ks / Ke raw coefficients (the face model's counts).
        image_size: ``(H, W)``; default: read from the image next to the file (same stem).
    Returns:
        :class:`Annotation`.
    Raises:
        FileNotFoundError: no such file, or no image to take the size from.
        ValueError: not a readable ``.mat``, missing ``Pose_Para`` / ``Shape_Para`` / ``Exp_Para``, wrong sizes.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError... for bad files
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in ("Pose_Para", "Shape_Para", "Exp_Para") if k not in mat]
    if missing:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: missing keys {missing}; a 300W-LP / AFLW2000-3D annotation has Pose_Para (1,7), "
                         f"Shape_Para (199,1), Exp_Para (29,1); this file has {present}")
    pose = _vector(mat, "Pose_Para", path, 7)
    if pose.size != 7:
        raise ValueError(f"{path}: Pose_Para must have 7 values, got {pose.size}")
    shape = _vector(mat, "Shape_Para", path, n_shape)[:n_shape]
    exp = _vector(mat, "Exp_Para", path, n_exp)[:n_exp]

    pt2d = None
    if "pt2d" in mat:
        a = np.asarray(mat["pt2d"], dtype=np.float64)
        if a.ndim != 2 or a.shape[0] != 2:
            raise ValueError(f"{path}: pt2d must be (2, K), got {a.shape}")
        pt2d = a.T.copy()
    pt3d = None
    if "pt3d_68" in mat:
        a = np.asarray(mat["pt3d_68"], dtype=np.float64)
        if a.shape != (3, 68):
            raise ValueError(f"{path}: pt3d_68 must be (3, 68), got {a.shape}")
        pt3d = a.T.copy()
    roi = np.asarray(mat["roi"], dtype=np.float64).reshape(-1) if "roi" in mat else None
    if roi is not None and roi.size != 4:
        roi = None

    if image_size is None:
        img = find_image_for(path)
        if img is None:
            raise FileNotFoundError(f"{path}: no image with the same name ({', '.join(IMAGE_SUFFIXES)}) to take "
                                    "the height from; pass image_size=(H, W)")
        image_size = image_size_of(img)
    h, w = (int(v) for v in image_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive (H, W), got {image_size}")
    return Annotation(pose_para=pose, shape=shape, exp=exp, pt2d=pt2d, pt3d_68=pt3d, roi=roi,
                      image_size=(h, w), path=path)


def annotation_model_vertices(face_model, ann: Annotation) -> np.ndarray:
    """Decode the annotation's (truncated) coefficients: ``(N, 3)`` float32 model units (y up)."""
    ks, ke = face_model.shape_basis.shape[2], face_model.exp_basis.shape[2]
    if ann.shape.size > ks or ann.exp.size > ke:
        raise ValueError(f"annotation has {ann.shape.size}/{ann.exp.size} coefficients, the face model "
                         f"{ks}/{ke}; read it with read_mat(..., n_shape={ks}, n_exp={ke})")
    return decode_vertices(face_model.mean, face_model.shape_basis, face_model.exp_basis, ann.shape, ann.exp)


def annotation_vertices(face_model, ann: Annotation, height: float | None = None) -> np.ndarray:
    """The annotation's mesh in image pixels.

    Args:
        face_model: a ``FaceModel`` (``mean (N,3)``, ``shape_basis (N,3,Ks)``, ``exp_basis (N,3,Ke)``).
        ann: the annotation.
        height: image height H for the ``y ← H − y`` flip; default ``ann.image_size[0]``.
    Returns:
        ``(N, 3)`` float64 image pixels (x right, y down, z toward the camera), face-model vertex order.
    """
    h = ann.image_size[0] if height is None else height
    return pose_para_to_image(annotation_model_vertices(face_model, ann), ann.pose_para, h)


def annotation_landmarks(face_model, ann: Annotation, height: float | None = None) -> np.ndarray:
    """The 68 landmark vertices of :func:`annotation_vertices`: ``(68, 3)`` image pixels (cheap: decodes 68 only)."""
    kp = np.asarray(face_model.keypoints)
    ks, ke = face_model.shape_basis.shape[2], face_model.exp_basis.shape[2]
    if ann.shape.size > ks or ann.exp.size > ke:
        raise ValueError(f"annotation has {ann.shape.size}/{ann.exp.size} coefficients, the face model {ks}/{ke}")
    v = decode_vertices(face_model.mean[kp], face_model.shape_basis[kp], face_model.exp_basis[kp], ann.shape, ann.exp)
    h = ann.image_size[0] if height is None else height
    return pose_para_to_image(v, ann.pose_para, h)
