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

    The pixel centres of each triangle's (clipped) bounding box are enumerated in chunks of at most
    ``chunk_size`` (triangle, pixel) pairs (first every box's first pixel, then the rest of the larger
    boxes), the coverage test of the module docstring keeps the inside pairs, and a stable sort by
    (pixel, -z) resolves the z-buffer, ties going to the lowest triangle index. Same output as
    :func:`rasterize_reference` (up to float rounding at exact ties).

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

    >>> r = rasterize(np.array([[0, 0, 1], [3, 0, 1], [0, 3, 1.0]]), np.array([[0, 1, 2]]), 3, 3)
    >>> r.mask.astype(int).tolist(), float(r.depth[1, 1])   # centres on the edge x + y = 3 are covered
    ([[1, 1, 1], [1, 1, 1], [1, 1, 0]], 1.0)
    """
    v, tri, h, w = _check_inputs(vertices, triangles, height, width, front_face)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    zbuf, fbuf, bbuf = _empty(h, w)
    if tri.shape[0] == 0:
        return _finish(zbuf, fbuf, bbuf)

    if not np.isfinite(v).all():  # slow path only when some vertex is bad: is it used?
        _check_finite(v[tri], tri)
    # Corner coordinates as contiguous 1-D arrays (short-axis reductions on (T, 3) are slow in numpy);
    # in-place operations below keep large temporaries (and their page faults) few.
    i0, i1, i2 = np.ascontiguousarray(tri.T)
    vx, vy = np.ascontiguousarray(v[:, 0]), np.ascontiguousarray(v[:, 1])
    ax, bx, cx = vx[i0], vx[i1], vx[i2]
    ay, by, cy = vy[i0], vy[i1], vy[i2]

    # Box of pixel centres that can pass the test, clipped to the image (in float, so that huge
    # coordinates never overflow an int cast). The points with all weights >= -eps form the triangle
    # scaled by (1 + 3 eps) about its centroid, hence the margin.
    x0, nxf = _pixel_range(ax, bx, cx, w)
    y0, nyf = _pixel_range(ay, by, cy, h)
    act = np.flatnonzero((nxf > 0) & (nyf > 0))  # ascending ids of triangles with centres in their box

    # Signed doubled area; drop degenerate (and, if asked, back-facing) triangles.
    ax, ay = ax[act], ay[act]
    e1x, e1y = bx[act] - ax, by[act] - ay
    e2x, e2y = cx[act] - ax, cy[act] - ay
    area2 = e1x * e2y - e1y * e2x
    keep = np.abs(area2) > DEGENERATE_AREA2
    if cull_backfaces:
        # area2 < 0: counter-clockwise on screen (y down); see module docstring.
        keep &= (area2 < 0) if front_face == "ccw" else (area2 > 0)
    if not keep.all():
        act, ax, ay, e1x, e1y, e2x, e2y, area2 = (a[keep] for a in (act, ax, ay, e1x, e1y, e2x, e2y, area2))
    if act.size == 0:
        return _finish(zbuf, fbuf, bbuf)

    # Per active triangle: w1 = dx*p1 + dy*q1, w2 = dx*p2 + dy*q2 with (dx, dy) = pixel - A (Cramer's
    # rule), w0 = 1 - w1 - w2; z = az + w1*(bz - az) + w2*(cz - az).
    inv = np.divide(1.0, area2, out=area2)
    vz = v[:, 2]
    az = vz[i0[act]]
    tp = _TriParams(
        x0=x0[act], y0=y0[act], ax=ax, ay=ay,
        p1=e2y * inv, q1=np.negative(e2x, out=e2x) * inv, p2=np.negative(e1y, out=e1y) * inv, q2=e1x * inv,
        az=az, dzb=vz[i1[act]] - az, dzc=vz[i2[act]] - az, tid=act,
    )
    nx = nxf[act].astype(np.int64)
    counts = nx * nyf[act].astype(np.int64)
    bufs = (zbuf.reshape(-1), fbuf.reshape(-1), bbuf.reshape(-1, 3))

    # Pass 1: the first pixel of every box, (x0, y0); at face-mesh densities most boxes hold one pixel.
    for c0 in range(0, act.size, chunk_size):
        sl = slice(c0, c0 + chunk_size)
        _test_and_merge(bufs, w, tp.take(sl), tp.x0[sl], tp.y0[sl])

    # Pass 2: the remaining pixels k = 1 .. count-1 of larger boxes (row-major within the box), enumerated
    # in chunks of at most chunk_size pairs so that a few large triangles cannot exhaust memory.
    multi = np.flatnonzero(counts > 1)
    if multi.size:
        rest = counts[multi] - 1
        ends = np.cumsum(rest)
        starts = ends - rest
        nx_m = nx[multi]
        tpm = tp.take(multi)
        total = int(ends[-1])
        for c0 in range(0, total, chunk_size):
            c1 = min(c0 + chunk_size, total)
            t0 = int(np.searchsorted(ends, c0, side="right"))  # boxes overlapping pairs [c0, c1)
            t1 = int(np.searchsorted(starts, c1, side="left"))
            local = np.minimum(ends[t0:t1], c1) - np.maximum(starts[t0:t1], c0)
            ti = np.repeat(np.arange(t0, t1), local)
            k = np.arange(c0 + 1, c1 + 1, dtype=np.int64) - starts[ti]
            n_x = nx_m[ti]
            row = k // n_x
            sub = tpm.take(ti)
            _test_and_merge(bufs, w, sub, sub.x0 + (k - row * n_x), sub.y0 + row)
    return _finish(zbuf, fbuf, bbuf)


def _pixel_range(a: np.ndarray, b: np.ndarray, c: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """First pixel centre and count (both float, count may be <= 0) along one axis, clipped to [0, size)."""
    lo = np.minimum(a, b)
    np.minimum(lo, c, out=lo)
    hi = np.maximum(a, b)
    np.maximum(hi, c, out=hi)
    margin = hi - lo
    margin *= 3 * COVERAGE_EPS
    margin += 1e-9
    lo -= margin
    np.ceil(lo, out=lo)
    np.clip(lo, 0, size, out=lo)
    hi += margin
    np.floor(hi, out=hi)
    np.clip(hi, -1, size - 1, out=hi)
    hi -= lo
    hi += 1
    return lo, hi


@dataclass(frozen=True)
class _TriParams:
    """Per-triangle constants of the coverage test, 1-D arrays of one length (see :func:`rasterize`)."""

    x0: np.ndarray
    y0: np.ndarray
    ax: np.ndarray
    ay: np.ndarray
    p1: np.ndarray
    q1: np.ndarray
    p2: np.ndarray
    q2: np.ndarray
    az: np.ndarray
    dzb: np.ndarray
    dzc: np.ndarray
    tid: np.ndarray

    def take(self, index: slice | np.ndarray) -> _TriParams:
        return _TriParams(**{f: getattr(self, f)[index] for f in self.__dataclass_fields__})


def _test_and_merge(
    bufs: tuple[np.ndarray, np.ndarray, np.ndarray], width: int, tp: _TriParams, px: np.ndarray, py: np.ndarray
) -> None:
    """Coverage-test pairs (triangle ``tp[n]``, pixel centre ``(px[n], py[n])``) and merge them into ``bufs``.

    ``bufs`` = flat depth (H*W,) float64, face id (H*W,) int64, barycentrics (H*W, 3) float64, updated in
    place. Pairs must come in ascending triangle order: a stable sort by (pixel, -z) then puts each pixel's
    winner (max z, then lowest id) first; it replaces the buffer entry if its z is larger, or equal with a
    lower id (earlier calls may have seen higher ids).
    """
    dx = px - tp.ax
    dy = py - tp.ay
    w1 = dx * tp.p1
    w1 += dy * tp.q1
    w2 = dx * tp.p2
    w2 += dy * tp.q2
    w0 = 1.0 - w1
    w0 -= w2
    inside = w0 >= -COVERAGE_EPS
    inside &= w1 >= -COVERAGE_EPS
    inside &= w2 >= -COVERAGE_EPS
    sel = np.flatnonzero(inside)
    if sel.size == 0:
        return
    wts = np.stack([w0[sel], w1[sel], w2[sel]], axis=1)
    np.maximum(wts, 0.0, out=wts)
    wts /= wts.sum(axis=1, keepdims=True)
    z = tp.az[sel] + wts[:, 1] * tp.dzb[sel] + wts[:, 2] * tp.dzc[sel]
    pix = (py[sel] * width + px[sel]).astype(np.int64)
    tid = tp.tid[sel]

    order = np.lexsort((-z, pix))
    ps = pix[order]
    first = np.ones(ps.shape[0], dtype=bool)
    np.not_equal(ps[1:], ps[:-1], out=first[1:])
    win = order[first]
    wp = pix[win]
    zflat, fflat, bflat = bufs
    zw, zb = z[win], zflat[wp]
    better = (zw > zb) | ((zw == zb) & (tid[win] < fflat[wp]))
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

    >>> r = rasterize_reference(np.array([[0, 0, 1], [3, 0, 1], [0, 3, 1.0]]), np.array([[0, 1, 2]]), 3, 3)
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
