"""UV unwrap of a face model and everything defined on the UV grid.

Conventions (``docs/CONVENTIONS.md``, section UV). Each vertex has ``uv ∈ [0, 1]²``, u to the right
(= the subject's left = +x), v up. For an ``S×S`` map a vertex sits at the continuous cell coordinates
``col = u·(S−1)``, ``row = (S−1)·(1 − v)`` (forehead at the top rows). A *UV cell* is ``(row, col)``; its
flat index is ``row·S + col``; cell centres are at integer ``(col, row)``. Maps are channel-first
``(..., C, S, S)``. *Shape-map units* are model units × :data:`SHAPE_MAP_SCALE`.

Every rule that derives something from the model is deterministic and written down here:

* **Unwrap** (:func:`vertex_uv`): a cylinder around a vertical axis (parallel to y) through ``(cx, cz)``.
  ``(cx, cz)`` is the centre of the least-squares (Kåsa) circle through the ``(x, z)`` of the mean-shape
  vertices in the band between the nose tip (landmark 30) and the brows (mean y of 19 and 24) that lie in
  front of the jaw ends (z above the mean z of landmarks 0 and 16): the cylinder that best explains the
  face's width, so arc length on it follows the cheeks and the face is not squeezed. Then
  ``a = r·atan2(x − cx, z − cz)`` (arc length, 0 straight ahead, positive toward +x) and ``b = y``. Outside
  the face box (``a`` beyond the jaw landmarks 0..16, ``b`` below the chin 8 or above the forehead edge of
  the face polygon) ``a`` and ``b`` are compressed with slope :data:`FRINGE_SCALE`, so ears, neck and scalp
  take less of the square and the face most of it. u and v are then ``a`` and ``b`` rescaled independently
  to ``[UV_MARGIN, 1 − UV_MARGIN]`` so the whole mesh fills the square. The seam (angle ±180°) is behind
  the head, where the BFM has no vertices.
* **Triangles** (:func:`derive_triangles`): Delaunay triangulation of the vertices' uv. A triangle is
  dropped when one of its 3D edges (on the mean shape) is longer than :data:`EDGE_RATIO_MAX` times the
  local vertex spacing (the larger, over the edge's two ends, of the median distance from a vertex to its
  :data:`SPACING_NEIGHBOURS` nearest 3D neighbours). This removes hull artefacts and triangles that join
  the two layers of a fold (ears, under the chin). Triangles whose uv centroid lies inside the face
  polygon (below) are always kept: inside the face the only folds are the nostrils and the lip slit, and
  a triangle closing them is better than a hole in the face. Triangles are counter-clockwise in (u, v),
  which is counter-clockwise seen from +z (front faces).
* **Face polygon** (:func:`face_polygon_uv`): the jaw landmarks 0..16, then the brows 26..17 moved up by
  :data:`FOREHEAD_LIFT` × (mean v of the brows 17..26 − v of the chin 8). The **face mask** is the cells
  whose centres are inside it, grown by :data:`FACE_MASK_GROW` × that brow-to-chin height (so the jaw
  landmarks themselves are inside), and covered by the mesh. It spans forehead to chin and excludes ears
  and neck.
* **Weight mask** (spec §2.4 flavour), with D = the distance in cells between landmark cells 36 and 45:
  16 within ``max(1, 0.025·D)`` cells of a landmark cell; 12 within ``0.12·D`` of an eye polygon
  (36..41, 42..47), within ``0.08·D`` of the nose polygon (27, 31..35) or within ``0.08·D`` of the outer
  lip polygon (48..59); 3 elsewhere in the face mask; 0 off the face mask.
* **Mirror** (``flip_perm``): the mean face is nearly symmetric about the plane ``x = xs``, with ``xs`` the
  mean x of the midline landmarks (8, 27..30, 33, 51, 57, 62, 66). Each covered cell's mean-shape point
  ``(x, y, z)`` is mirrored to ``(2·xs − x, y, z)`` and sent to the covered cell whose mean-shape point is
  nearest in 3D. Uncovered cells map to themselves.
* **Sampling a map at vertices** (``to_vertex``): bilinear at the vertex's ``(row, col)``, using only covered
  corner cells (their weights renormalised); a vertex with no covered corner takes its nearest covered cell.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.spatial import Delaunay, cKDTree

from dsfnet.facemodel import assets

if TYPE_CHECKING:  # pragma: no cover
    from dsfnet.facemodel.model import FaceModel

#: bump when any rule of this module changes (invalidates the disk caches)
LAYOUT_VERSION = 2
#: margin of the unwrap inside [0, 1]²
UV_MARGIN = 0.01
#: outside the face box (jaw ends left/right, chin to lifted forehead) the unwrap is compressed by this slope
FRINGE_SCALE = 0.4
#: a Delaunay triangle is dropped when a 3D edge exceeds this many local vertex spacings
EDGE_RATIO_MAX = 4.0
#: neighbours used to measure the local vertex spacing
SPACING_NEIGHBOURS = 6
#: the forehead edge of the face polygon: brows lifted by this fraction of the brow-to-chin height
FOREHEAD_LIFT = 0.25
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


# ------------------------------------------------------------------------------------------- unwrap

def cylinder_axis(mean: np.ndarray, keypoints: np.ndarray) -> tuple[float, float, float]:
    """Axis ``(cx, cz)`` and radius r of the unwrap cylinder (rule in the module docstring), model units.

    Args:
        mean: ``(N, 3)`` mean shape, model frame. keypoints: ``(68,)`` vertex ids.
    Returns:
        ``(cx, cz, r)``. Falls back to the jaw ends' midpoint and half their distance when the band holds
        fewer than 10 vertices or the fit is degenerate.
    """
    v = np.asarray(mean, dtype=np.float64)
    kp = v[np.asarray(keypoints)]
    y_lo, y_hi = kp[30, 1], kp[[19, 24], 1].mean()
    z_jaw = kp[[0, 16], 2].mean()
    band = (v[:, 1] >= min(y_lo, y_hi)) & (v[:, 1] <= max(y_lo, y_hi)) & (v[:, 2] > z_jaw)
    fallback = (float(kp[[0, 16], 0].mean()), float(z_jaw), float(0.5 * abs(kp[16, 0] - kp[0, 0])) or 1.0)
    if band.sum() < 10:
        return fallback
    x, z = v[band, 0], v[band, 2]
    # Kåsa fit: x² + z² = 2·cx·x + 2·cz·z + c
    a = np.stack([x, z, np.ones_like(x)], axis=1)
    sol, *_ = np.linalg.lstsq(a, x * x + z * z, rcond=None)
    cx, cz = sol[0] / 2, sol[1] / 2
    r2 = sol[2] + cx * cx + cz * cz
    if not np.isfinite(r2) or r2 <= 0 or cz >= v[:, 2].max():
        return fallback
    return float(cx), float(cz), float(np.sqrt(r2))


def vertex_uv(mean: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Cylindrical unwrap of the mean shape (rule in the module docstring).

    Args:
        mean: ``(N, 3)`` model frame (BFM units, y up). keypoints: ``(68,)`` vertex ids.
    Returns:
        ``(N, 2)`` float64 ``(u, v)`` in ``[UV_MARGIN, 1 − UV_MARGIN]``: u right (+x), v up (+y).

    >>> from dsfnet.facemodel.synthetic import toy_face_model
    >>> m = toy_face_model(); uv = vertex_uv(m.mean, m.keypoints)
    >>> bool(uv[m.keypoints[45], 0] > uv[m.keypoints[36], 0])  # subject's left eye to the right
    True
    """
    v = np.asarray(mean, dtype=np.float64)
    cx, cz, r = cylinder_axis(v, keypoints)
    a = r * np.arctan2(v[:, 0] - cx, v[:, 2] - cz)
    b = v[:, 1]
    kp = np.asarray(keypoints)
    brow_y = b[kp[17:27]].mean()
    a = _compress_fringe(a, a[kp[0:17]].min(), a[kp[0:17]].max())
    b = _compress_fringe(b, b[kp[8]], brow_y + FOREHEAD_LIFT * (brow_y - b[kp[8]]))

    def rescale(t: np.ndarray) -> np.ndarray:
        span = float(np.ptp(t)) or 1.0
        return UV_MARGIN + (1.0 - 2.0 * UV_MARGIN) * (t - t.min()) / span

    return np.stack([rescale(a), rescale(b)], axis=1)


