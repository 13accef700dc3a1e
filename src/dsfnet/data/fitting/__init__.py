"""Fit a 3DMM (pose, shape, expression) to 68 2D landmarks in image pixels.

Model and frames (``docs/CONVENTIONS.md``): a model vertex ``v`` (BFM units, y up) lands in the image at
``p = s·R·v + t`` followed by ``y ← H − y`` (``Pose_Para = [pitch, yaw, roll, tx, ty, tz, s]``,
:func:`dsfnet.geometry.pose_para_to_image`). The projection is orthographic, so ``tz`` is not observable:
it is copied from the initial pose when one is given, else 0.

Energy minimised (all landmarks in image pixels, ``d`` = √(w·h) of the target landmarks' box)::

    E = Σ_i w_i ‖q_i − y_i‖² / (σ·d)²  +  λ_shp ‖α̃‖²  +  λ_exp ‖β̃‖²

with ``q_i`` the projection of the landmark's vertex, ``α̃ = α / shape_std`` and ``β̃ = β / exp_std`` the
**normalised** coefficients (Gaussian priors), ``σ`` the expected landmark noise as a fraction of ``d``
(``sigma``) and ``w_i`` robust Geman-McClure weights recomputed every iteration (iteratively reweighted least
squares). Each iteration: (1) for the 2D convention, pick each jaw landmark's vertex on the current silhouette
("landmark marching"); (2) update the robust weights; (3) one Levenberg-Marquardt step on all parameters
(rotation increment, 2D translation, log-scale, α̃, β̃) with an analytic Jacobian.

Landmark conventions:

* ``"3d"``: landmark ``i`` is the projection of the fixed vertex ``face_model.keypoints[i]`` (AFLW2000-3D
  ``pt3d_68``).
* ``"2d"``: the 17 jaw points (0–16) lie on the visible face outline (300-W, ytf68). Jaw point ``j`` may move
  along a precomputed line of candidate vertices (:func:`contour_candidates`: vertices of the mean shape at
  the height of the fixed jaw vertex, from that vertex inward toward the midline); each iteration it takes the
  candidate that is outermost on its side in the current view. The chin (8) stays fixed.
* ``"inner"``: only the 51 inner points (17–67) are used (``jaw="drop"``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from dsfnet.data.fitting.contour import contour_candidates
from dsfnet.data.fitting.files import load_landmarks
from dsfnet.data.fitting.fitter import LandmarkFitter, get_fitter
from dsfnet.data.fitting.options import CHIN, INNER, JAW, Convention, FitOptions, FitResult, JawMode

__all__ = [
    "CHIN", "INNER", "JAW", "Convention", "FitOptions", "FitResult", "JawMode", "LandmarkFitter",
    "contour_candidates", "fit_landmarks", "fit_landmarks_batch", "get_fitter", "landmark_nme", "load_landmarks",
]


def fit_landmarks(
    face_model: Any,
    landmarks: np.ndarray,
    image_height: float,
    options: FitOptions | None = None,
    *,
    init_pose: np.ndarray | None = None,
    init_shape: np.ndarray | None = None,
    init_exp: np.ndarray | None = None,
    point_weights: np.ndarray | None = None,
    **option_overrides: Any,
) -> FitResult:
    """Fit pose, shape and expression to 68 landmarks (orthographic ``Pose_Para`` camera).

    Args:
        face_model: a :class:`dsfnet.facemodel.FaceModel` (or an object with ``mean``, ``shape_basis``,
            ``exp_basis``, ``shape_std``, ``exp_std``, ``keypoints``).
        landmarks: ``(68, 2)`` (or ``(68, 3)``, z ignored) image pixels, x right, y down. Non-finite rows are
            ignored.
        image_height: ``H`` in pixels (enters ``Pose_Para``'s ``ty``).
        options: how to fit (:class:`FitOptions`; default ``FitOptions()``).
        init_pose: ``(7,)`` ``Pose_Para`` to start from (e.g. the teacher's); default: a closed-form
            scaled-orthographic fit of the mean shape.
        init_shape, init_exp: normalised start coefficients (default zeros).
        point_weights: ``(68,)`` non-negative per-point weights (0 = ignore).
        **option_overrides: :class:`FitOptions` fields replacing those of ``options`` (e.g. ``convention="2d"``).
    Returns:
        :class:`FitResult` (normalised coefficients, ``Pose_Para`` in radians).
    Raises:
        ValueError: bad shapes or options, fewer than 6 usable points.
    """
    return get_fitter(face_model).fit(landmarks, image_height, _options(options, option_overrides),
                                      init_pose=init_pose, init_shape=init_shape, init_exp=init_exp,
                                      point_weights=point_weights)


#: the per-face inputs of :func:`fit_landmarks` (``(B, ...)`` arrays in :func:`fit_landmarks_batch`)
_PER_FACE = ("init_pose", "init_shape", "init_exp", "point_weights")


def fit_landmarks_batch(face_model: Any, landmarks: np.ndarray, image_heights, options: FitOptions | None = None,
                        **kwargs: Any) -> list[FitResult]:
    """:func:`fit_landmarks` over ``(B, 68, 2)`` landmarks and ``(B,)`` heights (or one height); ``options`` and
    option keywords apply to every face, the per-face inputs (``init_pose`` etc.) are ``(B, ...)`` arrays."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1] != 68:
        raise ValueError(f"landmarks must be (B, 68, 2), got {lm.shape}")
    heights = np.broadcast_to(np.asarray(image_heights, dtype=np.float64), (lm.shape[0],))
    per_face = {k: v for k, v in kwargs.items() if k in _PER_FACE and v is not None}
    opts = _options(options, {k: v for k, v in kwargs.items() if k not in _PER_FACE})
    fitter = get_fitter(face_model)
    return [fitter.fit(lm[b], float(heights[b]), opts, **{k: np.asarray(v)[b] for k, v in per_face.items()})
            for b in range(lm.shape[0])]


def _options(options: FitOptions | None, overrides: dict[str, Any]) -> FitOptions:
    base = options if options is not None else FitOptions()
    return replace(base, **overrides) if overrides else base


def landmark_nme(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean point error of ``(68, 2)`` points over √(w·h) of the target's bounding box."""
    t = np.asarray(target, dtype=np.float64)[:, :2]
    p = np.asarray(pred, dtype=np.float64)[:, :2]
    wh = t.max(axis=0) - t.min(axis=0)
    return float(np.linalg.norm(p - t, axis=1).mean() / np.sqrt(wh[0] * wh[1]))
