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

import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from dsfnet.geometry import flip_y_points, matrix_to_pose_para, pose_para_to_matrix

Convention = Literal["3d", "2d", "inner"]
JawMode = Literal["fixed", "march", "drop"]

#: the jaw (face outline) landmarks in the iBUG 68-point order
JAW = np.arange(17)
#: the 51 inner landmarks (brows, nose, eyes, mouth)
INNER = np.arange(17, 68)
#: jaw point that never marches (chin)
CHIN = 8

_GM_FLOOR = 0.02   # floor of the Geman-McClure scale, fraction of the face size d
_GM_MAD_K = 3.0    # scale = max(floor, K · 1.4826 · median residual)


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


# ------------------------------------------------------------------------------------------ contour lines

def contour_candidates(face_model: Any, n_per_line: int = 32, band: float = 0.03) -> np.ndarray:
    """Candidate vertices for the 17 jaw landmarks under the 2D (silhouette) convention.

    Built from the mean shape (model units, y up). ``W`` is half the x-distance between jaw points 0 and 16.
    For jaw point ``j`` with fixed vertex ``k_j`` at ``(x_j, y_j, z_j)`` on side ``sign(x_j)``, the candidates
    form a horizontal strip at the height of ``k_j``: vertices with ``|y − y_j| < band·W`` on the same side with

    * ``0.3·|x_j| ≤ |x| ≤ |x_j| + 0.05·W`` (from the cheek toward the midline, up to the side of the face), and
    * ``z ≥ z_j − 0.3·W`` for the upper jaw (points 0–4 and 12–16: the cheek, where the near-side outline
      moves back toward the ear) or ``z ≥ z_j − 0.05·W`` for the lower jaw (5–7, 9–11: the mandible's edge).

    The strip is ordered by the angle ``atan2(|x|, z − z_c)`` around a vertical axis behind the face
    (``z_c = z_0 − 0.5·W``), cut into ``n_per_line − 1`` equal angle bins, and in each bin the vertex closest to
    height ``y_j`` is kept. ``k_j`` is always candidate 0; the chin (8) has only itself.

    Args:
        face_model: object with ``mean (N, 3)`` and ``keypoints (68,)``.
        n_per_line: candidates per jaw point (rows are padded with ``k_j``).
        band: half-height of the strip as a fraction of ``W``.
    Returns:
        ``(17, n_per_line)`` int64 vertex ids.
    """
    mean = np.asarray(face_model.mean, dtype=np.float64)
    kp = np.asarray(face_model.keypoints, dtype=np.int64)
    half_w = 0.5 * abs(mean[kp[16], 0] - mean[kp[0], 0])
    if not half_w > 0:
        raise ValueError("face model's jaw points 0 and 16 coincide in x; cannot build contour lines")
    z_axis = 0.5 * (mean[kp[0], 2] + mean[kp[16], 2]) - 0.5 * half_w
    out = np.repeat(kp[:17, None], n_per_line, axis=1)
    for j in range(17):
        if j == CHIN:
            continue
        xj, yj, zj = mean[kp[j]]
        side = 1.0 if xj > 0 else -1.0
        ax = side * mean[:, 0]
        behind = 0.3 if (j <= 4 or j >= 12) else 0.05
        dy = np.abs(mean[:, 1] - yj)
        sel = np.flatnonzero((dy < band * half_w) & (ax >= 0.3 * abs(xj)) & (ax <= abs(xj) + 0.05 * half_w)
                             & (mean[:, 2] >= zj - behind * half_w))
        if sel.size == 0:
            continue
        theta = np.arctan2(ax[sel], mean[sel, 2] - z_axis)
        lo, hi = theta.min(), theta.max()
        bins = np.minimum(((theta - lo) / max(hi - lo, 1e-12) * (n_per_line - 1)).astype(np.int64), n_per_line - 2)
        chosen = []
        for b in range(n_per_line - 1):
            in_bin = sel[bins == b]
            if in_bin.size:
                chosen.append(int(in_bin[np.argmin(dy[in_bin])]))
        ids = [int(kp[j])] + [c for c in chosen if c != kp[j]]
        out[j, :len(ids)] = ids[:n_per_line]
    return out


