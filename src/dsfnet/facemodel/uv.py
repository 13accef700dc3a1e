"""The UV layout of a face model: the grid built on its unwrap, its masks and mirror map, cached.

Conventions (``docs/CONVENTIONS.md``, section UV). Each vertex has ``uv ∈ [0, 1]²``, u to the right
(= the subject's left = +x), v up. For an ``S×S`` map a vertex sits at the continuous cell coordinates
``col = u·(S−1)``, ``row = (S−1)·(1 − v)`` (forehead at the top rows). A *UV cell* is ``(row, col)``; its
flat index is ``row·S + col``; cell centres are at integer ``(col, row)``. Maps are channel-first
``(..., C, S, S)``. *Shape-map units* are model units × ``dsfnet.geometry.posmap.SHAPE_MAP_SCALE``.

The unwrap and the mesh triangles are :mod:`dsfnet.facemodel.unwrap`'s. Every other rule that derives something
from the model is deterministic and written down here:

* **Face mask**: the cells whose centres are inside the face polygon (:func:`~dsfnet.facemodel.unwrap.face_polygon_uv`),
  grown by :data:`FACE_MASK_GROW` × its brow-to-chin height (so the jaw landmarks themselves are inside), and
  covered by the mesh. It spans forehead to chin and excludes ears and neck.
* **Weight mask** (the levels of SADRNet's UV loss weights: landmarks 16, eyes/nose/mouth 12, rest 3), with
  D = the distance in cells between landmark cells 36 and 45:
  16 within ``max(1, 0.025·D)`` cells of a landmark cell; 12 within ``0.12·D`` of an eye polygon
  (36..41, 42..47), within ``0.08·D`` of the nose polygon (27, 31..35) or within ``0.08·D`` of the outer
  lip polygon (48..59); 3 elsewhere in the face mask; 0 off the face mask.
* **Mirror** (``flip_perm``): the mean face is nearly symmetric about the plane ``x = xs``, with ``xs`` the
  mean x of the midline landmarks (8, 27..30, 33, 51, 57, 62, 66). Each covered cell's mean-shape point
  ``(x, y, z)`` is mirrored to ``(2·xs − x, y, z)`` and sent to the covered cell whose mean-shape point is
  nearest in 3D. Uncovered cells map to themselves.
* **Resampling** between vertices and maps: :class:`~dsfnet.facemodel.layout.UVLayout`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from dsfnet.facemodel import assets
from dsfnet.facemodel.layout import LAYOUT_ARRAYS, UVLayout, assemble_layout
from dsfnet.facemodel.unwrap import LAYOUT_VERSION, derive_triangles_cached, face_polygon_uv, points_in_polygon, vertex_uv

if TYPE_CHECKING:  # pragma: no cover
    from dsfnet.facemodel.model import FaceModel

#: the face mask grows the polygon by this fraction of the brow-to-chin height
FACE_MASK_GROW = 0.03
#: weights of the UV loss mask
WEIGHT_LANDMARK, WEIGHT_FEATURE, WEIGHT_FACE = 16.0, 12.0, 3.0

#: 68-point mirror partners in iBUG 300-W order: landmark i of a mirrored face is landmark FLIP_68[i]
FLIP_68 = np.array(
    list(range(16, -1, -1))                      # jaw 0..16
    + list(range(26, 16, -1))                    # brows 17..26
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]       # nose bridge, nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65],          # inner lip
    dtype=np.int64,
)
FLIP_68.setflags(write=False)

_MIDLINE_68 = np.array([8, 27, 28, 29, 30, 33, 51, 57, 62, 66])


def uv_to_cells(uv: np.ndarray, size: int) -> np.ndarray:
    """``(..., 2)`` (u, v) -> ``(..., 2)`` float cell coordinates ``(col, row)`` = ``(u·(S−1), (S−1)·(1−v))``."""
    uv = np.asarray(uv, dtype=np.float64)
    return np.stack([uv[..., 0] * (size - 1), (1.0 - uv[..., 1]) * (size - 1)], axis=-1)


def rasterise_triangles(cells: np.ndarray, triangles: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Which triangle covers each cell centre, and the barycentric weights there.

    Args:
        cells: ``(N, 2)`` vertex cell coordinates ``(col, row)``. triangles: ``(T, 3)`` vertex ids.
        size: S.
    Returns:
        ``cell_tri (S*S,)`` int64 triangle index or −1, ``bary (S*S, 3)`` float64 (0 where uncovered).
        A centre on a shared edge goes to the triangle where its smallest barycentric weight is largest.
    """
    p = np.asarray(cells, dtype=np.float64)[triangles]  # (T, 3, 2)
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-12
    lo = np.clip(np.ceil(p.min(axis=1) - 1e-9), 0, size - 1).astype(np.int64)
    hi = np.clip(np.floor(p.max(axis=1) + 1e-9), 0, size - 1).astype(np.int64)
    w = np.where(ok, hi[:, 0] - lo[:, 0] + 1, 0).clip(min=0)
    h = np.where(ok, hi[:, 1] - lo[:, 1] + 1, 0).clip(min=0)
    count = w * h
    tid = np.repeat(np.arange(len(p)), count)
    local = np.arange(tid.size) - np.repeat(np.cumsum(count) - count, count)
    col = lo[tid, 0] + local % w[tid]
    row = lo[tid, 1] + local // w[tid]
    dx, dy = col - p[tid, 0, 0], row - p[tid, 0, 1]
    l1 = (dx * e2[tid, 1] - dy * e2[tid, 0]) / det[tid]
    l2 = (e1[tid, 0] * dy - e1[tid, 1] * dx) / det[tid]
    bary = np.stack([1.0 - l1 - l2, l1, l2], axis=1)
    score = bary.min(axis=1)
    inside = score >= -1e-9
    tid, bary, score, cell = tid[inside], bary[inside], score[inside], (row * size + col)[inside]
    order = np.lexsort((-score, cell))
    cell, first = np.unique(cell[order], return_index=True)
    pick = order[first]
    cell_tri = np.full(size * size, -1, dtype=np.int64)
    cell_bary = np.zeros((size * size, 3))
    cell_tri[cell] = tid[pick]
    cell_bary[cell] = np.clip(bary[pick], 0.0, 1.0)
    cell_bary[cell] /= cell_bary[cell].sum(axis=1, keepdims=True)
    return cell_tri, cell_bary


