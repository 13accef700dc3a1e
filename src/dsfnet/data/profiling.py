"""Face profiling (how 300W-LP was made): new views of a photographed face at other yaw/pitch.

Given a photo and its 3DMM fit (raw ``shape``, ``exp``, ``Pose_Para`` in the photo's pixels), :func:`profile_face`

1. poses the mesh in the photo and z-buffers it (:func:`dsfnet.render.rasterize`) to find the vertices that
   are visible there (their z within :data:`VISIBILITY_TOL_PX` of the z-buffer at their pixel);
2. textures the mesh from the photo: visible vertices take the bilinear colour at their projected position;
   hidden ones take the colour of the nearest visible vertex in model space, then a few rounds of averaging
   over mesh neighbours (hidden vertices only) smooth the fill;
3. rotates the face about its own centre (the mean of its vertices stays where it projects in the photo):
   new angles ``pitch + delta_pitch``, ``yaw + delta_yaw``, roll kept; scale kept; ``t`` solved for;
4. renders the textured mesh with the new pose;
5. fills the background: the old face region is inpainted (``cv2.inpaint``, Telea, at reduced size) so no
   ghost of the old face shows where the new view uncovers it; with ``background="warp"`` (default) the
   result is then warped with a thin-plate spline that moves the mesh's boundary vertices from their old to
   their new projected positions and keeps the image border fixed, so hair and neck follow the head; the
   rendered face is composited over it with a 1-pixel feathered edge.

Returns the new image and the new ``Pose_Para`` (same shape and expression). Frames: image pixels, x right,
y down, z toward the camera (``docs/CONVENTIONS.md``). Deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dsfnet.geometry import decode_vertices, pose_para_to_image, pose_para_to_matrix
from dsfnet.render import interpolate, rasterize

#: a vertex is visible when its z is within this many pixels of the z-buffer at its pixel
VISIBILITY_TOL_PX = 1.5
#: rounds of neighbour averaging of the colours of hidden vertices
FILL_SMOOTHING = 4
#: boundary vertices used as thin-plate-spline anchors (evenly subsampled)
N_ANCHORS = 96
#: the warp field is evaluated on a grid of this step (pixels) and upsampled bilinearly
WARP_STEP = 8


@dataclass(frozen=True)
class ProfiledView:
    """Result of :func:`profile_face`.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB new view.
        pose_para: ``(7,)`` float64 new ``Pose_Para`` (radians, this image's pixels).
        face_mask: ``(H, W)`` bool, pixels covered by the rendered face mesh.
        visible: ``(N,)`` bool, vertices visible in the *original* photo (their colours were observed).
    """

    image: np.ndarray
    pose_para: np.ndarray
    face_mask: np.ndarray
    visible: np.ndarray


def rotate_pose(pose_para, centre_model: np.ndarray, delta_pitch: float = 0.0, delta_yaw: float = 0.0) -> np.ndarray:
    """New ``Pose_Para`` with the angles changed and ``centre_model (3,)`` kept at the same image point."""
    p = np.asarray(pose_para, dtype=np.float64).reshape(-1).copy()
    if p.shape != (7,):
        raise ValueError(f"pose_para must have 7 values, got {p.shape[0]}")
    c = np.asarray(centre_model, dtype=np.float64)
    old = pose_para_to_matrix(p[0], p[1], p[2])
    p[0] += delta_pitch
    p[1] += delta_yaw
    new = pose_para_to_matrix(p[0], p[1], p[2])
    p[3:6] = p[3:6] + p[6] * (old @ c) - p[6] * (new @ c)
    return p


def vertex_visibility(vertices_image: np.ndarray, triangles: np.ndarray, height: int, width: int,
                      tol: float = VISIBILITY_TOL_PX, raster=None) -> np.ndarray:
    """``(N,)`` bool: inside the image and not hidden by the mesh itself (z-buffer test, image px).

    ``raster``: the mesh's :class:`dsfnet.render.Raster` if already computed (else rasterised here).
    """
    v = vertices_image
    if raster is None:
        raster = rasterize(v, triangles, height, width)
    col = np.rint(v[:, 0]).astype(np.int64)
    row = np.rint(v[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    vis = np.zeros(len(v), dtype=bool)
    idx = np.flatnonzero(inside)
    zbuf = raster.depth[row[idx], col[idx]]
    vis[idx] = np.isfinite(zbuf) & (v[idx, 2] >= zbuf - tol)
    return vis


def _adjacency(triangles: np.ndarray, n: int):
    import scipy.sparse as sp

    t = triangles
    i = np.concatenate([t[:, 0], t[:, 1], t[:, 2], t[:, 1], t[:, 2], t[:, 0]])
    j = np.concatenate([t[:, 1], t[:, 2], t[:, 0], t[:, 0], t[:, 1], t[:, 2]])
    a = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    a.data[:] = 1.0
    deg = np.asarray(a.sum(axis=1)).ravel()
    return sp.diags(1.0 / np.maximum(deg, 1)) @ a


def sample_bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear colours ``(K, C)`` float64 of ``image (H, W, C)`` at ``points (K, 2)`` (x, y) px, edge-clamped."""
    h, w = image.shape[:2]
    x = np.clip(points[:, 0], 0, w - 1)
    y = np.clip(points[:, 1], 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2) if w > 1 else np.zeros(len(x), np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2) if h > 1 else np.zeros(len(y), np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    im = image.astype(np.float64)
    return ((im[y0, x0] * (1 - fx) + im[y0, x1] * fx) * (1 - fy) + (im[y1, x0] * (1 - fx) + im[y1, x1] * fx) * fy)


def vertex_colors_from_image(image: np.ndarray, vertices_image: np.ndarray, visible: np.ndarray,
                             vertices_model: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """``(N, 3)`` float32 RGB per vertex: sampled where visible, nearest visible + smoothing elsewhere."""
    from scipy.spatial import cKDTree

    n = len(vertices_image)
    colors = sample_bilinear(image, vertices_image[:, :2])
    hidden = ~visible
    if visible.sum() == 0:
        raise ValueError("no vertex of the face is visible in the photo; cannot texture it")
    if hidden.any():
        _, near = cKDTree(vertices_model[visible]).query(vertices_model[hidden])
        colors[hidden] = colors[visible][near]
        avg = _adjacency(triangles, n)
        for _ in range(FILL_SMOOTHING):
            colors[hidden] = (avg @ colors)[hidden]
    return colors.astype(np.float32)


def boundary_vertices(triangles: np.ndarray) -> np.ndarray:
    """Vertex ids on the mesh boundary (edges used by exactly one triangle), sorted."""
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    e = np.sort(e, axis=1).astype(np.int64)
    key = e[:, 0] * (int(e.max()) + 1) + e[:, 1]  # one int per undirected edge (1-D unique is fast)
    uniq, counts = np.unique(key, return_counts=True)
    once = uniq[counts == 1]
    n = int(e.max()) + 1
    return np.unique(np.concatenate([once // n, once % n]))


def _border_points(height: int, width: int, per_side: int = 8) -> np.ndarray:
    xs = np.linspace(0, width - 1, per_side)
    ys = np.linspace(0, height - 1, per_side)
    pts = [np.stack([xs, np.zeros_like(xs)], 1), np.stack([xs, np.full_like(xs, height - 1)], 1),
           np.stack([np.zeros_like(ys), ys], 1), np.stack([np.full_like(ys, width - 1), ys], 1)]
    return np.unique(np.concatenate(pts), axis=0)


def warp_background(image: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
    """Warp ``image`` with a thin-plate spline taking ``src_points (K, 2)`` to ``dst_points (K, 2)`` (image px).

    The image border is pinned. Backward mapping: each output pixel samples the input at the spline of
    ``src − dst`` evaluated at the pixel, computed on a coarse grid and upsampled.
    """
    from scipy.interpolate import RBFInterpolator

    h, w = image.shape[:2]
    border = _border_points(h, w)
    dst = np.concatenate([dst_points, border])
    disp = np.concatenate([src_points - dst_points, np.zeros_like(border)])
    dst, keep = np.unique(np.round(dst, 3), axis=0, return_index=True)
    disp = disp[keep]
    rbf = RBFInterpolator(dst, disp, kernel="thin_plate_spline", smoothing=1.0)
    gy, gx = np.meshgrid(np.arange(0, h + WARP_STEP, WARP_STEP), np.arange(0, w + WARP_STEP, WARP_STEP), indexing="ij")
    coarse = rbf(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(gx.shape + (2,)).astype(np.float32)
    full = cv2.resize(coarse, (coarse.shape[1] * WARP_STEP, coarse.shape[0] * WARP_STEP),
                      interpolation=cv2.INTER_LINEAR)[:h, :w]
    # cv2.resize samples at pixel centres of the coarse grid; this small offset is irrelevant for a smooth field
    mx = np.arange(w, dtype=np.float32)[None, :] + full[..., 0]
    my = np.arange(h, dtype=np.float32)[:, None] + full[..., 1]
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _inpaint(image: np.ndarray, mask: np.ndarray, work_side: int = 160) -> np.ndarray:
    """``cv2.inpaint`` (Telea) of ``mask`` computed at a reduced size (fast), pasted back under the mask only."""
    h, w = mask.shape
    f = min(1.0, work_side / max(h, w))
    if f >= 1.0:
        return cv2.inpaint(image, mask, 5, cv2.INPAINT_TELEA)
    small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask, small.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    small_mask = cv2.dilate(small_mask, np.ones((3, 3), np.uint8))
    filled = cv2.resize(cv2.inpaint(small, small_mask, 3, cv2.INPAINT_TELEA), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(mask[..., None] > 0, filled, image)


def profile_face(image: np.ndarray, face_model, shape, exp, pose_para, *, delta_yaw: float = 0.0,
                 delta_pitch: float = 0.0, background: str = "warp") -> ProfiledView:
    """Render the photographed face at a new yaw/pitch (module docstring).

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        face_model: :class:`dsfnet.facemodel.FaceModel`.
        shape, exp: raw coefficients of the fit; pose_para: ``(7,)`` ``Pose_Para`` in this photo.
        delta_yaw, delta_pitch: radians added to the angles.
        background: ``"warp"`` (thin-plate spline) or ``"inpaint"`` (``cv2.inpaint`` of the old face).
    Returns:
        :class:`ProfiledView` with the new image and ``Pose_Para``.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {img.shape} dtype {img.dtype}")
    if background not in ("warp", "inpaint"):
        raise ValueError(f"background must be 'warp' or 'inpaint', got {background!r}")
    h, w = img.shape[:2]
    fm = face_model
    tris = np.asarray(fm.triangles, dtype=np.int64)
    v_model = decode_vertices(fm.mean, fm.shape_basis, fm.exp_basis, shape, exp).astype(np.float64)
    v_old = pose_para_to_image(v_model, pose_para, h)
    raster_old = rasterize(v_old, tris, h, w)
    visible = vertex_visibility(v_old, tris, h, w, raster=raster_old)
    colors = vertex_colors_from_image(img, v_old, visible, v_model, tris)

    new_pose = rotate_pose(pose_para, v_model.mean(axis=0), delta_pitch, delta_yaw)
    v_new = pose_para_to_image(v_model, new_pose, h)
    raster = rasterize(v_new, tris, h, w)
    face = interpolate(raster, tris, colors)
    mask = raster.mask

    # the old face is removed first, so the part of it the new view uncovers is not a ghost of the old face
    old_mask = cv2.dilate(raster_old.mask.astype(np.uint8), np.ones((5, 5), np.uint8))
    bg = _inpaint(img, old_mask)
    if background == "warp":
        bnd = boundary_vertices(tris)
        if len(bnd) > N_ANCHORS:
            bnd = bnd[np.linspace(0, len(bnd) - 1, N_ANCHORS).round().astype(np.int64)]
        bg = warp_background(bg, v_old[bnd, :2], v_new[bnd, :2])

    alpha = cv2.erode(mask.astype(np.float32), np.ones((3, 3), np.uint8))
    alpha = cv2.GaussianBlur(alpha, (3, 3), 0.7)
    alpha = np.where(mask, np.maximum(alpha, 0.5), 0.0)[..., None]
    out = bg.astype(np.float32) * (1 - alpha) + face * alpha
    return ProfiledView(image=np.clip(out + 0.5, 0, 255).astype(np.uint8), pose_para=new_pose,
                        face_mask=mask, visible=visible)
