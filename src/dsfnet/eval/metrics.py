"""Evaluation metrics: pure NumPy functions on one image (or one set of images) at a time.

All point sets are rows in **image pixels** (x right, y down, z toward the camera; ``docs/CONVENTIONS.md``).
Errors are returned as **fractions** (multiply by 100 for the percentages printed in tables), angles in
**degrees**.

* :func:`nme_2d`: mean x-y point error over ``sqrt(w·h)`` of the ground-truth points' x-y box (the 3DDFA /
  AFLW2000-3D 68-point protocol).
* :func:`yaw_bins` / :func:`binned_mean`: |yaw| bins [0°, 30°], (30°, 60°], (60°, 90°+) and their balanced mean.
* :func:`dense_nme` (the dense NME of DSFNet's evaluation code): each set minus its own mean z, 3-D and x-y
  errors over ``sqrt`` of the GT x-y box area.
* :func:`reconstruction_nme` (``rec`` of DSFNet's evaluation code): similarity alignment with that code's scale rule
  (ratio of summed distances to the first point), no reflection check, over the GT outer-eye-corner distance
  (36-45).
* :func:`pose_errors` / :func:`pose_mae`: ``Pose_Para`` angles, |GT angle| > 99° excluded, no wrap-around.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsfnet.geometry.rotation import nearest_rotation

#: |yaw| bin edges in degrees: bin i holds lo < |yaw| <= hi (the first bin includes 0; the last is open above)
YAW_BINS: tuple[tuple[float, float], ...] = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))
YAW_BIN_NAMES: tuple[str, ...] = ("[0,30]", "(30,60]", "(60,90]")
#: head-pose protocol: images with any |GT angle| above this (degrees) are excluded
POSE_LIMIT_DEG = 99.0
#: 0-based indices of the outer eye corners in the 68-point (iBUG) order
OUTER_EYE_CORNERS = (36, 45)


def _points(a, name: str, min_dim: int = 2) -> np.ndarray:
    p = np.asarray(a, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < min_dim or len(p) < 2:
        raise ValueError(f"{name} must be (N>=2, {min_dim}+) points, got shape {p.shape}")
    if not np.isfinite(p[:, :min_dim]).all():
        raise ValueError(f"{name} has non-finite values")
    return p


def _pair(pred, gt, min_dim: int) -> tuple[np.ndarray, np.ndarray]:
    p, g = _points(pred, "pred", min_dim), _points(gt, "gt", min_dim)
    if len(p) != len(g):
        raise ValueError(f"pred has {len(p)} points, gt has {len(g)}")
    return p, g


def box_size(points: np.ndarray) -> float:
    """``sqrt(w·h)`` of the x-y bounding box of ``(N, 2+)`` points (pixels)."""
    p = np.asarray(points, dtype=np.float64)
    w, h = np.ptp(p[:, 0]), np.ptp(p[:, 1])
    return math.sqrt(w * h)


def _norm(gt: np.ndarray) -> float:
    d = box_size(gt)
    if not d > 0:
        raise ValueError("the ground-truth points span a degenerate box (zero width or height)")
    return d


def nme_2d(pred, gt) -> float:
    """Normalised mean x-y error.

    Args:
        pred, gt: ``(N, 2+)`` image pixels (only x, y used); typically the 68 landmarks.
    Returns:
        mean point-to-point x-y distance / ``sqrt(w·h)`` of the GT box (fraction).

    >>> nme_2d([[1.0, 0.0], [11.0, 10.0]], [[0.0, 0.0], [10.0, 10.0]])
    0.1
    """
    p, g = _pair(pred, gt, 2)
    return float(np.linalg.norm(p[:, :2] - g[:, :2], axis=1).mean() / _norm(g))


def yaw_bin_index(yaw_deg) -> np.ndarray:
    """Bin index (0, 1, 2) of each yaw (degrees, signed): |yaw| <= 30 → 0, <= 60 → 1, else 2 (also > 90)."""
    a = np.abs(np.asarray(yaw_deg, dtype=np.float64))
    if not np.isfinite(a).all():
        raise ValueError("yaw angles must be finite")
    return np.where(a <= YAW_BINS[0][1], 0, np.where(a <= YAW_BINS[1][1], 1, 2))


@dataclass(frozen=True)
class BinnedMean:
    """Per-bin means of a per-image error and their balanced mean.

    Attributes:
        bins: mean per bin (``nan`` where the bin is empty), in :data:`YAW_BIN_NAMES` order.
        counts: images per bin.
        balanced: mean over the **non-empty** bins (``nan`` if all are empty).
        overall: plain mean over all images.
        empty_bins: names of the empty bins (excluded from ``balanced``).
    """

    bins: tuple[float, ...]
    counts: tuple[int, ...]
    balanced: float
    overall: float
    empty_bins: tuple[str, ...]


def binned_mean(errors, yaw_deg) -> BinnedMean:
    """Group per-image ``errors (M,)`` by |yaw| bin (``yaw_deg (M,)``) and average.

    >>> r = binned_mean([1.0, 3.0, 5.0], [10.0, -20.0, 45.0])
    >>> r.bins[:2], r.counts, r.balanced, r.empty_bins
    ((2.0, 5.0), (2, 1, 0), 3.5, ('(60,90]',))
    """
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    y = np.asarray(yaw_deg, dtype=np.float64).reshape(-1)
    if e.shape != y.shape:
        raise ValueError(f"got {e.size} errors but {y.size} yaw angles")
    idx = yaw_bin_index(y)
    means, counts = [], []
    for b in range(len(YAW_BINS)):
        sel = e[idx == b]
        counts.append(int(sel.size))
        means.append(float(sel.mean()) if sel.size else float("nan"))
    filled = [m for m, c in zip(means, counts) if c]
    return BinnedMean(bins=tuple(means), counts=tuple(counts),
                      balanced=float(np.mean(filled)) if filled else float("nan"),
                      overall=float(e.mean()) if e.size else float("nan"),
                      empty_bins=tuple(n for n, c in zip(YAW_BIN_NAMES, counts) if not c))


def dense_nme(pred, gt) -> tuple[float, float]:
    """Dense 3-D and 2-D NME over corresponding vertices, as DSFNet's evaluation code computes them.

    Each set has its own mean z subtracted; distances are 3-D (``nme3d``) and x-y (``nme2d``), averaged
    over the vertices and divided by ``sqrt(w·h)`` of the GT x-y box.

    Args:
        pred, gt: ``(N, 3)`` image pixels, same vertex order (e.g. the face-region vertices).
    Returns:
        ``(nme3d, nme2d)`` fractions.

    >>> dense_nme([[0.0, 0.0, 5.0], [10.0, 10.0, 7.0]], [[0.0, 0.0, 1.0], [10.0, 10.0, 1.0]])
    (0.1, 0.0)
    """
    p, g = _pair(pred, gt, 3)
    p = p[:, :3] - [0.0, 0.0, p[:, 2].mean()]
    g = g[:, :3] - [0.0, 0.0, g[:, 2].mean()]
    d = _norm(g)
    diff = p - g
    return float(np.linalg.norm(diff, axis=1).mean() / d), float(np.linalg.norm(diff[:, :2], axis=1).mean() / d)


def reference_similarity_align(pred, gt) -> np.ndarray:
    """Align ``pred`` onto ``gt`` as DSFNet's evaluation code does before ``rec`` (kept for comparability).

    ``scale = Σ‖g_i − g_0‖ / Σ‖p_i − p_0‖`` (distances to the **first** point), the rotation from the SVD of
    the centred cross-covariance **without** a reflection check, the translation from the means.

    Args:
        pred, gt: ``(N, 3)``.
    Returns:
        ``(N, 3)`` aligned prediction.
    """
    p, g = _pair(pred, gt, 3)
    p, g = p[:, :3], g[:, :3]
    sp = np.linalg.norm(p - p[0], axis=1).sum()
    sg = np.linalg.norm(g - g[0], axis=1).sum()
    if not sp > 0:
        raise ValueError("the prediction's points all coincide; cannot align")
    scale = sg / sp
    mp, mg = p.mean(0), g.mean(0)
    rot = nearest_rotation((g - mg).T @ (p - mp), allow_reflection=True)  # of the cross-covariance: maps pred onto gt
    return scale * (p - mp) @ rot.T + mg


def reconstruction_nme(pred, gt, gt_landmarks) -> float:
    """Reconstruction error ``rec`` of DSFNet's evaluation code: mean 3-D distance after
    :func:`reference_similarity_align`, divided by the GT outer-eye-corner distance ``‖L36 − L45‖`` (3-D).

    Args:
        pred, gt: ``(N, 3)`` dense vertices (same order).
        gt_landmarks: ``(68, 3)`` GT landmarks (for the normaliser).
    Returns:
        fraction.
    """
    lm = _points(gt_landmarks, "gt_landmarks", 3)
    if len(lm) != 68:
        raise ValueError(f"gt_landmarks must be (68, 3), got {lm.shape}")
    iod = float(np.linalg.norm(lm[OUTER_EYE_CORNERS[0], :3] - lm[OUTER_EYE_CORNERS[1], :3]))
    if not iod > 0:
        raise ValueError("the GT outer eye corners coincide")
    aligned = reference_similarity_align(pred, gt)
    return float(np.linalg.norm(aligned - np.asarray(gt, dtype=np.float64)[:, :3], axis=1).mean() / iod)


def pose_errors(pred_deg, gt_deg) -> np.ndarray:
    """Absolute angle errors ``(M, 3)`` (pitch, yaw, roll; degrees), plain difference, no wrap-around."""
    p = np.asarray(pred_deg, dtype=np.float64).reshape(-1, 3)
    g = np.asarray(gt_deg, dtype=np.float64).reshape(-1, 3)
    if p.shape != g.shape:
        raise ValueError(f"pred angles {p.shape} vs gt angles {g.shape}")
    return np.abs(p - g)


def pose_valid(gt_deg, limit: float = POSE_LIMIT_DEG) -> np.ndarray:
    """``(M,)`` bool: True where every |GT angle| <= ``limit`` degrees (the protocol's inclusion rule)."""
    g = np.asarray(gt_deg, dtype=np.float64).reshape(-1, 3)
    return np.all(np.abs(g) <= limit, axis=1)


@dataclass(frozen=True)
class PoseMAE:
    """Head-pose mean absolute errors in degrees over the included images (``nan`` if none), and ``bias``: the mean
    signed error ``pred − GT`` per angle (pitch, yaw, roll), which shows a systematic part of the MAE."""

    pitch: float
    yaw: float
    roll: float
    mean: float
    n_used: int
    n_excluded: int
    bias: tuple[float, float, float] = (float("nan"),) * 3


def pose_mae(pred_deg, gt_deg, limit: float = POSE_LIMIT_DEG) -> PoseMAE:
    """Pose MAE: images with any |GT angle| > ``limit`` excluded; per-angle MAE and their mean.

    Args:
        pred_deg, gt_deg: ``(M, 3)`` ``[pitch, yaw, roll]`` degrees (``Pose_Para`` convention).

    >>> pose_mae([[1, 2, 3], [0, 0, 0]], [[0, 0, 0], [0, 120, 0]]).mean
    2.0
    """
    err = pose_errors(pred_deg, gt_deg)
    ok = pose_valid(gt_deg, limit)
    if not ok.any():
        nan = float("nan")
        return PoseMAE(nan, nan, nan, nan, 0, int(len(ok)))
    m = err[ok].mean(0)
    signed = (np.asarray(pred_deg, dtype=np.float64).reshape(-1, 3) - np.asarray(gt_deg, dtype=np.float64).reshape(-1, 3))
    bias = signed[ok].mean(0)
    return PoseMAE(pitch=float(m[0]), yaw=float(m[1]), roll=float(m[2]), mean=float(m.mean()),
                   n_used=int(ok.sum()), n_excluded=int((~ok).sum()), bias=tuple(float(b) for b in bias))


def ced_curve(errors, max_error: float, steps: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: ``x (steps,)`` in ``[0, max_error]`` and the fraction of errors ``<= x``."""
    e = np.sort(np.asarray(errors, dtype=np.float64).reshape(-1))
    x = np.linspace(0.0, max_error, steps)
    y = np.searchsorted(e, x, side="right") / max(len(e), 1)
    return x, y