def build_uv_layout(face_model: FaceModel, size: int) -> UVLayout:
    """Build the layout of ``face_model`` at resolution ``size`` (no caching; see :func:`get_uv_layout`)."""
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"UV size must be an integer >= 8, got {size!r}")
    size = int(size)
    s2 = size * size
    mean = face_model.mean.astype(np.float64)
    kp = face_model.keypoints
    uv = vertex_uv(mean, kp)
    tris = derive_triangles_cached(mean, kp)  # same rule as derive_triangles(mean, kp, uv), disk-cached
    cells = uv_to_cells(uv, size)

    # to_uv
    cell_tri, bary = rasterise_triangles(cells, tris, size)
    covered = cell_tri >= 0
    cell_vertices = np.zeros((s2, 3), dtype=np.int64)
    cell_vertices[covered] = tris[cell_tri[covered]]
    cell_weights = bary.astype(np.float32)

    # to_vertex: bilinear over covered corners, renormalised; nearest covered cell as fallback
    col, row = cells[:, 0], cells[:, 1]
    c0 = np.clip(np.floor(col), 0, size - 2).astype(np.int64)
    r0 = np.clip(np.floor(row), 0, size - 2).astype(np.int64)
    fc, fr = col - c0, row - r0
    vcells = np.stack([r0 * size + c0, r0 * size + c0 + 1, (r0 + 1) * size + c0, (r0 + 1) * size + c0 + 1], 1)
    vw = np.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc], 1) * covered[vcells]
    tot = vw.sum(axis=1)
    lonely = tot <= 1e-6
    vw[~lonely] /= tot[~lonely, None]
    if lonely.any():
        cov_idx = np.flatnonzero(covered)
        cov_rc = np.stack([cov_idx // size, cov_idx % size], 1).astype(np.float64)
        _, near = cKDTree(cov_rc).query(np.stack([row[lonely], col[lonely]], 1))
        vcells[lonely] = cov_idx[near][:, None]
        vw[lonely] = [1.0, 0.0, 0.0, 0.0]

    # face mask
    cov2 = covered.reshape(size, size)
    kpt_uv = uv[kp]
    poly = uv_to_cells(face_polygon_uv(kpt_uv), size)
    rr, cc = np.divmod(np.arange(s2), size)
    inside = points_in_polygon(np.stack([cc, rr], 1), poly).reshape(size, size)
    kcells = uv_to_cells(kpt_uv, size)
    height_cells = kcells[8, 1] - kcells[17:27, 1].mean()
    grow = FACE_MASK_GROW * height_cells
    face_mask = (ndimage.distance_transform_edt(~inside) <= grow) & cov2

    kpt_cells = np.stack([np.rint(kcells[:, 1]), np.rint(kcells[:, 0])], 1).astype(np.int64).clip(0, size - 1)

    # weight mask
    d_eyes = float(np.hypot(*(kpt_cells[45] - kpt_cells[36]))) or 1.0

    def near_polygon(ids: list[int], radius: float) -> np.ndarray:
        pin = points_in_polygon(np.stack([cc, rr], 1), kcells[ids]).reshape(size, size)
        pin[tuple(kpt_cells[ids].T)] = True
        return ndimage.distance_transform_edt(~pin) <= radius

    feature = (near_polygon(list(range(36, 42)), 0.12 * d_eyes) | near_polygon(list(range(42, 48)), 0.12 * d_eyes)
               | near_polygon([27, 31, 32, 33, 34, 35], 0.08 * d_eyes) | near_polygon(list(range(48, 60)), 0.08 * d_eyes))
    dots = np.zeros((size, size), dtype=bool)
    dots[tuple(kpt_cells.T)] = True
    near_kpt = ndimage.distance_transform_edt(~dots) <= max(1.0, 0.025 * d_eyes)
    weight_mask = np.where(face_mask, WEIGHT_FACE, 0.0)
    weight_mask[face_mask & feature] = WEIGHT_FEATURE
    weight_mask[face_mask & near_kpt] = WEIGHT_LANDMARK

    # UV-grid mesh
    ids = np.arange(s2).reshape(size, size)
    a, b, c, d = ids[:-1, :-1], ids[1:, :-1], ids[:-1, 1:], ids[1:, 1:]
    grid = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([c, b, d], -1).reshape(-1, 3)])
    grid = grid[covered[grid].all(axis=1)]
    grid = grid[np.lexsort((grid[:, 2], grid[:, 1], grid[:, 0]))]
    is_face = face_mask.reshape(-1)[grid].all(axis=1)

    # mirror
    flip_perm = np.arange(s2, dtype=np.int64)
    cov_idx = np.flatnonzero(covered)
    pts = np.zeros((s2, 3))
    pts[covered] = (bary[covered, :, None] * mean[cell_vertices[covered]]).sum(axis=1)
    xs = float(mean[kp[_MIDLINE_68], 0].mean())
    mirrored = pts[cov_idx] * [-1.0, 1.0, 1.0] + [2.0 * xs, 0.0, 0.0]
    _, near = cKDTree(pts[cov_idx]).query(mirrored)
    flip_perm[cov_idx] = cov_idx[near]

    arrays = {
        "keypoints": np.asarray(kp, dtype=np.int64).copy(),
        "vertex_uv": cells,
        "cell_vertices": cell_vertices,
        "cell_weights": cell_weights,
        "vertex_cells": vcells.astype(np.int64),
        "vertex_cell_weights": vw.astype(np.float32),
        "covered": cov2,
        "face_mask": face_mask,
        "weight_mask": weight_mask.astype(np.float32),
        "kpt_cells": kpt_cells,
        "grid_triangles": grid.astype(np.int64),
        "grid_triangle_is_face": is_face,
        "flip_perm": flip_perm,
    }
    return assemble_layout(size, face_model.fingerprint, arrays)