class LandmarkFitter:
    """Precomputed data of one face model for :meth:`fit` (the landmark and contour vertices' bases).

    Build once per face model (``fit_landmarks`` caches one per model object).
    """

    def __init__(self, face_model: Any, n_per_line: int = 32) -> None:
        mean = np.asarray(face_model.mean)
        kp = np.asarray(face_model.keypoints, dtype=np.int64).reshape(-1)
        if kp.shape != (68,):
            raise ValueError(f"face model must have 68 keypoints, got shape {kp.shape}")
        self.keypoints = kp
        self.candidates = contour_candidates(face_model, n_per_line)  # (17, L)
        self.side = np.sign(mean[kp[:17], 0]).astype(np.float64)
        self.side[CHIN] = 0.0
        ids = np.unique(np.concatenate([kp, self.candidates.reshape(-1)]))
        self._ids = ids
        self._local = {int(v): i for i, v in enumerate(ids)}
        s_std = np.asarray(face_model.shape_std, dtype=np.float64).reshape(-1)
        e_std = np.asarray(face_model.exp_std, dtype=np.float64).reshape(-1)
        self.n_shape, self.n_exp = s_std.size, e_std.size
        self.mean = mean[ids].astype(np.float64)                                                  # (M, 3)
        basis = np.concatenate([np.asarray(face_model.shape_basis)[ids].astype(np.float64) * s_std,
                                np.asarray(face_model.exp_basis)[ids].astype(np.float64) * e_std], axis=2)
        self.basis = basis                                                                         # (M, 3, K)
        self.kp_local = np.array([self._local[int(v)] for v in kp])
        self.cand_local = np.vectorize(lambda v: self._local[int(v)])(self.candidates)            # (17, L)
        self.scale_ref = float(np.linalg.norm(mean[kp[16]] - mean[kp[0]]))

    # ------------------------------------------------------------------------------------------ helpers
    def _vertices(self, coeffs: np.ndarray) -> np.ndarray:
        return self.mean + self.basis @ coeffs

    def _march(self, verts: np.ndarray, rot: np.ndarray, scale: float) -> np.ndarray:
        """Local ids (68,) with the jaw points moved to the current silhouette."""
        ids = self.kp_local.copy()
        cand = verts[self.cand_local]                        # (17, L, 3)
        # image direction (y-up frame) of the model's +x axis; outermost = extreme along it on that side
        ex = rot[:2, 0]
        ex = ex / max(np.linalg.norm(ex), 1e-12)
        proj = (cand @ rot[:2].T) @ ex                       # (17, L)
        best = np.argmax(proj * self.side[:, None], axis=1)
        ids[:17] = self.cand_local[np.arange(17), best]
        ids[CHIN] = self.kp_local[CHIN]
        return ids

    # ---------------------------------------------------------------------------------------------- fit
    def fit(
        self,
        landmarks: np.ndarray,
        image_height: float,
        *,
        convention: Convention = "3d",
        jaw: JawMode | None = None,
        init_pose: np.ndarray | None = None,
        init_shape: np.ndarray | None = None,
        init_exp: np.ndarray | None = None,
        point_weights: np.ndarray | None = None,
        n_iter: int = 30,
        sigma: float = 0.01,
        shape_prior: float = 1.0,
        exp_prior: float = 1.0,
        robust: bool = True,
        tol: float = 1e-6,
    ) -> FitResult:
        """See :func:`fit_landmarks` (same arguments, without ``face_model``)."""
        y_img = np.asarray(landmarks, dtype=np.float64)
        if y_img.ndim != 2 or y_img.shape[0] != 68 or y_img.shape[1] < 2:
            raise ValueError(f"landmarks must be (68, 2) image pixels (extra columns ignored), got shape {y_img.shape}")
        y_img = y_img[:, :2]
        if not np.isfinite(float(image_height)) or image_height <= 0:
            raise ValueError(f"image_height must be a positive number of pixels, got {image_height}")
        if convention not in ("3d", "2d", "inner"):
            raise ValueError(f"convention must be '3d', '2d' or 'inner', got {convention!r}")
        if jaw is None:
            jaw = {"3d": "fixed", "2d": "march", "inner": "drop"}[convention]
        if jaw not in ("fixed", "march", "drop"):
            raise ValueError(f"jaw must be 'fixed', 'march' or 'drop', got {jaw!r}")
        used = np.ones(68, dtype=bool)
        if jaw == "drop":
            used[:17] = False
        pw = np.ones(68) if point_weights is None else np.asarray(point_weights, dtype=np.float64).reshape(-1)
        if pw.shape != (68,):
            raise ValueError(f"point_weights must be (68,), got {pw.shape}")
        finite = np.isfinite(y_img).all(axis=1)
        used &= finite & (pw > 0)
        if used.sum() < 6:
            raise ValueError(f"need at least 6 usable landmarks, got {int(used.sum())}")
        pw = np.where(used, pw, 0.0)
        y = np.where(used[:, None], y_img, 0.0)
        y = flip_y_points(y, image_height)                   # y-up frame: q = s·R[:2]·v + t
        box = y[used].max(axis=0) - y[used].min(axis=0)
        d = float(np.sqrt(max(box[0], 1e-6) * max(box[1], 1e-6)))
        ks, ke = self.n_shape, self.n_exp
        coeffs = np.zeros(ks + ke)
        if init_shape is not None:
            coeffs[:ks] = _coeff_vector(init_shape, ks, "init_shape")
        if init_exp is not None:
            coeffs[ks:] = _coeff_vector(init_exp, ke, "init_exp")
        tz = 0.0
        verts = self._vertices(coeffs)
        if init_pose is not None:
            p = np.asarray(init_pose, dtype=np.float64).reshape(-1)
            if p.shape != (7,) or not np.isfinite(p).all():
                raise ValueError(f"init_pose must be a finite Pose_Para (7,), got {p}")
            rot, t, scale, tz = pose_para_to_matrix(*p[:3]), p[3:5].copy(), float(p[6]), float(p[5])
            if scale <= 0:
                raise ValueError(f"init_pose scale must be > 0, got {scale}")
        else:
            rot, t, scale = _affine_pose(verts[self.kp_local], y, pw * used)
        prior = np.concatenate([np.full(ks, shape_prior), np.full(ke, exp_prior)])
        inv_var = 1.0 / (sigma * d) ** 2
        mu = 1e-3
        weights = pw.copy()
        ids = self.kp_local.copy()
        converged = False
        it = 0
        for it in range(1, n_iter + 1):
            verts = self._vertices(coeffs)
            if jaw == "march":
                ids = self._march(verts, rot, scale)
            res = (verts[ids] @ rot[:2].T) * scale + t - y    # (68, 2)
            if robust:
                weights = pw * _geman_mcclure(np.linalg.norm(res, axis=1) / d, used)
            w = np.where(used, weights, 0.0) * inv_var
            energy = _energy(res, w, coeffs, prior)
            jac = self._jacobian(verts[ids], ids, rot, scale)   # (68, 2, P)
            jw = jac * w[:, None, None]
            npar = jac.shape[2]
            hess = jw.reshape(-1, npar).T @ jac.reshape(-1, npar)
            grad = jw.reshape(-1, npar).T @ res.reshape(-1)
            npose = 6
            hess[npose:, npose:] += np.diag(prior)
            grad[npose:] += prior * coeffs
            step_ok = False
            for _ in range(8):
                a = hess + mu * np.diag(np.diag(hess) + 1e-9)
                try:
                    delta = -np.linalg.solve(a, grad)
                except np.linalg.LinAlgError:
                    mu *= 10
                    continue
                rot_n, t_n, scale_n, coeffs_n = _apply_step(rot, t, scale, coeffs, delta)
                v_n = self.mean[ids] + self.basis[ids] @ coeffs_n
                res_n = (v_n @ rot_n[:2].T) * scale_n + t_n - y
                if _energy(res_n, w, coeffs_n, prior) <= energy:
                    rot, t, scale, coeffs = rot_n, t_n, scale_n, coeffs_n
                    mu = max(mu / 3, 1e-7)
                    step_ok = True
                    break
                mu *= 10
            if not step_ok or np.max(np.abs(delta)) < tol:
                converged = True
                break
        verts = self._vertices(coeffs)
        if jaw == "march":
            ids = self._march(verts, rot, scale)
        q = (verts[ids] @ rot[:2].T) * scale + t
        err = np.linalg.norm(q - y, axis=1)
        if robust:
            weights = pw * _geman_mcclure(err / d, used)
        q_img = flip_y_points(q, image_height)
        angles = matrix_to_pose_para(rot)
        pose = np.array([angles[0], angles[1], angles[2], t[0], t[1], tz, scale])
        if not (np.isfinite(pose).all() and np.isfinite(coeffs).all()):
            raise FloatingPointError("landmark fit diverged to non-finite values")
        return FitResult(
            pose_para=pose,
            shape=coeffs[:ks].copy(),
            exp=coeffs[ks:].copy(),
            residual_px=float(err[used].mean()),
            n_iter=it,
            inlier_weights=np.where(used, np.clip(weights, 0.0, 1.0), 0.0),
            landmarks=q_img,
            vertex_ids=self._ids[ids],
            converged=converged,
        )

    def _jacobian(self, v: np.ndarray, ids: np.ndarray, rot: np.ndarray, scale: float) -> np.ndarray:
        """``(68, 2, 6 + K)`` d q / d [ω (3), t (2), log s, α̃, β̃] at the current parameters."""
        n = v.shape[0]
        u = v @ rot.T                                          # rotated, (n, 3)
        jac = np.zeros((n, 2, 6 + self.basis.shape[2]))
        # left increment R ← exp([ω]×) R: d(ω × u)/dω = −[u]×; rows x and y of −[u]×:
        #   x: [0, u_z, −u_y], y: [−u_z, 0, u_x]
        jac[:, 0, 0:3] = scale * np.stack([np.zeros(n), u[:, 2], -u[:, 1]], axis=1)
        jac[:, 1, 0:3] = scale * np.stack([-u[:, 2], np.zeros(n), u[:, 0]], axis=1)
        jac[:, 0, 3] = 1.0
        jac[:, 1, 4] = 1.0
        jac[:, :, 5] = scale * u[:, :2]
        jac[:, :, 6:] = np.matmul(scale * rot[:2], self.basis[ids])
        return jac


