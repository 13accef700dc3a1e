"""The synthetic face model of the tests and benchmarks (no download, builds in milliseconds; not shipped).

:func:`toy_face_model` is a regular grid over (angle θ around the vertical axis, height y): a half
ellipsoid "face" (x = a·sin θ·w(y), z = c·cos θ·w(y)) with a nose ridge pushed out along the radial
direction, in the model frame (BFM-like units: about 1.5e5 wide, y up, +z toward the camera, the nose tip
has the largest z). It has smooth random bases (Ks = 6, Ke = 3), 68 landmarks in iBUG 300-W order placed
at plausible face positions (exactly mirror-symmetric, see ``FLIP_68``), and grid triangles
(counter-clockwise seen from +z). Its UV layout goes through the same code as the real model
(:func:`toy_face` returns both).
"""
from __future__ import annotations

import numpy as np

from dsfnet.facemodel.model import FaceModel, make_face_model
from dsfnet.facemodel.uv import FLIP_68, UVLayout, get_uv_layout

__all__ = ["toy_face", "toy_face_model"]

N_THETA, N_Y = 57, 52  # odd N_THETA: a column at θ = 0; y steps of 4e3 put the nose tip on the grid
THETA_MAX_DEG = 100.0
Y_MIN, Y_MAX = -1.06e5, 0.98e5
HALF_WIDTH, DEPTH, Y_ROUND = 7.5e4, 8.5e4, 1.4e5

# (θ degrees, y) of the landmarks on the subject's right (θ < 0) and on the midline; the rest are mirrored.
_JAW = [(-80.0 * (1.0 - i / 8), 1.5e4 - 1.0e5 * np.sin(np.pi / 16 * i)) for i in range(9)]  # 0..8
_RIGHT = {
    **{i: _JAW[i] for i in range(9)},
    17: (-55, 4.0e4), 18: (-45, 4.6e4), 19: (-33, 4.8e4), 20: (-21, 4.6e4), 21: (-9, 4.2e4),
    27: (0, 3.0e4), 28: (0, 2.0e4), 29: (0, 1.0e4), 30: (0, -2.0e3),
    31: (-12, -1.7e4), 32: (-6, -1.9e4), 33: (0, -2.0e4),
    36: (-44, 2.5e4), 37: (-37, 2.9e4), 38: (-29, 2.9e4), 39: (-22, 2.5e4), 40: (-29, 2.15e4), 41: (-37, 2.15e4),
    48: (-22, -4.7e4), 49: (-14, -4.1e4), 50: (-6, -3.8e4), 51: (0, -3.9e4),
    57: (0, -5.7e4), 58: (-6, -5.6e4), 59: (-14, -5.3e4),
    60: (-18, -4.7e4), 61: (-6, -4.4e4), 62: (0, -4.4e4), 66: (0, -5.0e4), 67: (-6, -5.0e4),
}


def _landmark_params() -> np.ndarray:
    """(68, 2) (θ degrees, y) of the 68 landmarks."""
    out = np.full((68, 2), np.nan)
    for i, (t, y) in _RIGHT.items():
        out[i] = (t, y)
    for i in range(68):
        if np.isnan(out[i, 0]):
            t, y = out[FLIP_68[i]]
            out[i] = (-t, y)
    return out


def toy_face_model(seed: int = 0) -> FaceModel:
    """A 2,964-vertex synthetic face model (``N_THETA × N_Y`` grid), deterministic for a given seed.

    Returns:
        :class:`FaceModel` named ``"toy"`` with Ks = 6, Ke = 3, model frame and BFM-like units.

    >>> m = toy_face_model(); (m.n_vertices, m.n_shape, m.n_exp)
    (2964, 6, 3)
    """
    rng = np.random.default_rng(seed)
    theta = np.radians(np.linspace(-THETA_MAX_DEG, THETA_MAX_DEG, N_THETA))
    ys = np.linspace(Y_MIN, Y_MAX, N_Y)
    tt, yy = np.meshgrid(theta, ys, indexing="xy")  # (N_Y, N_THETA): vertex id = j * N_THETA + i
    tt, yy = tt.reshape(-1), yy.reshape(-1)
    w = np.sqrt(1.0 - (yy / Y_ROUND) ** 2)
    radial = np.stack([np.sin(tt), np.zeros_like(tt), np.cos(tt)], axis=1)
    # nose ridge: grows from the bridge (y = 3.2e4) to the tip (y = -2e3), then falls off quickly below it
    ridge = np.where(yy >= -2.0e3, np.clip((3.2e4 - yy) / 3.4e4, 0.0, 1.0), np.exp(-((yy + 2.0e3) / 8.0e3) ** 2))
    nose = 3.0e4 * ridge * np.exp(-(tt / 0.12) ** 2)
    mean = np.stack([HALF_WIDTH * np.sin(tt) * w, yy, DEPTH * np.cos(tt) * w], axis=1) + nose[:, None] * radial

    # smooth random bases on normalised parameters
    s, t = tt / np.radians(THETA_MAX_DEG), yy / Y_MAX
    feats = np.stack([np.ones_like(s), s, t, s * s, s * t, t * t, np.cos(np.pi * s), np.cos(np.pi * t)], axis=1)

    def field(k: int, local: np.ndarray | None) -> np.ndarray:
        out = np.empty((len(mean), 3, k))
        for c in range(k):
            f = feats @ rng.normal(size=feats.shape[1])
            if local is not None:
                f = f * local[c % len(local)]
            f /= np.abs(f).max()
            direction = radial + 0.3 * rng.normal(size=3)
            out[:, :, c] = f[:, None] * direction
        return out

    shape_std = 1.0e4 * np.array([3.0, 2.5, 2.0, 1.5, 1.2, 1.0])
    shape_basis = 0.5 * field(6, None)
    mouth = np.exp(-((tt / 0.35) ** 2) - ((yy + 4.7e4) / 1.5e4) ** 2)
    eyes = np.exp(-((np.abs(tt) - np.radians(33)) / 0.2) ** 2 - ((yy - 2.5e4) / 1.0e4) ** 2)
    exp_std = np.array([1.5, 1.0, 0.5])
    exp_basis = 4000.0 * field(3, [mouth, eyes, mouth + eyes])

    lm = _landmark_params()
    i = np.rint((lm[:, 0] + THETA_MAX_DEG) / (2 * THETA_MAX_DEG) * (N_THETA - 1)).astype(np.int64)
    j = np.rint((lm[:, 1] - Y_MIN) / (Y_MAX - Y_MIN) * (N_Y - 1)).astype(np.int64)
    keypoints = j * N_THETA + i
    if len(np.unique(keypoints)) != 68:  # pragma: no cover - guards edits of the tables above
        raise AssertionError("toy landmarks collide on the grid")

    ids = np.arange(N_THETA * N_Y).reshape(N_Y, N_THETA)  # rows: y up the array index
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
    # (i, j), (i+1, j), (i, j+1) is counter-clockwise in (θ, y), i.e. seen from +z
    triangles = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([b, d, c], -1).reshape(-1, 3)])
    return make_face_model("toy", mean, shape_basis, exp_basis, shape_std, exp_std, keypoints, triangles)


def toy_face(uv_size: int, seed: int = 0) -> tuple[FaceModel, UVLayout]:
    """``(toy_face_model(seed), its UVLayout at uv_size)`` for ``create_model(..., face_model=fm, layout=layout)``.

    The layout is built in memory (no disk cache), by the product's ``get_uv_layout``.
    """
    fm = toy_face_model(seed)
    return fm, get_uv_layout(fm, uv_size, disk_cache=False)
