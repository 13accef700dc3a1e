"""An analytic stand-in face model and UV layout for tests and benchmarks (no assets needed; not shipped).

The surface is a smooth face-like dome with a nose bump, defined at any *fractional* UV cell, so tests can
render exact image-space ground truth (which :mod:`testing.face_model`'s mesh, going through the product's UV
unwrap, cannot give), with the real model's coefficient counts (Ks = 40, Ke = 10). It has the attribute names of ``dsfnet.facemodel``'s ``FaceModel`` /
``UVLayout`` that :class:`~dsfnet.model.dsfnet.DSFNet` reads: ``size``, ``face_mask``, ``covered``,
``weight_mask``, ``kpt_cells``, ``keypoints``/``vertex_cells``/``vertex_cell_weights`` (landmarks only) and
``basis_maps(face_model)`` (sm units, bases per unit normalised coefficient).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_HALF_WIDTH = 1.35  # sm units: the face spans about 2.7 (1.8e5 model units × 1.5e-5)


@dataclass(frozen=True)
class SyntheticFaceModel:
    """Counts and stds of the stand-in 3DMM (the stds are 1: coefficients are already normalised)."""

    n_shape: int = 40
    n_exp: int = 10
    fingerprint: str = "synthetic-face-v1"
    shape_std: np.ndarray = field(default_factory=lambda: np.ones(40, np.float32))
    exp_std: np.ndarray = field(default_factory=lambda: np.ones(10, np.float32))


def _xy(rows: np.ndarray, cols: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    u = cols / (size - 1)
    v = 1.0 - rows / (size - 1)
    return (u - 0.5) * 2 * _HALF_WIDTH * 1.15, (v - 0.5) * 2 * _HALF_WIDTH * 1.15


def surface(rows: np.ndarray, cols: np.ndarray, size: int, shape: np.ndarray | None = None,
            exp: np.ndarray | None = None, n_shape: int = 40, n_exp: int = 10) -> np.ndarray:
    """Shape-map position (sm units, model frame) at fractional UV cells.

    Args:
        rows, cols: ``(*,)`` fractional cell coordinates of an ``size × size`` map.
        shape, exp: normalised coefficients ``(n_shape,)``, ``(n_exp,)`` (zeros if None).
    Returns:
        ``(*, 3)`` float64.
    """
    x, y = _xy(np.asarray(rows, np.float64), np.asarray(cols, np.float64), size)
    r2 = (x / 1.5) ** 2 + (y / 1.7) ** 2
    z = 1.2 * np.sqrt(np.clip(1.0 - r2, 0.0, None) + 0.01) + 0.8 * np.exp(-(x ** 2 + y ** 2) / 0.08)
    base = np.stack([x, y, z], axis=-1)
    coeffs = np.concatenate([np.zeros(n_shape) if shape is None else np.asarray(shape, np.float64),
                             np.zeros(n_exp) if exp is None else np.asarray(exp, np.float64)])
    for k, a in enumerate(coeffs):
        if a == 0.0:
            continue
        base = base + a * _basis_fn(k, x, y)
    return base


def _basis_fn(k: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth basis function ``k`` (sm units per unit coefficient): ``(*, 3)``."""
    fx, fy, ch = 0.6 + 0.37 * (k % 5), 0.5 + 0.29 * (k % 7), k % 3
    val = 0.02 * np.cos(fx * x + 0.3 * k) * np.sin(fy * y + 0.7 * k + 0.5)
    out = np.zeros(x.shape + (3,))
    out[..., ch] = val
    out[..., (ch + 1) % 3] = 0.5 * val
    return out


class SyntheticLayout:
    """UV layout of the analytic face at ``size × size`` (see module docstring)."""

    def __init__(self, size: int, n_shape: int = 40, n_exp: int = 10) -> None:
        self.size = size
        self.n_shape, self.n_exp = n_shape, n_exp
        rows, cols = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
        self.face_mask = self.in_face(rows, cols)
        self.covered = np.ones((size, size), dtype=bool)
        self.weight_mask = self.face_mask.astype(np.float32) * 3.0
        c = (size - 1) // 2
        rng = np.random.default_rng(0)
        face_cells = np.argwhere(self.face_mask)
        kpts = face_cells[rng.choice(len(face_cells), 68, replace=False)]
        kpts[30] = (c, c)  # nose tip at the bump's peak
        self.kpt_cells = kpts.astype(np.int64)
        # the 68 landmark "vertices" a quarter cell down and half a cell right of their cells (the nose tip exactly
        # on its cell), read bilinearly like a real layout's: vertex_cells / vertex_cell_weights (68, 4)
        self.keypoints = np.arange(68)
        r, c = self.kpt_cells[:, 0], np.minimum(self.kpt_cells[:, 1], size - 2)
        self.vertex_cells = np.stack([r * size + c, r * size + c + 1, (r + 1) * size + c, (r + 1) * size + c + 1], 1)
        self.vertex_cells = np.minimum(self.vertex_cells, size * size - 1)
        self.vertex_cell_weights = np.tile(np.array([0.375, 0.375, 0.125, 0.125], np.float32), (68, 1))
        self.vertex_cells[30] = self.kpt_cells[30, 0] * size + self.kpt_cells[30, 1]
        self.vertex_cell_weights[30] = [1.0, 0.0, 0.0, 0.0]

    def landmarks_from_map(self, maps: np.ndarray) -> np.ndarray:
        """``(..., C, U, U)`` → ``(..., 68, C)``: the landmarks read bilinearly (numpy)."""
        flat = np.asarray(maps).reshape(*maps.shape[:-2], -1)[..., self.vertex_cells]  # (..., C, 68, 4)
        return np.swapaxes((flat * self.vertex_cell_weights).sum(-1), -1, -2)

    def in_face(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Continuous face-mask test at fractional cells."""
        x, y = _xy(rows, cols, self.size)
        return (x / _HALF_WIDTH) ** 2 + (y / (_HALF_WIDTH * 1.05)) ** 2 < 1.0

    def basis_maps(self, face_model: object | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean (3,U,U), shape (Ks,3,U,U), exp (Ke,3,U,U))`` float32, sm units."""
        u = self.size
        rows, cols = np.meshgrid(np.arange(u, dtype=np.float64), np.arange(u, dtype=np.float64), indexing="ij")
        mean = surface(rows, cols, u, n_shape=self.n_shape, n_exp=self.n_exp)
        x, y = _xy(rows, cols, u)
        bases = np.stack([_basis_fn(k, x, y) for k in range(self.n_shape + self.n_exp)])  # (K, U, U, 3)
        bases = bases.transpose(0, 3, 1, 2).astype(np.float32)
        return mean.transpose(2, 0, 1).astype(np.float32), bases[: self.n_shape], bases[self.n_shape:]


def synthetic_face(uv_size: int, n_shape: int = 40, n_exp: int = 10) -> tuple[SyntheticFaceModel, SyntheticLayout]:
    """A matching ``(face_model, layout)`` pair for ``create_model(..., face_model=fm, layout=layout)``."""
    fm = SyntheticFaceModel(n_shape, n_exp, shape_std=np.ones(n_shape, np.float32), exp_std=np.ones(n_exp, np.float32))
    return fm, SyntheticLayout(uv_size, n_shape, n_exp)