def _coeff_vector(c, k: int, name: str) -> np.ndarray:
    a = np.asarray(c, dtype=np.float64).reshape(-1)
    if a.shape[0] > k or not np.isfinite(a).all():
        raise ValueError(f"{name} must be at most {k} finite normalised coefficients, got shape {a.shape}")
    out = np.zeros(k)
    out[:a.shape[0]] = a
    return out


def _energy(res: np.ndarray, w: np.ndarray, coeffs: np.ndarray, prior: np.ndarray) -> float:
    return float(np.sum(w * np.sum(res * res, axis=1)) + np.sum(prior * coeffs * coeffs))


def _geman_mcclure(r: np.ndarray, used: np.ndarray) -> np.ndarray:
    """IRLS weights ``1 / (1 + (r/c)²)²`` with a scale ``c`` from the median residual (fractions of d)."""
    med = np.median(r[used]) if used.any() else 0.0
    c = max(_GM_FLOOR, _GM_MAD_K * 1.4826 * med)
    return 1.0 / (1.0 + (r / c) ** 2) ** 2


def _rodrigues(w: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(w))
    k = np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])
    if theta < 1e-12:
        return np.eye(3) + k
    k /= theta
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)


def _apply_step(rot, t, scale, coeffs, delta):
    rot_n = _rodrigues(delta[0:3]) @ rot
    return rot_n, t + delta[3:5], scale * float(np.exp(np.clip(delta[5], -1.0, 1.0))), coeffs + delta[6:]


