"""The fit itself (:class:`LandmarkFitter`): robust Levenberg-Marquardt on pose, shape and expression, with an
analytic Jacobian (:mod:`dsfnet.data.fitting` states the energy and frames)."""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsfnet.data.fitting.contour import contour_candidates
from dsfnet.data.fitting.options import CHIN, FitOptions, FitResult, JawMode
from dsfnet.geometry import flip_y_points, matrix_to_pose_para, pose_para_to_matrix

_GM_FLOOR = 0.02   # floor of the Geman-McClure scale, fraction of the face size d
_GM_MAD_K = 3.0    # scale = max(floor, K · 1.4826 · median residual)


@dataclass(frozen=True)
class _Target:
    """The landmarks to fit, in the fit's y-up frame (``q = s·R[:2]·v + t``).

    ``y`` ``(68, 2)`` px (0 where unused), ``weights`` ``(68,)`` point weights (0 where unused), ``used`` ``(68,)``,
    ``size`` = ``d`` = √(w·h) of the used points' box (px), ``height`` = ``H`` (px).
    """

    y: np.ndarray
    weights: np.ndarray
    used: np.ndarray
    size: float
    height: float


@dataclass(frozen=True)
class _State:
    """The fitted parameters: rotation ``(3, 3)``, 2D translation (px, y-up), scale, normalised coefficients."""

    rot: np.ndarray
    t: np.ndarray
    scale: float
    coeffs: np.ndarray


