"""The UV unwrap of a face model and the mesh triangles derived from it.

Conventions (``docs/CONVENTIONS.md``, section UV): each vertex gets ``uv ∈ [0, 1]²``, u to the right (= the
subject's left = +x), v up. Every rule is deterministic and written down here; what is built on the ``S×S`` grid
from it (cells, masks, resampling) is :mod:`dsfnet.facemodel.uv`.

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
  :data:`FOREHEAD_LIFT` × (mean v of the brows 17..26 − v of the chin 8).
"""
from __future__ import annotations

import hashlib

import numpy as np
from scipy.spatial import Delaunay, cKDTree

from dsfnet.facemodel import assets

#: bump when any rule of the unwrap or of the layout (:mod:`dsfnet.facemodel.uv`) changes (invalidates the disk caches)
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

    >>> t = np.radians(np.linspace(-90, 90, 68))  # 68 points around a half cylinder, from -x to +x
    >>> uv = vertex_uv(np.stack([np.sin(t), np.linspace(-1, 1, 68), np.cos(t)], 1), np.arange(68))
    >>> bool(uv[45, 0] > uv[36, 0])  # +x (the subject's left) to the right
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
