"""Per-pixel interpolation of per-vertex attributes through a :class:`~dsfnet.render.raster.Raster`."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dsfnet.render.raster import Raster, rasterize

if TYPE_CHECKING:  # scipy is imported lazily, only by interpolation_matrix
    import scipy.sparse

__all__ = ["interpolate", "interpolation_matrix", "render_colors", "vertex_normals"]


def _check_raster_triangles(raster: Raster, triangles: np.ndarray) -> np.ndarray:
    """Validate ``triangles (T, 3)`` against the raster's face ids; returns it as int64."""
    if not isinstance(raster, Raster):
        raise ValueError(f"raster must be a dsfnet.render.Raster, got {type(raster).__name__}")
    t = np.asarray(triangles)
    if t.size == 0:
        t = np.zeros((0, 3), dtype=np.int64)
    if t.ndim != 2 or t.shape[1] != 3 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"triangles must be an integer (T, 3) array, got shape {t.shape} dtype {t.dtype}")
    fmax = int(raster.face_id.max(initial=-1))
    if fmax >= t.shape[0]:
        raise ValueError(f"raster refers to triangle {fmax} but only {t.shape[0]} triangles were given; "
                         "pass the triangles that were rasterised")
    return t.astype(np.int64, copy=False)


def interpolate(raster: Raster, triangles: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """Blend a per-vertex attribute over the visible triangle of each pixel with the raster's barycentrics.

    Args:
        raster: from :func:`~dsfnet.render.rasterize` of a mesh with these ``triangles``.
        triangles: ``(T, 3)`` int, the array that was rasterised.
        attributes: ``(V, C)`` per-vertex values (any units; e.g. UV cells, colours, z).
    Returns:
        ``(H, W, C)`` float32: ``sum_k bary[..., k] * attributes[triangles[face_id, k]]``; 0 where empty.
        The blend is computed in float64 and cast once.

    >>> r = rasterize(np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0.0]]), np.array([[0, 1, 2]]), 2, 2)
    >>> interpolate(r, np.array([[0, 1, 2]]), np.array([[0.0], [4.0], [0.0]]))[..., 0].tolist()
    [[0.0, 1.0], [0.0, 1.0]]
    """
    t = _check_raster_triangles(raster, triangles)
    a = np.asarray(attributes)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"attributes must be a numeric (V, C) array, got shape {a.shape} dtype {a.dtype}")
    if t.size and int(t.max()) >= a.shape[0]:
        raise ValueError(f"triangles index vertex {int(t.max())} but attributes has only {a.shape[0]} rows")
    h, w = raster.face_id.shape
    out = np.zeros((h, w, a.shape[1]), dtype=np.float32)
    mask = raster.mask
    if not mask.any():
        return out
    corners = t[raster.face_id[mask]]                      # (N, 3) vertex ids
    weights = raster.bary[mask].astype(np.float64)         # (N, 3)
    vals = a.astype(np.float64, copy=False)[corners]       # (N, 3, C)
    out[mask] = np.einsum("nk,nkc->nc", weights, vals)
    return out


def interpolation_matrix(raster: Raster, triangles: np.ndarray, n_vertices: int) -> scipy.sparse.csr_matrix:
    """The raster's interpolation as a sparse ``(H*W, V)`` matrix ``M`` (3 non-zeros per covered pixel).

    ``(M @ attributes).reshape(H, W, C)`` equals :func:`interpolate` (up to float32 rounding); empty pixels
    are all-zero rows. Useful when the same layout is reused many times (e.g. UV rendering, where the
    geometry never changes). Rows are pixels in row-major order (``row * W + col``).

    >>> r = rasterize(np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0.0]]), np.array([[0, 1, 2]]), 2, 2)
    >>> interpolation_matrix(r, np.array([[0, 1, 2]]), 3).shape
    (4, 3)
    """
    import scipy.sparse

    t = _check_raster_triangles(raster, triangles)
    if isinstance(n_vertices, bool) or not isinstance(n_vertices, (int, np.integer)) or n_vertices <= 0:
        raise ValueError(f"n_vertices must be a positive int, got {n_vertices!r}")
    if t.size and int(t.max()) >= n_vertices:
        raise ValueError(f"triangles index vertex {int(t.max())} but n_vertices is {n_vertices}")
    h, w = raster.face_id.shape
    pix = np.flatnonzero(raster.mask.reshape(-1))
    cols = t[raster.face_id.reshape(-1)[pix]]               # (N, 3)
    vals = raster.bary.reshape(-1, 3)[pix].astype(np.float64)
    rows = np.repeat(pix, 3)
    m = scipy.sparse.coo_matrix((vals.reshape(-1), (rows, cols.reshape(-1))), shape=(h * w, int(n_vertices)))
    return m.tocsr()  # duplicate (pixel, vertex) entries, if a triangle repeats a vertex, are summed


def render_colors(
    vertices: np.ndarray,
    triangles: np.ndarray,
    colors: np.ndarray,
    height: int,
    width: int,
    background: float | np.ndarray = 0,
    *,
    cull_backfaces: bool = False,
) -> np.ndarray:
    """Rasterise a mesh and blend per-vertex colours (convenience: :func:`rasterize` + :func:`interpolate`).

    Args:
        vertices: ``(V, 3)`` image pixels (x right, y down, z toward the camera).
        triangles: ``(T, 3)`` int vertex indices.
        colors: ``(V, 3)`` per-vertex colour, any scale (e.g. RGB in [0, 1] or [0, 255]).
        height, width: output size in pixels.
        background: scalar or ``(3,)`` colour of uncovered pixels.
        cull_backfaces: as in :func:`rasterize` (front faces counter-clockwise on screen).
    Returns:
        ``(H, W, 3)`` float32 image in the colours' scale (cast to uint8 yourself if wanted).

    >>> img = render_colors(np.array([[0, 0, 0], [3, 0, 0], [0, 3, 0.0]]), np.array([[0, 1, 2]]),
    ...                     np.ones((3, 3)), 3, 3, background=0.5)
    >>> img[..., 0].tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.5]]
    """
    c = np.asarray(colors)
    if c.ndim != 2 or c.shape[1] != 3:
        raise ValueError(f"colors must be a (V, 3) array, got shape {c.shape}")
    bg = np.asarray(background, dtype=np.float32)
    if bg.shape not in ((), (3,)):
        raise ValueError(f"background must be a scalar or a (3,) colour, got shape {bg.shape}")
    raster = rasterize(vertices, triangles, height, width, cull_backfaces=cull_backfaces)
    img = interpolate(raster, triangles, c)
    img[~raster.mask] = bg
    return img


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit per-vertex normals ``(V, 3)`` float64: the area-weighted sum of the incident faces' normals.

    Face normals are ``(B - A) x (C - A)`` in the vertices' own frame, so their sign follows the winding; a vertex
    no triangle uses gets ``(0, 0, 0)``. One ``bincount`` per axis (the triangles' corners in order), so the sums
    are accumulated in the same order as ``numpy.add.at`` would.

    >>> vertex_normals(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]]), np.array([[0, 1, 2]]))[0].tolist()
    [0.0, 0.0, 1.0]
    """
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
    fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    corners = t.T.reshape(-1)  # corner 0 of every triangle, then corner 1, then corner 2
    weights = np.tile(fn, (3, 1))
    vn = np.stack([np.bincount(corners, weights[:, k], minlength=len(v)) for k in range(3)], axis=1)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
