"""Deterministic synthetic occluders for the occlusion-robustness evaluation.

:func:`occlude` pastes opaque shapes (ellipses, rotated rectangles, random convex polygons, thick strokes),
each filled with its own texture (solid colour, grey, coloured noise, stripes, checkerboard, linear gradient),
over a face box until a requested fraction of the box's pixels is covered. Everything is drawn from
``numpy.random.default_rng(seed)``, so the same ``(image size, box, coverage, seed)`` always gives the same
occluders, whichever predictor is evaluated.

Coverage is measured over the pixels whose centres lie in the box, clipped to the image
(:func:`dsfnet.geometry.boxes.box_coverage`, the measure of the training occluders too); occluders may extend past
the box (they are clipped only by the image). The measured coverage is within
:data:`COVERAGE_TOLERANCE` of the request (the last shape is shrunk about its centre to land on it).

This generator is deliberately separate from the training occluders (:mod:`dsfnet.data.occlusion`: wavy
blobs, hands, face masks, photo textures): evaluating with the very shapes the network was trained on would
flatter it, so the benchmark uses a held-out family of shapes and textures.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from dsfnet.geometry.boxes import box_pixels

#: |measured − requested| coverage the generator aims for (fraction of the box)
COVERAGE_TOLERANCE = 0.005
_MAX_SHAPES = 80
#: shapes are drawn in a window extending this fraction of the box side beyond the box
_WINDOW_MARGIN = 0.8
_SHAPES = ("ellipse", "rectangle", "polygon", "stroke")
_TEXTURES = ("solid", "grey", "noise", "stripes", "checker", "gradient")


def _shape_mask(kind: str, params: dict, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise one shape (``params`` drawn once; ``scale`` shrinks it about its centre)."""
    m = np.zeros(shape, dtype=np.uint8)
    cx, cy = params["center"]
    shift = 4  # sub-pixel precision for cv2 drawing
    f = float(1 << shift)
    if kind == "ellipse":
        axes = (max(1, int(params["a"] * scale * f)), max(1, int(params["b"] * scale * f)))
        cv2.ellipse(m, (int(cx * f), int(cy * f)), axes, params["angle"], 0, 360, 1, -1, cv2.LINE_8, shift)
    elif kind in ("rectangle", "polygon"):
        pts = params["points"] * scale + [cx, cy]
        cv2.fillPoly(m, [np.round(pts * f).astype(np.int32)], 1, cv2.LINE_8, shift)
    elif kind == "stroke":
        p, q = params["points"] * scale + [cx, cy]
        cv2.line(m, tuple(np.round(p * f).astype(int)), tuple(np.round(q * f).astype(int)), 1,
                 max(1, int(round(params["width"] * scale))), cv2.LINE_8, shift)
    return m.astype(bool)


def _draw_shape_params(rng: np.random.Generator, kind: str, box_w: float, box_h: float, center) -> dict:
    size = math.sqrt(box_w * box_h) * rng.uniform(0.18, 0.45)
    if kind == "ellipse":
        return {"center": center, "a": size * rng.uniform(0.6, 1.4), "b": size * rng.uniform(0.4, 1.0),
                "angle": float(rng.uniform(0, 180))}
    if kind == "rectangle":
        w, h, t = size * rng.uniform(0.8, 2.0), size * rng.uniform(0.4, 1.2), rng.uniform(0, math.pi)
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        return {"center": center, "points": corners @ rot.T}
    if kind == "polygon":
        n = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, 2 * math.pi, n))
        rad = size * rng.uniform(0.6, 1.3, n)
        return {"center": center, "points": np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)}
    length, t = size * rng.uniform(1.5, 3.0), rng.uniform(0, math.pi)
    d = np.array([math.cos(t), math.sin(t)]) * length / 2
    return {"center": center, "points": np.stack([-d, d]), "width": size * rng.uniform(0.3, 0.7)}


def _texture_params(rng: np.random.Generator, kind: str) -> dict:
    """Random parameters of one texture (drawn before the shape is known to be kept: deterministic order)."""
    p = {"kind": kind, "c1": rng.integers(0, 256, 3).astype(np.float64),
         "c2": rng.integers(0, 256, 3).astype(np.float64), "angle": float(rng.uniform(0, math.pi))}
    if kind == "grey":
        p["c1"] = np.full(3, float(rng.integers(0, 256)))
    elif kind == "noise":
        p["sigma"] = float(rng.uniform(20, 60))
    elif kind in ("stripes", "checker"):
        p["period"] = float(rng.uniform(4, 16))
    return p