def _affine_pose(x3: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Scaled-orthographic pose from a weighted affine fit ``y ≈ A·x + t`` projected to ``s·R[:2]``.

    x3: ``(n, 3)`` model points; y: ``(n, 2)`` y-up image points; w: ``(n,)`` weights ≥ 0.
    Returns (proper rotation (3, 3), t (2,), s).
    """
    sw = w / w.sum()
    mx = sw @ x3
    my = sw @ y
    xc, yc = x3 - mx, y - my
    cov = (xc * sw[:, None]).T @ xc                              # (3, 3)
    cross = (yc * sw[:, None]).T @ xc                            # (2, 3)
    a = cross @ np.linalg.pinv(cov + 1e-12 * np.trace(cov) * np.eye(3))
    u, sv, vt = np.linalg.svd(a, full_matrices=False)          # (2,2), (2,), (2,3)
    r2 = u @ vt
    rot = np.vstack([r2, np.cross(r2[0], r2[1])])
    scale = float(sv.mean())
    t = my - scale * (rot[:2] @ mx)
    return rot, t, scale


# ------------------------------------------------------------------------------------------- public API

_FITTERS: "weakref.WeakKeyDictionary[Any, LandmarkFitter]" = weakref.WeakKeyDictionary()


def get_fitter(face_model: Any) -> LandmarkFitter:
    """The cached :class:`LandmarkFitter` of ``face_model`` (built on first use)."""
    try:
        fitter = _FITTERS.get(face_model)
    except TypeError:  # not weak-referenceable: no cache
        return LandmarkFitter(face_model)
    if fitter is None:
        fitter = LandmarkFitter(face_model)
        _FITTERS[face_model] = fitter
    return fitter


def fit_landmarks(
    face_model: Any,
    landmarks: np.ndarray,
    image_height: float,
    *,
    convention: Convention = "3d",
    jaw: JawMode | None = None,
    init_pose: np.ndarray | None = None,
    init_shape: np.ndarray | None = None,
    init_exp: np.ndarray | None = None,
    point_weights: np.ndarray | None = None,
    n_iter: int = 30,
    sigma: float = 0.01,
    shape_prior: float = 1.0,
    exp_prior: float = 1.0,
    robust: bool = True,
) -> FitResult:
    """Fit pose, shape and expression to 68 landmarks (orthographic ``Pose_Para`` camera).

    Args:
        face_model: a :class:`dsfnet.facemodel.FaceModel` (or an object with ``mean``, ``shape_basis``,
            ``exp_basis``, ``shape_std``, ``exp_std``, ``keypoints``).
        landmarks: ``(68, 2)`` (or ``(68, 3)``, z ignored) image pixels, x right, y down. Non-finite rows are
            ignored.
        image_height: ``H`` in pixels (enters ``Pose_Para``'s ``ty``).
        convention: ``"3d"`` fixed landmark vertices, ``"2d"`` silhouette jaw (marching), ``"inner"`` the 51
            inner points only (module docstring).
        jaw: override of the jaw handling: ``"fixed"``, ``"march"`` or ``"drop"``.
        init_pose: ``(7,)`` ``Pose_Para`` to start from (e.g. the teacher's); default: a closed-form
            scaled-orthographic fit of the mean shape.
        init_shape, init_exp: normalised start coefficients (default zeros).
        point_weights: ``(68,)`` non-negative per-point weights (0 = ignore).
        n_iter: maximum iterations.
        sigma: expected landmark noise as a fraction of √(w·h) of the landmark box (balances the priors).
        shape_prior, exp_prior: weights of ``‖α̃‖²`` and ``‖β̃‖²``.
        robust: Geman-McClure reweighting against a few bad points.
    Returns:
        :class:`FitResult` (normalised coefficients, ``Pose_Para`` in radians).
    Raises:
        ValueError: bad shapes or options, fewer than 6 usable points.
    """
    return get_fitter(face_model).fit(
        landmarks, image_height, convention=convention, jaw=jaw, init_pose=init_pose, init_shape=init_shape,
        init_exp=init_exp, point_weights=point_weights, n_iter=n_iter, sigma=sigma, shape_prior=shape_prior,
        exp_prior=exp_prior, robust=robust)


def fit_landmarks_batch(face_model: Any, landmarks: np.ndarray, image_heights, **kwargs) -> list[FitResult]:
    """:func:`fit_landmarks` over ``(B, 68, 2)`` landmarks and ``(B,)`` heights (or one height); extra keyword
    arguments apply to every face (``init_pose`` etc. may be ``(B, ...)`` arrays)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1] != 68:
        raise ValueError(f"landmarks must be (B, 68, 2), got {lm.shape}")
    heights = np.broadcast_to(np.asarray(image_heights, dtype=np.float64), (lm.shape[0],))
    per_face = {k: v for k, v in kwargs.items() if k in ("init_pose", "init_shape", "init_exp", "point_weights") and v is not None}
    common = {k: v for k, v in kwargs.items() if k not in per_face}
    fitter = get_fitter(face_model)
    return [fitter.fit(lm[b], float(heights[b]), **common, **{k: np.asarray(v)[b] for k, v in per_face.items()})
            for b in range(lm.shape[0])]


def landmark_nme(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean point error of ``(68, 2)`` points over √(w·h) of the target's bounding box."""
    t = np.asarray(target, dtype=np.float64)[:, :2]
    p = np.asarray(pred, dtype=np.float64)[:, :2]
    wh = t.max(axis=0) - t.min(axis=0)
    return float(np.linalg.norm(p - t, axis=1).mean() / np.sqrt(wh[0] * wh[1]))


# ------------------------------------------------------------------------------------------- landmark files

def load_landmarks(path) -> np.ndarray:
    """Read 68 landmarks (image pixels, x right, y down) from a file.

    Formats (by suffix): ``.json`` (``[[x, y], ...]`` or ``{"landmarks": [...]}``/``{"pts68": [...]}``),
    ``.pts`` / ``.txt`` (iBUG ``.pts``: ``version``/``n_points`` header and ``{ ... }`` braces, or plain
    ``x y`` rows), ``.npy`` (``(68, 2|3)`` or ``(2|3, 68)``), ``.mat`` (``pt3d_68`` (3, 68), else ``pt2d``
    (2, 68)).

    Returns:
        ``(68, 2)`` float64.
    Raises:
        FileNotFoundError, ValueError (unknown suffix, not 68 points).
    """
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"landmark file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, dict):
            for key in ("landmarks", "pts68", "points"):
                if key in data:
                    data = data[key]
                    break
        arr = np.asarray(data, dtype=np.float64)
    elif suffix in (".pts", ".txt"):
        rows = []
        for line in p.read_text().splitlines():
            parts = line.replace(",", " ").split()
            if not parts or parts[0] in ("{", "}") or ":" in line:
                continue
            try:
                rows.append([float(v) for v in parts[:3]])
            except ValueError:
                continue
        arr = np.asarray(rows, dtype=np.float64) if rows else np.zeros((0, 2))
    elif suffix == ".npy":
        arr = np.asarray(np.load(p, allow_pickle=False), dtype=np.float64)
    elif suffix == ".mat":
        import scipy.io

        mat = scipy.io.loadmat(str(p))
        key = "pt3d_68" if "pt3d_68" in mat else "pt2d" if "pt2d" in mat else None
        if key is None:
            raise ValueError(f"{p}: no 'pt3d_68' or 'pt2d' in the .mat (has {sorted(k for k in mat if not k.startswith('__'))})")
        arr = np.asarray(mat[key], dtype=np.float64)
    else:
        raise ValueError(f"{p}: unsupported landmark file; expected .json, .pts, .txt, .npy or .mat")
    if arr.ndim == 2 and arr.shape[0] in (2, 3) and arr.shape[1] == 68:
        arr = arr.T
    if arr.ndim != 2 or arr.shape[0] != 68 or arr.shape[1] < 2:
        raise ValueError(f"{p}: expected 68 points (68, 2|3), got an array of shape {arr.shape}")
    return arr[:, :2].copy()
