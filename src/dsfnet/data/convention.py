"""Annotation placement: a similarity that moves a landmark set's annotations to a reference's placement.

Two annotation sources can agree on every face and still differ *on average*: one set may sit a little lower or
spread a little wider than the other (how annotators clicked, how images were resized). Fitting 3DMM labels to such
annotations teaches the network that offset, and every evaluation in the other convention pays it on every face.
:func:`estimate_correction` measures the average offset of a set of annotations against reference landmarks of the
same images (e.g. the 3DDFA_V2 teacher, whose placement is AFLW2000-3D's); :meth:`AnnotationCorrection.apply`
removes it, face by face, before the fit.

The correction lives in each face's own **frame**, computed from the annotation being corrected:

* origin: the mean of the 51 inner points (17-67);
* x axis: from the centre of the image-left eye (points 36-41) to the centre of the image-right eye (42-47), so the
  frame turns with the face's roll; y axis 90° clockwise from it (image convention, y down);
* unit: ``√(w·h)`` of the 68 points' box (the NME normaliser), so offsets are fractions of the face size.

In that frame a corrected point is ``u' = scale · u + shift``: ``scale`` about the inner-point centroid, ``shift``
``(2,)`` in face units (+x toward the image-right eye, +y down the face). All 68 points move by the same similarity,
so the jaw keeps its own (2D, silhouette) convention and only its placement changes.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dsfnet.geometry import landmarks

#: inner landmarks (brows, nose, eyes, mouth) of the 68-point iBUG order
INNER = landmarks.INNER
_EYE_IMAGE_LEFT = landmarks.EYE_RIGHT  # the subject's right eye is on the image's left
_EYE_IMAGE_RIGHT = landmarks.EYE_LEFT


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face frame of one or many 68-point sets (module docstring).

    Args:
        landmarks: ``(68, 2)`` or ``(N, 68, 2)`` image px (x right, y down).
    Returns:
        ``(origin (…, 2) px, axes (…, 2, 2), unit (…,) px)``; ``axes[..., 0]`` is the x axis and ``axes[..., 1]`` the
        y axis as unit column vectors, so ``px = origin + unit · axes @ u``.
    """
    p = np.asarray(landmarks, dtype=np.float64)[..., :2]
    if p.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must be (68, 2) or (N, 68, 2) image px, got {p.shape}")
    origin = p[..., INNER, :].mean(-2)
    eye = p[..., _EYE_IMAGE_RIGHT, :].mean(-2) - p[..., _EYE_IMAGE_LEFT, :].mean(-2)
    norm = np.linalg.norm(eye, axis=-1, keepdims=True)
    if np.any(norm < 1e-9):
        raise ValueError("the eye centres coincide: cannot orient the face frame")
    x = eye / norm
    y = np.stack([-x[..., 1], x[..., 0]], -1)           # x rotated by +90° in y-down image axes
    axes = np.stack([x, y], -1)
    wh = p.max(-2) - p.min(-2)
    unit = np.sqrt(np.clip(wh[..., 0] * wh[..., 1], 1e-12, None))
    return origin, axes, unit