def _compress_fringe(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Identity on [lo, hi]; slope FRINGE_SCALE outside (continuous and increasing, so no new folds)."""
    return np.where(t < lo, lo + FRINGE_SCALE * (t - lo), np.where(t > hi, hi + FRINGE_SCALE * (t - hi), t))


def face_polygon_uv(kpt_uv: np.ndarray) -> np.ndarray:
    """Face polygon from the landmarks' uv: jaw 0..16, then brows 26..17 lifted by ``FOREHEAD_LIFT`` × the
    brow-to-chin height (v of the brows' mean minus v of landmark 8).

    Args:
        kpt_uv: ``(68, 2)`` (u, v), v up.
    Returns:
        ``(27, 2)`` closed-implicitly polygon in (u, v).
    """
    k = np.asarray(kpt_uv, dtype=np.float64)
    height = k[17:27, 1].mean() - k[8, 1]
    brows = k[26:16:-1].copy()
    brows[:, 1] += FOREHEAD_LIFT * height
    return np.concatenate([k[0:17], brows])


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd test. points ``(P, 2)``, polygon ``(E, 2)`` (any 2D frame) -> ``(P,)`` bool."""
    p = np.asarray(points, dtype=np.float64)
    a = np.asarray(polygon, dtype=np.float64)
    b = np.roll(a, -1, axis=0)
    px, py = p[:, 0:1], p[:, 1:2]
    crosses = (a[None, :, 1] > py) != (b[None, :, 1] > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = a[None, :, 0] + (py - a[None, :, 1]) * (b[None, :, 0] - a[None, :, 0]) / (b[None, :, 1] - a[None, :, 1])
    return (np.count_nonzero(crosses & (px < x_at), axis=1) % 2) == 1


def derive_triangles(mean: np.ndarray, keypoints: np.ndarray, uv: np.ndarray | None = None) -> np.ndarray:
    """Triangles from the UV unwrap (rule in the module docstring).

    Args:
        mean: ``(N, 3)`` model frame. keypoints: ``(68,)`` vertex ids. uv: ``(N, 2)`` (default :func:`vertex_uv`).
    Returns:
        ``(T, 3)`` int64 vertex ids, counter-clockwise in (u, v) (front faces seen from +z).
    """
    v = np.asarray(mean, dtype=np.float64)
    uv = vertex_uv(v, keypoints) if uv is None else np.asarray(uv, dtype=np.float64)
    tri = Delaunay(uv).simplices.astype(np.int64)
    k = min(SPACING_NEIGHBOURS + 1, len(v))
    dist, _ = cKDTree(v).query(v, k=k)
    spacing = np.maximum(np.median(dist[:, 1:], axis=1), 1e-12)
    ratio = np.zeros(len(tri))
    for i in range(3):
        p, q = tri[:, i], tri[:, (i + 1) % 3]
        ratio = np.maximum(ratio, np.linalg.norm(v[p] - v[q], axis=1) / np.maximum(spacing[p], spacing[q]))
    inside_face = points_in_polygon(uv[tri].mean(axis=1), face_polygon_uv(uv[np.asarray(keypoints)]))
    tri = tri[(ratio <= EDGE_RATIO_MAX) | inside_face]
    e1, e2 = uv[tri[:, 1]] - uv[tri[:, 0]], uv[tri[:, 2]] - uv[tri[:, 0]]
    cw = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] < 0
    tri[cw] = tri[cw][:, [0, 2, 1]]
    return tri


def _content_key(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


def derive_triangles_cached(mean: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """:func:`derive_triangles`, cached on disk in the cache dir (keyed by the mean, keypoints and
    :data:`LAYOUT_VERSION`). An unreadable cache file is rebuilt; an unwritable cache dir is ignored."""
    mean = np.asarray(mean, dtype=np.float32)
    keypoints = np.asarray(keypoints, dtype=np.int64)
    path = assets.cache_dir() / f"triangles_{_content_key(mean, keypoints)}_v{LAYOUT_VERSION}.npz"
    try:
        with np.load(path, allow_pickle=False) as npz:
            tri = npz["triangles"]
        if tri.ndim == 2 and tri.shape[1] == 3 and tri.min() >= 0 and tri.max() < len(mean):
            return tri.astype(np.int64)
    except Exception:  # missing or corrupt: rebuild (derived data)
        pass
    tri = derive_triangles(mean, keypoints)
    try:
        assets.atomic_write_npz(path, {"triangles": tri})
    except OSError:
        pass
    return tri


# ------------------------------------------------------------------------------------------- layout

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


@dataclass(frozen=True, eq=False)
class UVLayout:
    """Everything defined on the ``S×S`` UV grid of one face model (rules in the module docstring).

    Attributes (N vertices, S = size, cells flattened as ``row·S + col``):
        size: S.
        fingerprint: :attr:`FaceModel.fingerprint` of the model this layout belongs to.
        keypoints: ``(68,)`` int64 landmark vertex ids of that model.
        vertex_uv: ``(N, 2)`` float64 continuous cell coordinates ``(col, row)`` of each vertex.
        to_uv: CSR ``(S*S, N)``: a map cell = barycentric blend of its covering triangle's 3 vertices
            (3 non-zeros per covered cell, none elsewhere).
        to_vertex: CSR ``(N, S*S)``: bilinear sampling of a map at each vertex (rows sum to 1).
        cell_vertices, cell_weights: ``(S*S, 3)`` int64 / float32, the same as ``to_uv`` in gather form
            (vertex 0, weight 0 where uncovered).
        vertex_cells, vertex_cell_weights: ``(N, 4)`` int64 / float32, ``to_vertex`` in gather form.
        covered: ``(S, S)`` bool, cells inside a triangle of the UV mesh.
        face_mask: ``(S, S)`` bool, forehead to chin, no ears or neck (a subset of ``covered``).
        weight_mask: ``(S, S)`` float32 loss weights 16 / 12 / 3 / 0.
        kpt_cells: ``(68, 2)`` int64 ``(row, col)`` of each landmark vertex (rounded).
        grid_triangles: ``(T', 3)`` int64 flat cell ids: per 2×2 block ``{(r,c), (r+1,c), (r,c+1)}`` and
            ``{(r,c+1), (r+1,c), (r+1,c+1)}``, kept when all 3 corners are covered; counter-clockwise seen
            from +z when the map holds model-frame points.
        grid_triangle_is_face: ``(T',)`` bool, all three corners in ``face_mask``.
        flip_perm: ``(S*S,)`` int64, cell -> cell of the left/right mirrored point. Maps of a mirrored face:
            ``mirrored[..., c] = original[..., flip_perm[c]]`` per flat cell (the caller negates x values).
    """

    size: int
    fingerprint: str
    keypoints: np.ndarray
    vertex_uv: np.ndarray
    to_uv: sp.csr_matrix
    to_vertex: sp.csr_matrix
    cell_vertices: np.ndarray
    cell_weights: np.ndarray
    vertex_cells: np.ndarray
    vertex_cell_weights: np.ndarray
    covered: np.ndarray
    face_mask: np.ndarray
    weight_mask: np.ndarray
    kpt_cells: np.ndarray
    grid_triangles: np.ndarray
    grid_triangle_is_face: np.ndarray
    flip_perm: np.ndarray
    _torch_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_vertices(self) -> int:
        """N."""
        return int(self.vertex_uv.shape[0])

    # ------------------------------------------------------------------ vertices <-> maps

    def vertices_to_map(self, verts):
        """Render per-vertex values into the UV grid (barycentric blend of the covering triangle).

        Args:
            verts: ``(..., N, C)`` numpy array or torch tensor (differentiable), any units.
        Returns:
            ``(..., C, S, S)`` of the same kind; 0 in uncovered cells. Float32 unless the input is float64.
        """
        n, s = self.n_vertices, self.size
        if _is_torch(verts):
            if verts.ndim < 2 or verts.shape[-2] != n:
                raise ValueError(f"vertices_to_map: expected (..., {n}, C), got {tuple(verts.shape)}")
            idx, w = self._torch("cell", verts)
            out = (verts[..., idx, :] * w[..., None]).sum(dim=-2)  # (..., S*S, C)
            return out.transpose(-1, -2).reshape(*verts.shape[:-2], verts.shape[-1], s, s)
        v = np.asarray(verts)
        if v.ndim < 2 or v.shape[-2] != n:
            raise ValueError(f"vertices_to_map: expected (..., {n}, C), got {v.shape}")
        dtype = np.float64 if v.dtype == np.float64 else np.float32
        lead, c = v.shape[:-2], v.shape[-1]
        x = np.moveaxis(v.reshape(-1, n, c), 1, 0).reshape(n, -1)  # (N, B*C)
        y = np.asarray(self.to_uv @ x.astype(np.float64))  # (S*S, B*C)
        y = y.reshape(s * s, -1, c).transpose(1, 2, 0)  # (B, C, S*S)
        return y.reshape(*lead, c, s, s).astype(dtype)

    def map_to_vertices(self, maps):
        """Sample maps at every vertex (bilinear over covered cells).

        Args:
            maps: ``(..., C, S, S)`` numpy array or torch tensor.
        Returns:
            ``(..., N, C)`` of the same kind.
        """
        return self._sample(maps, None, "map_to_vertices")

    def landmarks_from_map(self, maps):
        """The 68 landmarks read from maps, bilinear at the landmark vertices' exact cell coordinates.

        Args:
            maps: ``(..., C, S, S)`` numpy array or torch tensor.
        Returns:
            ``(..., 68, C)`` in the map's units, iBUG 300-W order.
        """
        return self._sample(maps, self.keypoints, "landmarks_from_map")

    def _sample(self, maps, rows: np.ndarray | None, what: str):
        s = self.size
        if maps.ndim < 3 or tuple(maps.shape[-2:]) != (s, s):
            raise ValueError(f"{what}: expected (..., C, {s}, {s}), got {tuple(maps.shape)}")
        lead, c = tuple(maps.shape[:-3]), maps.shape[-3]
        if _is_torch(maps):
            idx, w = self._torch("vertex" if rows is None else "keypoint", maps)
            flat = maps.reshape(*lead, c, s * s)
            out = (flat[..., idx] * w).sum(dim=-1)  # (..., C, K)
            return out.transpose(-1, -2)
        m = np.asarray(maps)
        dtype = np.float64 if m.dtype == np.float64 else np.float32
        mat = self.to_vertex if rows is None else self.to_vertex[rows]
        x = m.reshape(-1, c, s * s).transpose(2, 0, 1).reshape(s * s, -1)  # (S*S, B*C)
        y = np.asarray(mat @ x.astype(np.float64))  # (K, B*C)
        y = y.reshape(y.shape[0], -1, c).transpose(1, 0, 2)  # (B, K, C)
        return y.reshape(*lead, y.shape[1], c).astype(dtype)

    def _torch(self, which: str, like):
        """Gather indices and weights ("cell", "vertex" or "keypoint") as tensors on ``like``'s device and
        dtype (memoised per device and dtype)."""
        import torch

        key = (which, str(like.device), like.dtype)
        if key not in self._torch_cache:
            if which == "cell":
                idx, w = self.cell_vertices, self.cell_weights
            elif which == "vertex":
                idx, w = self.vertex_cells, self.vertex_cell_weights
            else:  # "keypoint"
                idx, w = self.vertex_cells[self.keypoints], self.vertex_cell_weights[self.keypoints]
            # copies: the layout's arrays are read-only and torch wants writable memory
            self._torch_cache[key] = (torch.tensor(np.array(idx), device=like.device),
                                      torch.tensor(np.array(w), device=like.device, dtype=like.dtype))
        return self._torch_cache[key]

    # ------------------------------------------------------------------ basis

    def basis_maps(self, face_model: FaceModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The face model resampled into UV, in shape-map units (model units × SHAPE_MAP_SCALE).

        The component maps are multiplied by the per-component std, so normalised coefficients combine
        directly: ``offset_map = Σ α̃_k·shape_maps[k] + Σ β̃_k·exp_maps[k]``, shape ``(3, S, S)``.

        Returns:
            ``mean_map (3, S, S)``, ``shape_maps (Ks, 3, S, S)``, ``exp_maps (Ke, 3, S, S)``, float32, 0 in
            uncovered cells.
        """
        if face_model.fingerprint != self.fingerprint:
            raise ValueError(f"basis_maps: this layout belongs to model {self.fingerprint}, "
                             f"got {face_model.name} ({face_model.fingerprint})")
        s = self.size
        mean_map = self.vertices_to_map(face_model.mean.astype(np.float64)) * SHAPE_MAP_SCALE

        def comp(basis: np.ndarray, std: np.ndarray) -> np.ndarray:
            b = np.moveaxis(basis.astype(np.float64), 2, 0) * (std.astype(np.float64) * SHAPE_MAP_SCALE)[:, None, None]
            return self.vertices_to_map(b).reshape(basis.shape[2], 3, s, s).astype(np.float32)

        return (mean_map.astype(np.float32), comp(face_model.shape_basis, face_model.shape_std),
                comp(face_model.exp_basis, face_model.exp_std))

    def __repr__(self) -> str:
        return (f"UVLayout(size={self.size}, fingerprint={self.fingerprint!r}, covered={int(self.covered.sum())}, "
                f"face={int(self.face_mask.sum())}, grid_triangles={len(self.grid_triangles)})")


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


_SAVED = ("keypoints", "vertex_uv", "cell_vertices", "cell_weights", "vertex_cells", "vertex_cell_weights",
          "covered", "face_mask", "weight_mask", "kpt_cells", "grid_triangles", "grid_triangle_is_face", "flip_perm")


def _assemble(size: int, fingerprint: str, arrays: dict[str, np.ndarray]) -> UVLayout:
    s2 = size * size
    n = arrays["vertex_uv"].shape[0]
    cv, cw = arrays["cell_vertices"], arrays["cell_weights"]
    covered_flat = arrays["covered"].reshape(-1)
    indptr = np.concatenate([[0], np.cumsum(covered_flat.astype(np.int64) * 3)])
    to_uv = sp.csr_matrix((cw[covered_flat].astype(np.float64).reshape(-1), cv[covered_flat].reshape(-1), indptr),
                          shape=(s2, n))
    vc, vw = arrays["vertex_cells"], arrays["vertex_cell_weights"]
    to_vertex = sp.csr_matrix((vw.astype(np.float64).reshape(-1), vc.reshape(-1), np.arange(0, 4 * n + 1, 4)),
                              shape=(n, s2))
    for a in arrays.values():
        a.setflags(write=False)
    return UVLayout(size=size, fingerprint=fingerprint, to_uv=to_uv, to_vertex=to_vertex,
                    **{k: arrays[k] for k in _SAVED})


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
    return _assemble(size, face_model.fingerprint, arrays)


_LAYOUT_MEMO: dict[tuple[str, int], UVLayout] = {}


def layout_cache_path(face_model: FaceModel, size: int) -> Path:
    """Disk cache file of a layout: ``uv_layout_<fingerprint>_<size>_v<LAYOUT_VERSION>.npz`` in the cache dir."""
    return assets.cache_dir() / f"uv_layout_{face_model.fingerprint}_{int(size)}_v{LAYOUT_VERSION}.npz"


def get_uv_layout(face_model: FaceModel, size: int, *, disk_cache: bool = True) -> UVLayout:
    """The :class:`UVLayout` of ``face_model`` at ``size`` (128 and 256 are the supported sizes; any S ≥ 8
    works), memoised in-process and cached on disk (:func:`layout_cache_path`). An unreadable cache file is
    rebuilt; an unwritable cache dir only skips the disk cache.

    >>> from dsfnet.facemodel.synthetic import toy_face_model
    >>> get_uv_layout(toy_face_model(), 32, disk_cache=False).face_mask.shape
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
                    layout = _assemble(int(size), face_model.fingerprint, {k: npz[k] for k in _SAVED})
        except Exception:  # corrupt or from another version: rebuild (derived data)
            layout = None
    if layout is None:
        layout = build_uv_layout(face_model, size)
        if disk_cache:
            try:
                assets.atomic_write_npz(path, {"fingerprint": np.array(layout.fingerprint), "size": np.array(layout.size),
                                               **{k: getattr(layout, k) for k in _SAVED}})
            except OSError:
                pass
    _LAYOUT_MEMO[key] = layout
    return layout


def timed_layout(face_model: FaceModel, size: int) -> tuple[UVLayout, float]:
    """Build (uncached) and time a layout; returns ``(layout, seconds)``. Used by ``dsfnet assets`` and benchmarks."""
    t0 = time.perf_counter()
    layout = build_uv_layout(face_model, size)
    return layout, time.perf_counter() - t0