_LAYOUT_MEMO: dict[tuple[str, int], UVLayout] = {}


def layout_cache_path(face_model: FaceModel, size: int) -> Path:
    """Disk cache file of a layout: ``uv_layout_<fingerprint>_<size>_v<LAYOUT_VERSION>.npz`` in the cache dir."""
    return assets.cache_dir() / f"uv_layout_{face_model.fingerprint}_{int(size)}_v{LAYOUT_VERSION}.npz"


def get_uv_layout(face_model: FaceModel, size: int, *, disk_cache: bool = True) -> UVLayout:
    """The :class:`UVLayout` of ``face_model`` at ``size`` (128 and 256 are the supported sizes; any S ≥ 8
    works), memoised in-process and cached on disk (:func:`layout_cache_path`). An unreadable cache file is
    rebuilt; an unwritable cache dir only skips the disk cache.

    >>> from dsfnet.facemodel.model import make_face_model
    >>> th, y = np.meshgrid(np.linspace(-1.5, 1.5, 25), np.linspace(-1, 1, 25))  # a half cylinder, 25 × 25 vertices
    >>> mean = 8e4 * np.stack([np.sin(th), y, np.cos(th)], -1).reshape(-1, 3)
    >>> ids = np.arange(625).reshape(25, 25); a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
    >>> tris = np.concatenate([np.stack([a, b, c], -1), np.stack([b, d, c], -1)]).reshape(-1, 3)
    >>> kp = np.random.default_rng(0).choice(ids[3:-3, 3:-3].ravel(), 68, replace=False)  # any 68 inner vertices
    >>> no_basis = np.zeros((625, 3, 1))
    >>> fm = make_face_model("cylinder", mean, no_basis, no_basis, [1.0], [1.0], kp, tris)
    >>> get_uv_layout(fm, 32, disk_cache=False).face_mask.shape
    (32, 32)
    """
    key = (face_model.fingerprint, int(size))
    if key in _LAYOUT_MEMO:
        return _LAYOUT_MEMO[key]
    layout = None
    path = layout_cache_path(face_model, size)
    if disk_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                if str(npz["fingerprint"]) == face_model.fingerprint and int(npz["size"]) == int(size):
                    layout = assemble_layout(int(size), face_model.fingerprint, {k: npz[k] for k in LAYOUT_ARRAYS})
        except Exception:  # corrupt or from another version: rebuild (derived data)
            layout = None
    if layout is None:
        layout = build_uv_layout(face_model, size)
        if disk_cache:
            try:
                assets.atomic_write_npz(path, {"fingerprint": np.array(layout.fingerprint), "size": np.array(layout.size),
                                               **{k: getattr(layout, k) for k in LAYOUT_ARRAYS}})
            except OSError:
                pass
    _LAYOUT_MEMO[key] = layout
    return layout