def to_face_frame(points: np.ndarray, frame: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Image px ``(…, K, 2)`` → face-frame coordinates of :func:`face_frame` (face units)."""
    origin, axes, unit = frame
    d = np.asarray(points, dtype=np.float64)[..., :2] - origin[..., None, :]
    return np.einsum("...kj,...ji->...ki", d, axes) / unit[..., None, None]


def from_face_frame(u: np.ndarray, frame: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Face-frame coordinates ``(…, K, 2)`` → image px (inverse of :func:`to_face_frame`)."""
    origin, axes, unit = frame
    return origin[..., None, :] + unit[..., None, None] * np.einsum("...ki,...ji->...kj", u, axes)


@dataclass(frozen=True)
class AnnotationCorrection:
    """``u' = scale · u + shift`` in each face's frame (module docstring).

    Attributes:
        scale: spread about the inner-point centroid (1 = unchanged).
        shift: ``(x, y)`` face units (fractions of ``√(w·h)``), +x toward the image-right eye, +y down the face.
        note: where the numbers came from (free text, kept in build reports).
    """

    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and 0.5 < self.scale < 2.0):
            raise ValueError(f"AnnotationCorrection.scale must be finite and in (0.5, 2), got {self.scale}")
        shift = tuple(float(v) for v in self.shift)
        if len(shift) != 2 or not all(np.isfinite(shift)) or max(map(abs, shift)) > 0.5:
            raise ValueError(f"AnnotationCorrection.shift must be 2 finite face units with |v| <= 0.5, got {self.shift}")
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "scale", float(self.scale))

    def apply(self, landmarks: np.ndarray) -> np.ndarray:
        """Corrected copy of ``(68, 2)`` or ``(N, 68, 2)`` image px (same shape, float64)."""
        frame = face_frame(landmarks)
        u = to_face_frame(landmarks, frame)
        return from_face_frame(self.scale * u + np.asarray(self.shift), frame)

    def to_json(self) -> dict:
        d = asdict(self)
        d["shift"] = list(self.shift)
        return d

    @classmethod
    def from_json(cls, obj: dict) -> "AnnotationCorrection":
        try:
            return cls(float(obj["scale"]), tuple(obj["shift"]), str(obj.get("note", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"an annotation correction needs {{scale, shift: [x, y]}}: {exc}") from None

    def save(self, path: str | os.PathLike) -> None:
        from dsfnet.io.writers import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "AnnotationCorrection":
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"annotation correction file not found: {p}")
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not JSON ({exc})") from None
        return cls.from_json(obj)


def estimate_correction(annotations: np.ndarray, references: np.ndarray, note: str = "") -> AnnotationCorrection:
    """Least-squares ``scale`` and ``shift`` taking ``annotations`` to ``references`` in the annotations' frames.

    Pools the 51 inner points of all faces: minimises ``Σ ‖u_ref − (scale · u_ann + shift)‖²`` (jaw points are left
    out: their conventions differ by design, 2D silhouette vs 3D jawline).

    Args:
        annotations: ``(N, 68, 2)`` image px.
        references: ``(N, 68, 2+)`` image px of the same faces (extra columns ignored).
    """
    a = np.asarray(annotations, dtype=np.float64)
    r = np.asarray(references, dtype=np.float64)[..., :2]
    if a.ndim != 3 or a.shape[1:] != (68, 2) or r.shape != a.shape:
        raise ValueError(f"need annotations (N, 68, 2) and references of the same shape, got {a.shape}, {r.shape}")
    if len(a) == 0:
        raise ValueError("no faces to estimate a correction from")
    frame = face_frame(a)
    ua = to_face_frame(a, frame)[:, INNER].reshape(-1, 2)
    ur = to_face_frame(r, frame)[:, INNER].reshape(-1, 2)
    ma, mr = ua.mean(0), ur.mean(0)
    scale = float(np.sum((ua - ma) * (ur - mr)) / np.sum((ua - ma) ** 2))
    shift = mr - scale * ma
    return AnnotationCorrection(scale, (float(shift[0]), float(shift[1])), note)


def inner_nme(points: np.ndarray, references: np.ndarray) -> float:
    """Mean over faces of the 51 inner points' mean error over √(w·h) of the reference's 68-point box;
    ``(N, 68, 2+)`` image px twice."""
    p = np.asarray(points, dtype=np.float64)[..., :2]
    r = np.asarray(references, dtype=np.float64)[..., :2]
    wh = r.max(-2) - r.min(-2)
    err = np.linalg.norm(p[:, INNER] - r[:, INNER], axis=-1).mean(-1)
    return float(np.mean(err / np.sqrt(wh[:, 0] * wh[:, 1])))


def estimate_against_teacher(source: str | os.PathLike, teacher_dir: str | os.PathLike, splits: tuple[str, ...] = ("training",),
                             max_yaw_deg: float = 30.0, face_model=None, limit: int | None = None,
                             progress: bool = False) -> tuple[AnnotationCorrection, dict]:
    """:func:`estimate_correction` of a ytf68-style folder's annotations against the 3DDFA_V2 teacher.

    The teacher runs on each face's landmark crop (:func:`dsfnet.teacher.roi_from_landmarks`); faces whose
    teacher yaw exceeds ``max_yaw_deg`` are left out (their inner points foreshorten and the frame's unit shrinks).
    Returns the correction and a JSON-ready summary (counts, the correction estimated on each half of the faces, the
    inner-point NME of the annotations against the teacher before and after the correction).
    """
    from tqdm import tqdm

    from dsfnet.data.sources import read_items
    from dsfnet.facemodel.model import load_face_model
    from dsfnet.geometry import matrix_to_pose_para
    from dsfnet.io.image import read_image
    from dsfnet.teacher import load_teacher, roi_from_landmarks

    items = read_items(source, splits, limit=limit)
    if not items:
        raise ValueError(f"no annotated faces in {source} for splits {splits}")
    fm = face_model if face_model is not None else load_face_model()
    teacher = load_teacher(fm, teacher_dir)
    ann, ref = [], []
    for it in tqdm(items, desc="teacher", disable=not progress):
        out = teacher.predict(read_image(it.image), roi_from_landmarks(it.landmarks))
        if abs(np.degrees(matrix_to_pose_para(out.rotation)[1])) <= max_yaw_deg:
            ann.append(it.landmarks)
            ref.append(out.landmarks[:, :2])
    if not ann:
        raise ValueError(f"no face within {max_yaw_deg} degrees of yaw")
    a, r = np.asarray(ann), np.asarray(ref)
    note = (f"teacher 3DDFA_V2 vs the annotations of {Path(source).name} (splits {','.join(splits)}), "
            f"{len(a)} faces with |yaw| <= {max_yaw_deg:g} deg, inner points")
    corr = estimate_correction(a, r, note)
    halves = [estimate_correction(a[h::2], r[h::2]).to_json() for h in (0, 1)] if len(a) > 1 else []
    summary = {"faces": len(items), "used": len(a), "max_yaw_deg": max_yaw_deg, "correction": corr.to_json(),
               "halves": [{k: v for k, v in h.items() if k != "note"} for h in halves],
               "inner_nme_vs_teacher": {"before": inner_nme(a, r), "after": inner_nme(corr.apply(a), r)}}
    return corr, summary
