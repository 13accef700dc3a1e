"""The stages of a build (a :class:`Pipeline` of plain callables) and the factories of the default ones.

ytf68 items go through ``init`` (the teacher on the landmark crop) → ``fit`` (landmark fitting) → ``profile``;
``--pseudo`` images through ``detect`` → ``label`` (the teacher alone, two passes) → ``profile``
(:mod:`dsfnet.data.build`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dsfnet.data.build.config import BuildConfig


@dataclass
class Fit:
    """Output of the init + fit stages: raw coefficients and ``Pose_Para`` in the photo's pixels."""

    pose_para: np.ndarray
    shape: np.ndarray          # raw (Ks,)
    exp: np.ndarray            # raw (Ke,)
    nme: float | None          # fitted vs given landmarks, over √(w·h) of their box (None: no fit, pseudo-labels)
    teacher_nme: float | None  # the teacher's 68 points vs the given ones (None without a teacher / landmarks)
    extra: dict = field(default_factory=dict)  # more JSON-ready fields for the item record


@dataclass
class Pipeline:
    """The stages; each is a plain callable so tests and future stages can swap them.

    Attributes:
        face_model: the 3DMM.
        init: ``(image_rgb, landmarks (68, 2)) -> (pose_para (7,), shape_n, exp_n) | None``.
        fit: ``(image_rgb, landmarks, init) -> Fit``.
        profile: ``(image_rgb, Fit, rng) -> list of (image_rgb, pose_para)`` extra views (may be empty).
        detect: ``--pseudo`` items: ``image_rgb -> Detection | box (4,) | None`` (None: no face, a failure).
        label: ``--pseudo`` items: ``(image_rgb, box (4,)) -> Fit`` (``nme`` None: no landmark fit).
        convention: the given landmarks' convention, ``"2d"`` or ``"3d"`` (recorded with each sample).
    """

    face_model: Any
    init: Callable[[np.ndarray, np.ndarray], Any] | None = None
    fit: Callable[..., Fit] | None = None
    profile: Callable[..., list] | None = None
    detect: Callable[[np.ndarray], Any] | None = None
    label: Callable[[np.ndarray, np.ndarray], Fit] | None = None
    convention: str = "2d"


def make_teacher_init(face_model, teacher_dir: str | os.PathLike | None = None, teacher=None) -> Callable:
    """An init stage running the 3DDFA_V2 teacher (``teacher``, or loaded from ``teacher_dir``) on the 3DDFA
    landmark crop."""
    from dsfnet.teacher import load_teacher, roi_from_landmarks

    teacher = teacher if teacher is not None else load_teacher(face_model, teacher_dir)

    def init(image: np.ndarray, landmarks: np.ndarray):
        out = teacher.predict(image, roi_from_landmarks(landmarks))
        return (out.pose_para, out.shape / face_model.shape_std, out.exp / face_model.exp_std,
                out.landmarks[:, :2])

    return init


def make_detect_stage(detector: Any = "yuface") -> Callable:
    """A detect stage: the largest face (box area; ties: higher score) of ``detector`` (a registry name or a
    :class:`dsfnet.detect.FaceDetector`), or None when it finds none."""
    from dsfnet.detect import create_detector

    det = create_detector(detector)

    def detect(image: np.ndarray):
        faces = det.detect(image)
        if not faces:
            return None
        return max(faces, key=lambda d: ((d.box[2] - d.box[0]) * (d.box[3] - d.box[1]), d.score))

    return detect


def make_teacher_label(face_model, teacher_dir: str | os.PathLike | None = None, teacher=None,
                       calibration=None) -> Callable:
    """A label stage (``--pseudo``): the teacher from the detector box
    (:func:`dsfnet.teacher.roi_from_calibrated_detection` with the detector's ``calibration``), then again from
    its own first-pass landmarks (:func:`dsfnet.teacher.roi_from_landmarks`); the second pass is the label
    (``Fit.nme`` None)."""
    from dsfnet.data.fitting import landmark_nme
    from dsfnet.teacher import load_teacher, roi_from_calibrated_detection, roi_from_landmarks

    teacher = teacher if teacher is not None else load_teacher(face_model, teacher_dir)

    def label(image: np.ndarray, box) -> Fit:
        first = teacher.predict(image, roi_from_calibrated_detection(box, calibration))
        out = teacher.predict(image, roi_from_landmarks(first.landmarks[:, :2]))
        extra = {"teacher_pass_nme": landmark_nme(first.landmarks, out.landmarks),
                 "teacher_roi": [round(float(v), 2) for v in out.roi_box]}
        return Fit(out.pose_para, out.shape, out.exp, None, None, extra)

    return label