def _texture_at(p: dict, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Texture colours ``(K, 3)`` uint8 at pixels ``(yy, xx)`` (window coordinates)."""
    kind, c1, c2 = p["kind"], p["c1"], p["c2"]
    if kind in ("solid", "grey"):
        return np.broadcast_to(c1.astype(np.uint8), (len(yy), 3))
    if kind == "noise":
        return np.clip(c1 + rng.normal(0.0, p["sigma"], (len(yy), 3)), 0, 255).astype(np.uint8)
    t = p["angle"]
    along = xx * math.cos(t) + yy * math.sin(t)
    if kind == "stripes":
        sel = (np.floor(along / (p["period"] / 2)) % 2).astype(bool)
    elif kind == "checker":
        across = -xx * math.sin(t) + yy * math.cos(t)
        sel = ((np.floor(along / p["period"]) + np.floor(across / p["period"])) % 2).astype(bool)
    else:  # gradient across the occluder
        a = (along - along.min()) / max(float(np.ptp(along)), 1.0) if len(along) else along
        return (c1 * (1 - a[:, None]) + c2 * a[:, None]).astype(np.uint8)
    return np.where(sel[:, None], c1, c2).astype(np.uint8)


def occlude(image: np.ndarray, face_box, coverage: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Paste deterministic synthetic occluders over ``coverage`` of ``face_box``.

    Args:
        image: ``(H, W, 3)`` uint8 (RGB; the colours are random anyway).
        face_box: ``[x0, y0, x1, y1]`` image pixels (e.g. the GT landmarks' box).
        coverage: requested fraction of the box's pixels to cover, in ``[0, 1]``.
        seed: seed of ``numpy.random.default_rng``.
    Returns:
        ``(occluded image (H, W, 3) uint8, mask (H, W) bool)``; the mask marks every occluded pixel (also
        outside the box). ``box_coverage(mask, face_box)`` is within :data:`COVERAGE_TOLERANCE` of ``coverage``.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 image, got shape {img.shape}, dtype {img.dtype}")
    if not (0.0 <= float(coverage) <= 1.0):
        raise ValueError(f"coverage must be in [0, 1], got {coverage}")
    h, w = img.shape[:2]
    rows, cols = box_pixels(face_box, img.shape)
    n_box = (rows.stop - rows.start) * (cols.stop - cols.start)
    if rows.stop <= rows.start or cols.stop <= cols.start:
        raise ValueError(f"face box {list(face_box)} holds no pixel of the {w}×{h} image")
    out = img.copy()
    mask = np.zeros((h, w), dtype=bool)
    target = float(coverage)
    if target <= 0.0:
        return out, mask
    if target >= 1.0:  # the whole box: one textured rectangle (exact)
        rng = np.random.default_rng(seed)
        mask[rows, cols] = True
        yy, xx = np.nonzero(mask)
        out[mask] = _texture_at(_texture_params(rng, "noise"), yy, xx, rng)
        return out, mask

    rng = np.random.default_rng(seed)
    box_w, box_h = float(cols.stop - cols.start), float(rows.stop - rows.start)
    # work inside a window around the box that holds every shape (centres in the box, extent < 0.8 box side)
    margin = int(math.ceil(_WINDOW_MARGIN * max(box_w, box_h)))
    wr = slice(max(0, rows.start - margin), min(h, rows.stop + margin))
    wc = slice(max(0, cols.start - margin), min(w, cols.stop + margin))
    wshape = (wr.stop - wr.start, wc.stop - wc.start)
    br = slice(rows.start - wr.start, rows.stop - wr.start)  # the box inside the window
    bc = slice(cols.start - wc.start, cols.stop - wc.start)
    wmask = np.zeros(wshape, dtype=bool)
    wout = out[wr, wc]
    covered = 0
    for _ in range(_MAX_SHAPES):
        if abs(covered / n_box - target) <= COVERAGE_TOLERANCE:
            break
        kind = _SHAPES[int(rng.integers(len(_SHAPES)))]
        center = (bc.start + rng.uniform(0, box_w), br.start + rng.uniform(0, box_h))
        params = _draw_shape_params(rng, kind, box_w, box_h, center)
        texture = _texture_params(rng, _TEXTURES[int(rng.integers(len(_TEXTURES)))])

        def gain(scale: float) -> tuple[np.ndarray, int]:
            s = _shape_mask(kind, params, scale, wshape) & ~wmask
            return s, int(s[br, bc].sum())

        new, g = gain(1.0)
        if (covered + g) / n_box > target + COVERAGE_TOLERANCE:
            lo, hi = 0.0, 1.0  # shrink the shape about its centre until it lands on the target
            best_new, best_g = None, 0
            for _ in range(20):
                mid = (lo + hi) / 2
                cand, cg = gain(mid)
                if (covered + cg) / n_box > target + COVERAGE_TOLERANCE:
                    hi = mid
                else:
                    lo, best_new, best_g = mid, cand, cg
                    if (covered + cg) / n_box >= target - COVERAGE_TOLERANCE:
                        break
            if best_new is None:
                continue
            new, g = best_new, best_g
        wmask |= new
        yy, xx = np.nonzero(new)
        wout[yy, xx] = _texture_at(texture, yy, xx, rng)
        covered += g
    if abs(covered / n_box - target) > COVERAGE_TOLERANCE:
        # rare: finish with the box pixels nearest to the occluders' centroid (deterministic), solid colour
        need = int(round(target * n_box)) - covered
        if need > 0:
            inner = wmask[br, bc]
            rr, cc = np.nonzero(~inner)
            cy, cx = np.mean(np.nonzero(inner), axis=1) if covered else (box_h / 2, box_w / 2)
            order = np.argsort((rr - cy) ** 2 + (cc - cx) ** 2, kind="stable")[:need]
            extra = np.zeros(wshape, dtype=bool)
            extra[rr[order] + br.start, cc[order] + bc.start] = True
            wmask |= extra
            wout[extra] = rng.integers(0, 256, 3).astype(np.uint8)
    mask[wr, wc] = wmask
    return out, mask
