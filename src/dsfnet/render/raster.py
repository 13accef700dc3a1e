"""Orthographic z-buffer rasterisation of triangle meshes in image pixels (pure numpy).

Frame (``docs/CONVENTIONS.md``, "image"): x right, y down, z toward the camera (larger z = nearer);
a vertex ``(x, y, z)`` lands on pixel ``(x, y)`` and pixel ``(row i, col j)`` has its centre at
``(x=j, y=i)``. The same code rasterises in any 2-D pixel frame with a depth, e.g. UV cells
(``x = col``, ``y = row``).

Rules shared by :func:`rasterize` and its slow twin :func:`rasterize_reference`:

* **Coverage.** Pixel centre ``p`` is covered by triangle ``(A, B, C)`` when all three barycentric
  weights of ``p`` (computed from x, y only) are ``>= -COVERAGE_EPS``: interior, edges and corners are
  covered (inclusive), and the tiny tolerance makes a centre lying exactly on an edge count for both
  neighbouring triangles regardless of rounding. Weights are then clipped at 0 and renormalised to sum to 1.
* **Winding.** Both windings are drawn unless ``cull_backfaces=True``. The screen winding of a triangle is
  the sign of ``area2 = (B - A) x (C - A)`` (z of the cross product of the x, y parts, image pixels): with
  y down, ``area2 > 0`` runs **clockwise** on screen and ``area2 < 0`` counter-clockwise. A mesh whose
  triangles run counter-clockwise seen from outside in the right-handed, y-up model frame keeps that look
  on screen after the ``F = diag(1, -1, 1)`` reflection, so ``front_face="ccw"`` (the default) drops its
  back faces.
* **Depth test.** Depth is the barycentric blend of the corner z (exact for orthographic projection).
  The largest z wins; on an exact tie (in float64) the lowest triangle index wins.
* **Skipped triangles.** Degenerate ones (``|area2| <= DEGENERATE_AREA2`` px²) and parts outside the
  ``height x width`` image (clipped). Vertices referenced by a triangle must be finite (``ValueError``);
  unreferenced vertices are never read, so they may be NaN (e.g. invalid cells of a UV-grid mesh).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "COVERAGE_EPS",
    "DEGENERATE_AREA2",
    "Raster",
    "rasterize",
    "rasterize_reference",
]

#: Inclusive tolerance on barycentric weights for the coverage test (dimensionless).
COVERAGE_EPS = 1e-7
#: Triangles with ``|2 * signed area| <= DEGENERATE_AREA2`` (pixels²) are skipped.
DEGENERATE_AREA2 = 1e-10
#: Default number of candidate (triangle, pixel) pairs tested at once; bounds memory (~40 MB peak).
DEFAULT_CHUNK = 1 << 18

_FRONT_FACES = ("ccw", "cw")


@dataclass(frozen=True)
class Raster:
    """Result of rasterising a mesh into an ``H x W`` image (image-pixel frame, see module docstring).

    Attributes:
        depth: ``(H, W)`` float32 z of the nearest surface at each pixel centre (same units as the vertex
            z, larger = nearer the camera); ``-inf`` where no triangle covers the pixel.
        face_id: ``(H, W)`` int32 index into the ``triangles`` array of the visible triangle; ``-1`` where empty.
        bary: ``(H, W, 3)`` float32 barycentric weights of the visible triangle's 3 corners, in the order of
            its row of ``triangles``; each in ``[0, 1]``, summing to 1; ``0`` where empty.
    """

    depth: np.ndarray
    face_id: np.ndarray
    bary: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool, True where a triangle covers the pixel (``face_id >= 0``)."""
        return self.face_id >= 0

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the raster."""
        return self.face_id.shape  # type: ignore[return-value]


def _check_inputs(
    vertices: np.ndarray, triangles: np.ndarray, height: int, width: int, front_face: str
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Validate and convert: returns ``(vertices (V, 3) float64, triangles (T, 3) int64, H, W)``."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if front_face not in _FRONT_FACES:
        raise ValueError(f"front_face must be one of {_FRONT_FACES}, got {front_face!r}")
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3 or not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"vertices must be a numeric (V, 3) array (x, y, z image pixels), got shape {v.shape} "
                         f"dtype {v.dtype}")
    v = v.astype(np.float64, copy=False)
    t = np.asarray(triangles)
    if t.size == 0:
        return v, np.zeros((0, 3), dtype=np.int64), int(height), int(width)
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"triangles must be a (T, 3) array of vertex indices, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"triangles must have an integer dtype, got {t.dtype}")
    t = t.astype(np.int64, copy=False)
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= v.shape[0]:
        raise ValueError(f"triangle indices must lie in [0, {v.shape[0] - 1}] for {v.shape[0]} vertices, "
                         f"got range [{lo}, {hi}]")
    return v, t, int(height), int(width)


def _check_finite(corners: np.ndarray, triangles: np.ndarray) -> None:
    """Raise ``ValueError`` naming the first triangle with a non-finite corner. corners: (T, 3, 3)."""
    bad = ~np.isfinite(corners).all(axis=(1, 2))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"vertices used by {int(bad.sum())} triangle(s) are not finite (NaN/inf); first is "
                         f"triangle {first} with corners {triangles[first].tolist()}")


def _empty(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.full((height, width), -np.inf, dtype=np.float64),
            np.full((height, width), -1, dtype=np.int64),
            np.zeros((height, width, 3), dtype=np.float64))


def _finish(depth: np.ndarray, face: np.ndarray, bary: np.ndarray) -> Raster:
    return Raster(depth=depth.astype(np.float32), face_id=face.astype(np.int32), bary=bary.astype(np.float32))


def rasterize(
    vertices: np.ndarray,
    triangles: np.ndarray,
    height: int,
    width: int,
    *,
    cull_backfaces: bool = False,
    front_face: str = "ccw",
    chunk_size: int = DEFAULT_CHUNK,
) -> Raster:
    """Z-buffer a triangle mesh into an ``height x width`` image, orthographically (vectorised numpy).

    Each triangle's (clipped) bounding box of pixel centres is enumerated in chunks of at most
    ``chunk_size`` (triangle, pixel) pairs, the coverage test of the module docstring keeps the inside
    pairs, and a stable sort by (pixel, -z) resolves the z-buffer (pairs are in triangle order, so ties go
    to the lowest triangle index). Identical output to :func:`rasterize_reference`.

    Args:
        vertices: ``(V, 3)`` float, image pixels: x right, y down, z toward the camera (any scale).
        triangles: ``(T, 3)`` int vertex indices (either winding); ``T = 0`` gives an empty raster.
        height, width: image size ``H``, ``W`` in pixels.
        cull_backfaces: drop triangles whose screen winding is not ``front_face``.
        front_face: ``"ccw"`` or ``"cw"``: screen winding (as displayed, y down) of front faces.
        chunk_size: speed/memory only; the output does not depend on it.
    Returns:
        :class:`Raster` with ``depth (H, W)``, ``face_id (H, W)``, ``bary (H, W, 3)``.
    Raises:
        ValueError: bad shapes/dtypes, out-of-range indices, or non-finite vertices used by a triangle.

    >>> r = rasterize(np.array([[0, 0, 1], [4, 0, 1], [0, 4, 1.0]]), np.array([[0, 1, 2]]), 3, 3)
    >>> r.mask.astype(int).tolist(), float(r.depth[1, 1])
    ([[1, 1, 1], [1, 1, 1], [1, 1, 0]], 1.0)
    """
    v, tri, h, w = _check_inputs(vertices, triangles, height, width, front_face)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    zbuf, fbuf, bbuf = _empty(h, w)
    if tri.shape[0] == 0:
        return _finish(zbuf, fbuf, bbuf)

    corners = v[tri]  # (T, 3 corners, 3 xyz)
    _check_finite(corners, tri)
    ax, ay, az = corners[:, 0, 0], corners[:, 0, 1], corners[:, 0, 2]
    e1x, e1y = corners[:, 1, 0] - ax, corners[:, 1, 1] - ay
    e2x, e2y = corners[:, 2, 0] - ax, corners[:, 2, 1] - ay
    area2 = e1x * e2y - e1y * e2x
    keep = np.abs(area2) > DEGENERATE_AREA2
    if cull_backfaces:
        # area2 < 0: counter-clockwise on screen (y down); see module docstring.
        keep &= (area2 < 0) if front_face == "ccw" else (area2 > 0)

    # Bounding box of pixel centres that can pass the test. The points with all weights >= -eps form the
    # triangle scaled by (1 + 3 eps) about its centroid, hence the margin.
    xs, ys = corners[:, :, 0], corners[:, :, 1]
    xmin, xmax = xs.min(axis=1), xs.max(axis=1)
    ymin, ymax = ys.min(axis=1), ys.max(axis=1)
    mx = 3 * COVERAGE_EPS * (xmax - xmin) + 1e-9
    my = 3 * COVERAGE_EPS * (ymax - ymin) + 1e-9
    x0 = np.clip(np.ceil(xmin - mx), 0, w)  # clip in float: huge coordinates never overflow the int cast
    x1 = np.clip(np.floor(xmax + mx), -1, w - 1)
    y0 = np.clip(np.ceil(ymin - my), 0, h)
    y1 = np.clip(np.floor(ymax + my), -1, h - 1)
    nx = (x1 - x0 + 1).astype(np.int64)
    ny = (y1 - y0 + 1).astype(np.int64)
    keep &= (nx > 0) & (ny > 0)
    act = np.flatnonzero(keep)  # ascending triangle ids
    if act.size == 0:
        return _finish(zbuf, fbuf, bbuf)

    # Per active triangle: w1 = dx*p1 + dy*q1, w2 = dx*p2 + dy*q2 with (dx, dy) = pixel - A (Cramer's rule).
    inv = 1.0 / area2[act]
    # columns: x0, y0, ax, ay, p1, q1, p2, q2, az, bz - az, cz - az  (float64 rows, gathered once per pair)
    params = np.stack([
        x0[act], y0[act], ax[act], ay[act],
        e2y[act] * inv, -e2x[act] * inv, -e1y[act] * inv, e1x[act] * inv,
        az[act], corners[act, 1, 2] - az[act], corners[act, 2, 2] - az[act],
    ], axis=1)
    nx_act = nx[act]
    counts = nx_act * ny[act]
    ends = np.cumsum(counts)
    starts = ends - counts
    total = int(ends[-1])

    for c0 in range(0, total, chunk_size):
        c1 = min(c0 + chunk_size, total)
        # active triangles overlapping the candidate range [c0, c1)
        t0 = int(np.searchsorted(ends, c0, side="right"))
        t1 = int(np.searchsorted(starts, c1, side="left"))
        local = np.minimum(ends[t0:t1], c1) - np.maximum(starts[t0:t1], c0)
        ti = np.repeat(np.arange(t0, t1), local)
        k = np.arange(c0, c1, dtype=np.int64) - starts[ti]
        n_x = nx_act[ti]
        row = k // n_x
        col = k - row * n_x
        p = params[ti]
        px = p[:, 0] + col
        py = p[:, 1] + row
        dx = px - p[:, 2]
        dy = py - p[:, 3]
        w1 = dx * p[:, 4] + dy * p[:, 5]
        w2 = dx * p[:, 6] + dy * p[:, 7]
        w0 = 1.0 - w1 - w2
        inside = (w0 >= -COVERAGE_EPS) & (w1 >= -COVERAGE_EPS) & (w2 >= -COVERAGE_EPS)
        if not inside.any():
            continue
        sel = np.flatnonzero(inside)
        _resolve_chunk(
            zbuf.reshape(-1), fbuf.reshape(-1), bbuf.reshape(-1, 3),
            pix=(py[sel] * w + px[sel]).astype(np.int64), tid=act[ti[sel]],
            w0=w0[sel], w1=w1[sel], w2=w2[sel], zp=p[sel][:, 8:11],
        )
    return _finish(zbuf, fbuf, bbuf)


def _resolve_chunk(
    zflat: np.ndarray, fflat: np.ndarray, bflat: np.ndarray, *,
    pix: np.ndarray, tid: np.ndarray, w0: np.ndarray, w1: np.ndarray, w2: np.ndarray, zp: np.ndarray,
) -> None:
    """Merge covered (pixel, triangle) pairs of one chunk into the flat buffers, in place.

    Pairs arrive in ascending triangle order and chunks arrive in ascending order too, so a stable sort by
    (pixel, -z) puts the winner (max z, then lowest id) first in each pixel group, and a later chunk only
    replaces a buffer entry with a strictly larger z.
    """
    wts = np.stack([w0, w1, w2], axis=1)
    np.maximum(wts, 0.0, out=wts)
    wts /= wts.sum(axis=1, keepdims=True)
    z = zp[:, 0] + wts[:, 1] * zp[:, 1] + wts[:, 2] * zp[:, 2]
    order = np.lexsort((-z, pix))
    ps = pix[order]
    first = np.ones(ps.shape[0], dtype=bool)
    first[1:] = ps[1:] != ps[:-1]
    win = order[first]
    wp = pix[win]
    better = z[win] > zflat[wp]
    win, wp = win[better], wp[better]
    zflat[wp] = z[win]
    fflat[wp] = tid[win]
    bflat[wp] = wts[win]


def rasterize_reference(
    vertices: np.ndarray,
    triangles: np.ndarray,
    height: int,
    width: int,
    *,
    cull_backfaces: bool = False,
    front_face: str = "ccw",
) -> Raster:
    """Slow, obviously correct twin of :func:`rasterize`: same arguments, rules and output.

    Loops over triangles in index order and over the pixels of each (padded) bounding box in plain Python,
    computes the three barycentric weights from edge functions and keeps a pixel when its z is strictly
    larger than the buffer's (so the lowest index wins exact ties). For tests and benchmarks only.

    >>> r = rasterize_reference(np.array([[0, 0, 1], [4, 0, 1], [0, 4, 1.0]]), np.array([[0, 1, 2]]), 3, 3)
    >>> r.face_id.tolist()
    [[0, 0, 0], [0, 0, 0], [0, 0, -1]]
    """
    v, tri, h, w = _check_inputs(vertices, triangles, height, width, front_face)
    depth, face, bary = _empty(h, w)
    if tri.shape[0] == 0:
        return _finish(depth, face, bary)
    _check_finite(v[tri], tri)

    def edge(ax: float, ay: float, bx: float, by: float, px: float, py: float) -> float:
        # z of (B - A) x (P - A): twice the signed area of triangle (A, B, P)
        return (bx - ax) * (py - ay) - (by - ay) * (px - ax)

    for t in range(tri.shape[0]):
        (xa, ya, za), (xb, yb, zb), (xc, yc, zc) = (v[i].tolist() for i in tri[t])
        area2 = edge(xa, ya, xb, yb, xc, yc)
        if abs(area2) <= DEGENERATE_AREA2:
            continue
        if cull_backfaces and ((area2 >= 0) if front_face == "ccw" else (area2 <= 0)):
            continue
        # one pixel of padding around the box: a superset of every centre that can pass the test
        r_lo = max(0, math.floor(min(ya, yb, yc)) - 1)
        r_hi = min(h - 1, math.ceil(max(ya, yb, yc)) + 1)
        c_lo = max(0, math.floor(min(xa, xb, xc)) - 1)
        c_hi = min(w - 1, math.ceil(max(xa, xb, xc)) + 1)
        for i in range(r_lo, r_hi + 1):
            for j in range(c_lo, c_hi + 1):
                # pixel (row i, col j) has its centre at (x=j, y=i)
                b0 = edge(xb, yb, xc, yc, j, i) / area2
                b1 = edge(xc, yc, xa, ya, j, i) / area2
                b2 = edge(xa, ya, xb, yb, j, i) / area2
                if min(b0, b1, b2) < -COVERAGE_EPS:
                    continue
                b0, b1, b2 = max(b0, 0.0), max(b1, 0.0), max(b2, 0.0)
                s = b0 + b1 + b2
                b0, b1, b2 = b0 / s, b1 / s, b2 / s
                z = za + b1 * (zb - za) + b2 * (zc - za)
                if z > depth[i, j]:
                    depth[i, j] = z
                    face[i, j] = t
                    bary[i, j] = (b0, b1, b2)
    return _finish(depth, face, bary)
