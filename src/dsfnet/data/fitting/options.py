"""What a landmark fit is asked for (:class:`FitOptions`, the landmark conventions) and what it returns
(:class:`FitResult`); :mod:`dsfnet.data.fitting` describes the fit."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from dsfnet.geometry import landmarks

Convention = Literal["3d", "2d", "inner"]
JawMode = Literal["fixed", "march", "drop"]

#: the jaw (face outline) landmarks (:data:`dsfnet.geometry.landmarks.JAW`) as an index array
JAW = np.arange(68)[landmarks.JAW]
#: the 51 inner landmarks (:data:`dsfnet.geometry.landmarks.INNER`) as an index array
INNER = np.arange(68)[landmarks.INNER]
#: jaw point that never marches
CHIN = landmarks.CHIN


@dataclass(frozen=True)
class FitOptions:
    """How :func:`fit_landmarks` fits (the per-face inputs, a start and point weights, are its arguments).

    Attributes:
        convention: ``"3d"`` fixed landmark vertices, ``"2d"`` silhouette jaw (marching), ``"inner"`` the 51
            inner points only (module docstring).
        jaw: override of the convention's jaw handling: ``"fixed"``, ``"march"`` or ``"drop"`` (None: the
            convention's, :attr:`jaw_mode`).
        n_iter: maximum iterations.
        sigma: expected landmark noise as a fraction of √(w·h) of the landmark box (balances the priors).
        shape_prior, exp_prior: weights of ``‖α̃‖²`` and ``‖β̃‖²``.
        robust: Geman-McClure reweighting against a few bad points.
        tol: convergence when no parameter of the step changes by more than this.
    """

    convention: Convention = "3d"
    jaw: JawMode | None = None
    n_iter: int = 30
    sigma: float = 0.01
    shape_prior: float = 1.0
    exp_prior: float = 1.0
    robust: bool = True
    tol: float = 1e-6

    def __post_init__(self) -> None:
        if self.convention not in _CONVENTION_JAW:
            raise ValueError(f"convention must be '3d', '2d' or 'inner', got {self.convention!r}")
        if self.jaw is not None and self.jaw not in ("fixed", "march", "drop"):
            raise ValueError(f"jaw must be 'fixed', 'march' or 'drop', got {self.jaw!r}")

    @property
    def jaw_mode(self) -> JawMode:
        """The jaw handling: :attr:`jaw`, else the convention's (3d: fixed, 2d: march, inner: drop)."""
        return self.jaw if self.jaw is not None else _CONVENTION_JAW[self.convention]


_CONVENTION_JAW: dict[str, JawMode] = {"3d": "fixed", "2d": "march", "inner": "drop"}


@dataclass(frozen=True)
class FitResult:
    """Result of :func:`fit_landmarks`.

    Attributes:
        pose_para: ``(7,)`` float64 ``[pitch, yaw, roll (radians), tx, ty, tz (px), s (px per model unit)]``.
        shape: ``(Ks,)`` float64 **normalised** identity coefficients ``α / shape_std``.
        exp: ``(Ke,)`` float64 **normalised** expression coefficients ``β / exp_std``.
        residual_px: mean Euclidean distance (image px) between the fitted and the given landmarks over the
            points that were used (all 68, or the 51 inner ones), with the final (marched) correspondences.
        n_iter: iterations run.
        inlier_weights: ``(68,)`` final robust weights in [0, 1]; 0 for points not used.
        landmarks: ``(68, 2)`` image px, the fitted projections of ``vertex_ids``.
        vertex_ids: ``(68,)`` vertex ids used for the landmarks (jaw ids differ from ``keypoints`` after marching).
        converged: whether the parameter update fell below the tolerance before ``n_iter`` ran out.
    """

    pose_para: np.ndarray
    shape: np.ndarray
    exp: np.ndarray
    residual_px: float
    n_iter: int
    inlier_weights: np.ndarray
    landmarks: np.ndarray = field(repr=False)
    vertex_ids: np.ndarray = field(repr=False)
    converged: bool = True

    @property
    def pose_degrees(self) -> np.ndarray:
        """``(3,)`` ``[pitch, yaw, roll]`` in degrees."""
        return np.degrees(self.pose_para[:3])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists of floats; angles also in degrees)."""
        return {
            "pose_para": self.pose_para.tolist(),
            "pose_degrees": {k: float(v) for k, v in zip(("pitch", "yaw", "roll"), self.pose_degrees)},
            "shape": self.shape.tolist(),
            "exp": self.exp.tolist(),
            "residual_px": float(self.residual_px),
            "n_iter": int(self.n_iter),
            "converged": bool(self.converged),
            "inlier_weights": self.inlier_weights.tolist(),
            "landmarks": self.landmarks.tolist(),
            "vertex_ids": self.vertex_ids.tolist(),
        }