def _target(landmarks: np.ndarray, image_height: float, point_weights: np.ndarray | None,
            drop_jaw: bool) -> _Target:
    """Check the landmarks, height and point weights and bring them into the fit's frame (:class:`_Target`)."""
    y_img = np.asarray(landmarks, dtype=np.float64)
    if y_img.ndim != 2 or y_img.shape[0] != 68 or y_img.shape[1] < 2:
        raise ValueError(f"landmarks must be (68, 2) image pixels (extra columns ignored), got shape {y_img.shape}")
    y_img = y_img[:, :2]
    if not np.isfinite(float(image_height)) or image_height <= 0:
        raise ValueError(f"image_height must be a positive number of pixels, got {image_height}")
    used = np.ones(68, dtype=bool)
    if drop_jaw:
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
    return _Target(y, pw, used, d, image_height)


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
        options: FitOptions = FitOptions(),
        *,
        init_pose: np.ndarray | None = None,
        init_shape: np.ndarray | None = None,
        init_exp: np.ndarray | None = None,
        point_weights: np.ndarray | None = None,
    ) -> FitResult:
        """See :func:`fit_landmarks` (the same arguments, without ``face_model``, with the options as a
        :class:`FitOptions`)."""
        jaw = options.jaw_mode
        target = _target(landmarks, image_height, point_weights, drop_jaw=jaw == "drop")
        state, tz = self._start(target, init_pose, init_shape, init_exp)
        prior = np.concatenate([np.full(self.n_shape, options.shape_prior), np.full(self.n_exp, options.exp_prior)])
        inv_var = 1.0 / (options.sigma * target.size) ** 2
        mu = 1e-3
        converged = False
        it = 0
        for it in range(1, options.n_iter + 1):
            verts = self._vertices(state.coeffs)
            ids = self._correspondences(verts, state, jaw)
            state, mu, done = self._step(state, verts, ids, target, prior, inv_var, mu, options)
            if done:
                converged = True
                break
        return self._result(state, tz, target, jaw, options.robust, it, converged)

    def _start(self, target: _Target, init_pose, init_shape, init_exp) -> tuple[_State, float]:
        """The starting state and ``tz`` (not observable: the initial pose's, else 0)."""
        ks, ke = self.n_shape, self.n_exp
        coeffs = np.zeros(ks + ke)
        if init_shape is not None:
            coeffs[:ks] = _coeff_vector(init_shape, ks, "init_shape")
        if init_exp is not None:
            coeffs[ks:] = _coeff_vector(init_exp, ke, "init_exp")
        if init_pose is None:
            verts = self._vertices(coeffs)
            rot, t, scale = _affine_pose(verts[self.kp_local], target.y, target.weights * target.used)
            return _State(rot, t, scale, coeffs), 0.0
        p = np.asarray(init_pose, dtype=np.float64).reshape(-1)
        if p.shape != (7,) or not np.isfinite(p).all():
            raise ValueError(f"init_pose must be a finite Pose_Para (7,), got {p}")
        rot, t, scale, tz = pose_para_to_matrix(*p[:3]), p[3:5].copy(), float(p[6]), float(p[5])
        if scale <= 0:
            raise ValueError(f"init_pose scale must be > 0, got {scale}")
        return _State(rot, t, scale, coeffs), tz

    def _correspondences(self, verts: np.ndarray, state: _State, jaw: JawMode) -> np.ndarray:
        """Local vertex ids ``(68,)`` of the landmarks for the current vertices ``(M, 3)``: the keypoints, with the
        jaw marched to the silhouette when ``jaw == "march"``."""
        if jaw == "march":
            return self._march(verts, state.rot, state.scale)
        return self.kp_local.copy()

    def _step(self, state: _State, verts: np.ndarray, ids: np.ndarray, target: _Target, prior: np.ndarray,
              inv_var: float, mu: float, options: FitOptions) -> tuple[_State, float, bool]:
        """One iteration: robust weights, then one Levenberg-Marquardt step (up to 8 damping increases).

        Returns the new state, the new damping ``mu`` and whether the fit has converged (no step lowered the
        energy, or the step was below ``options.tol``).
        """
        rot, t, scale, coeffs = state.rot, state.t, state.scale, state.coeffs
        res = (verts[ids] @ rot[:2].T) * scale + t - target.y    # (68, 2)
        weights = target.weights
        if options.robust:
            weights = target.weights * _geman_mcclure(np.linalg.norm(res, axis=1) / target.size, target.used)
        w = np.where(target.used, weights, 0.0) * inv_var
        energy = _energy(res, w, coeffs, prior)
        jac = self._jacobian(verts[ids], ids, rot, scale)   # (68, 2, P)
        jw = jac * w[:, None, None]
        npar = jac.shape[2]
        hess = jw.reshape(-1, npar).T @ jac.reshape(-1, npar)
        grad = jw.reshape(-1, npar).T @ res.reshape(-1)
        npose = 6
        hess[npose:, npose:] += np.diag(prior)
        grad[npose:] += prior * coeffs
        for _ in range(8):
            a = hess + mu * np.diag(np.diag(hess) + 1e-9)
            try:
                delta = -np.linalg.solve(a, grad)
            except np.linalg.LinAlgError:
                mu *= 10
                continue
            rot_n, t_n, scale_n, coeffs_n = _apply_step(rot, t, scale, coeffs, delta)
            v_n = self.mean[ids] + self.basis[ids] @ coeffs_n
            res_n = (v_n @ rot_n[:2].T) * scale_n + t_n - target.y
            if _energy(res_n, w, coeffs_n, prior) <= energy:
                mu = max(mu / 3, 1e-7)
                return _State(rot_n, t_n, scale_n, coeffs_n), mu, bool(np.max(np.abs(delta)) < options.tol)
            mu *= 10
        return state, mu, True

    def _result(self, state: _State, tz: float, target: _Target, jaw: JawMode, robust: bool, n_iter: int,
                converged: bool) -> FitResult:
        """The :class:`FitResult` of the final state (final correspondences, residuals and robust weights)."""
        rot, t, scale, coeffs = state.rot, state.t, state.scale, state.coeffs
        verts = self._vertices(coeffs)
        ids = self._correspondences(verts, state, jaw)
        q = (verts[ids] @ rot[:2].T) * scale + t
        err = np.linalg.norm(q - target.y, axis=1)
        weights = target.weights
        if robust:
            weights = target.weights * _geman_mcclure(err / target.size, target.used)
        q_img = flip_y_points(q, target.height)
        angles = matrix_to_pose_para(rot)
        pose = np.array([angles[0], angles[1], angles[2], t[0], t[1], tz, scale])
        if not (np.isfinite(pose).all() and np.isfinite(coeffs).all()):
            raise FloatingPointError("landmark fit diverged to non-finite values")
        ks = self.n_shape
        return FitResult(
            pose_para=pose,
            shape=coeffs[:ks].copy(),
            exp=coeffs[ks:].copy(),
            residual_px=float(err[target.used].mean()),
            n_iter=n_iter,
            inlier_weights=np.where(target.used, np.clip(weights, 0.0, 1.0), 0.0),
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