def make_fit_stage(face_model, convention: str = "2d") -> Callable:
    """A fit stage: :func:`dsfnet.data.fitting.fit_landmarks` in ``convention`` from the init (if any)."""
    from dsfnet.data.fitting import FitOptions, fit_landmarks, landmark_nme

    options = FitOptions(convention=convention)

    def fit(image: np.ndarray, landmarks: np.ndarray, init) -> Fit:
        kw = {}
        teacher_nme = None
        if init is not None:
            kw = {"init_pose": init[0], "init_shape": init[1], "init_exp": init[2]}
            if len(init) > 3 and init[3] is not None:
                teacher_nme = landmark_nme(init[3], landmarks)
        r = fit_landmarks(face_model, landmarks, image.shape[0], options, **kw)
        return Fit(r.pose_para, r.shape * face_model.shape_std, r.exp * face_model.exp_std,
                   landmark_nme(r.landmarks, landmarks), teacher_nme)

    return fit


def make_profile_stage(face_model, views: int, max_yaw_deg: float = 90.0, min_step_deg: float = 10.0,
                       max_pitch_deg: float = 0.0) -> Callable:
    """A profiling stage: ``views`` new images, target |yaw| drawn uniformly in ``[|yaw| + min_step, max_yaw]``
    on the side the face turns to (a frontal face picks a side at random), and, when ``max_pitch_deg > 0``,
    target pitch drawn uniformly in ``[-max_pitch, max_pitch]``."""
    from dsfnet.data.profiling import profile_face

    max_yaw = np.radians(max_yaw_deg)
    max_pitch = np.radians(max_pitch_deg)
    step = np.radians(min_step_deg)

    def profile(image: np.ndarray, fit: Fit, rng: np.random.Generator) -> list:
        yaw = float(fit.pose_para[1])
        side = np.sign(yaw) if abs(yaw) > np.radians(3) else rng.choice([-1.0, 1.0])
        lo = min(abs(yaw) + step, max_yaw)
        out = []
        for target in np.sort(rng.uniform(lo, max_yaw, size=views)):
            delta_pitch = float(rng.uniform(-max_pitch, max_pitch) - fit.pose_para[0]) if max_pitch > 0 else 0.0
            view = profile_face(image, face_model, fit.shape, fit.exp, fit.pose_para,
                                delta_yaw=float(side * target - yaw), delta_pitch=delta_pitch)
            out.append((view.image, view.pose_para))
        return out

    return profile


def build_pipeline(config: BuildConfig, face_model=None) -> Pipeline:
    """The default :class:`Pipeline` of a build: ``face_model`` (None: loaded from ``config.face_model``), the
    teacher from ``config.teacher_dir`` (if set), profiling when ``config.views > 0``."""
    if face_model is None:
        from dsfnet.facemodel.model import load_face_model

        face_model = load_face_model(config.face_model)
    fm = face_model
    prof = make_profile_stage(fm, config.views, config.max_yaw, max_pitch_deg=config.max_pitch) if config.views > 0 else None
    if config.pseudo:
        if not config.teacher_dir:
            from dsfnet.teacher import ENV_TEACHER_DIR

            raise ValueError(f"--pseudo labels with the teacher alone: give --teacher-dir or ${ENV_TEACHER_DIR}")
        from dsfnet.detect import create_detector

        det = create_detector(config.detector)
        label = make_teacher_label(fm, config.teacher_dir, calibration=det.calibration)
        return Pipeline(face_model=fm, profile=prof, detect=make_detect_stage(det), label=label)
    init = make_teacher_init(fm, config.teacher_dir) if config.teacher_dir else None
    return Pipeline(face_model=fm, init=init, fit=make_fit_stage(fm, config.convention), profile=prof,
                    convention=config.convention)
