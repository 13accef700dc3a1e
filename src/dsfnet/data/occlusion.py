"""Synthetic occluders with a measured coverage of the face box (DSFNet's training premise).

Kinds (:data:`OCCLUDER_KINDS`):

* ``"blob"``: a random star-shaped outline with smooth deformations (low-order harmonics of the radius);
* ``"ellipse"``: an ellipse with a mildly wavy outline;
* ``"hand"``: a palm (ellipse) plus four finger capsules and a thumb, at a random orientation;
* ``"mask"``: a medical-mask-like shape over the lower face: from the 68 landmarks when given (jaw contour
  below, a line across the nose bridge above), else the lower half of an ellipse inscribed in the box.

Fills: a solid colour with shading, a patch cut from another photo of ``pool`` (a list of ``H×W×3`` uint8 RGB
images), skin tones for hands and plain light/dark fabric colours with folds for masks. Every occluder here is
**opaque**: the returned ``mask`` is where the face is hidden, and a training ``seg`` target must be cleared
there (:func:`occlude_sample` does it).

**Coverage** = fraction of the face box's pixels under the occluder mask (:func:`dsfnet.geometry.boxes.box_coverage`:
pixel centres inside the box, clipped to the image; the measure of the evaluation's occluders too). The occluder's size is found by bisection on its scale so that the measured
coverage is within :data:`COVERAGE_TOL` of the request when that is reachable; the measured value is returned.

All randomness comes from the ``numpy.random.Generator`` passed in: the same seed gives the same occluder.
Frames: image pixels, x right, y down, pixel centres at integer coordinates (``docs/CONVENTIONS.md``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from dsfnet.geometry.boxes import box_coverage

OCCLUDER_KINDS = ("blob", "ellipse", "hand", "mask")
#: the bisection stops when the measured coverage is this close to the request (absolute fraction)
COVERAGE_TOL = 0.01
_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
_FIX = float(1 << _SHIFT)


@dataclass(frozen=True)
class Occlusion:
    """Result of :func:`occlude`.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, the occluded image.
        mask: ``(H, W)`` bool, True where the occluder hides the image (opaque).
        coverage: measured fraction of the face box under ``mask``, in [0, 1].
        kind: which occluder kind was drawn.
    """

    image: np.ndarray
    mask: np.ndarray
    coverage: float
    kind: str


# ----------------------------------------------------------------------------------------------- outlines
# Each generator returns a list of polygons in a local frame (units of the box side, centred on the scaling
# centre); the caller scales and places them. Polygons are (K, 2) float arrays (x, y down).

def _wavy_outline(rng: np.random.Generator, n_harm: int, amp: float, aspect: float) -> np.ndarray:
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 2 + n_harm):
        r += rng.uniform(-amp, amp) / (k - 1) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.35, None)
    x, y = r * np.cos(theta) * aspect, r * np.sin(theta) / aspect
    a = rng.uniform(0, np.pi)
    c, s = np.cos(a), np.sin(a)
    return np.stack([c * x - s * y, s * x + c * y], axis=1) * 0.5


def capsule(p0: np.ndarray, p1: np.ndarray, radius: float, n: int = 10) -> np.ndarray:
    """Outline ``(2n, 2)`` of a stadium: the segment ``p0 → p1`` thickened by ``radius`` with round ends."""
    d = p1 - p0
    ang = np.arctan2(d[1], d[0])
    a1 = ang + np.linspace(-np.pi / 2, np.pi / 2, n)          # round end around p1
    a0 = ang + np.linspace(np.pi / 2, 3 * np.pi / 2, n)       # round end around p0
    end1 = p1 + radius * np.stack([np.cos(a1), np.sin(a1)], 1)
    end0 = p0 + radius * np.stack([np.cos(a0), np.sin(a0)], 1)
    return np.concatenate([end1, end0])


def hand_outline(rng: np.random.Generator, rotate: bool = True) -> list[np.ndarray]:
    """A hand ~1 unit tall as polygons: palm ellipse, four finger capsules and a thumb, fingers pointing up (-y),
    centred between palm and fingers; turned by a random angle when ``rotate``."""
    polys = []
    pw, ph = 0.26 * rng.uniform(0.9, 1.1), 0.3 * rng.uniform(0.9, 1.1)
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    polys.append(np.stack([pw * np.cos(t), ph * np.sin(t)], 1))
    spread = rng.uniform(0.05, 0.25)
    for i in range(4):
        base = np.array([-pw * 0.75 + i * pw * 0.5, -ph * 0.7])
        ang = -np.pi / 2 + (i - 1.5) * spread
        length = 0.42 * (1.0, 1.12, 1.08, 0.85)[i] * rng.uniform(0.85, 1.1)
        tip = base + length * np.array([np.cos(ang), np.sin(ang)])
        polys.append(capsule(base, tip, 0.055 * rng.uniform(0.9, 1.15)))
    side = rng.choice([-1.0, 1.0])
    base = np.array([side * pw * 0.8, 0.05])
    ang = -np.pi / 2 + side * rng.uniform(0.6, 1.1)
    polys.append(capsule(base, base + 0.35 * np.array([np.cos(ang), np.sin(ang)]), 0.065))
    a = rng.uniform(-np.pi, np.pi) if rotate else 0.0
    c, s = np.cos(a), np.sin(a)
    rot = np.array([[c, -s], [s, c]])
    centre = np.array([0.0, -0.15])  # scale about the middle of the hand, not the palm
    return [(p - centre) @ rot.T for p in polys]


def _mask_outline(face_box, landmarks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Face-mask polygon in image px and its scaling centre."""
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
        jaw = lm[1:16]                                   # jaw contour from right ear to left ear (image order)
        top_y = lm[28, 1]                                # nose bridge
        left = np.array([jaw[0, 0], min(top_y, jaw[0, 1])])
        right = np.array([jaw[-1, 0], min(top_y, jaw[-1, 1])])
        nose = np.array([lm[27:31, 0].mean(), top_y - 0.15 * (lm[30, 1] - lm[27, 1])])
        poly = np.concatenate([[left], jaw, [right], [nose]])
        centre = np.array([lm[[48, 54, 33], 0].mean(), lm[[48, 54, 33], 1].mean()])
        return poly, centre
    x0, y0, x1, y1 = (float(v) for v in face_box)
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    t = np.linspace(0, np.pi, 40)
    lower = np.stack([cx + rx * np.cos(t), cy + 0.05 * ry + 0.95 * ry * np.sin(t)], 1)
    poly = np.concatenate([lower, [[cx - rx, cy - 0.1 * ry], [cx, cy - 0.2 * ry], [cx + rx, cy - 0.1 * ry]]])
    return poly, np.array([cx, cy + 0.45 * ry])


def _fill_mask(hw: tuple[int, int], polys: Sequence[np.ndarray]) -> np.ndarray:
    m = np.zeros(hw, dtype=np.uint8)
    pts = [np.round(p * _FIX).astype(np.int32).reshape(-1, 1, 2) for p in polys]
    for p in pts:  # one call per polygon: overlaps are a union (not an even-odd fill)
        cv2.fillPoly(m, [p], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return m.astype(bool)


def occluder_mask(hw: tuple[int, int], face_box, coverage: float, rng: np.random.Generator, kind: str = "blob",
                  landmarks: np.ndarray | None = None) -> np.ndarray:
    """An occluder mask ``(H, W)`` bool of the given kind whose face-box coverage is ``coverage`` (± tolerance).

    Args:
        hw: image ``(H, W)``.
        face_box: ``[x0, y0, x1, y1]`` image px (e.g. the landmarks' bounding box).
        coverage: requested fraction of the face box to cover, in [0, 1].
        rng: seeded generator.
        kind: one of :data:`OCCLUDER_KINDS`.
        landmarks: optional ``(68, 2|3)`` image px, used by ``"mask"``.
    """
    if kind not in OCCLUDER_KINDS:
        raise ValueError(f"unknown occluder kind {kind!r}; valid: {OCCLUDER_KINDS}")
    x0, y0, x1, y1 = (float(v) for v in face_box)
    side = float(np.sqrt(max(x1 - x0, 1e-6) * max(y1 - y0, 1e-6)))
    if kind == "mask":
        poly, centre = _mask_outline(face_box, landmarks)
        local = [(poly - centre) / side]
    else:
        centre = np.array([rng.uniform(x0 + 0.2 * (x1 - x0), x1 - 0.2 * (x1 - x0)),
                           rng.uniform(y0 + 0.2 * (y1 - y0), y1 - 0.2 * (y1 - y0))])
        if kind == "blob":
            local = [_wavy_outline(rng, 4, 0.35, rng.uniform(0.7, 1.4))]
        elif kind == "ellipse":
            local = [_wavy_outline(rng, 3, 0.06, rng.uniform(0.6, 1.6))]
        else:
            local = [p * rng.uniform(0.9, 1.1) for p in hand_outline(rng)]
    if coverage <= 0:
        return np.zeros(hw, dtype=bool)

    def render(scale: float) -> np.ndarray:
        return _fill_mask(hw, [centre + scale * side * p for p in local])

    lo, hi = 0.0, 1.0
    m_hi = render(hi)
    for _ in range(12):  # grow until the request is reached (or clearly unreachable)
        if box_coverage(m_hi, face_box) >= coverage:
            break
        lo, hi = hi, hi * 2
        m_hi = render(hi)
    best, best_err = m_hi, abs(box_coverage(m_hi, face_box) - coverage)
    for _ in range(30):
        if best_err <= COVERAGE_TOL:
            break
        mid = (lo + hi) / 2
        m = render(mid)
        c = box_coverage(m, face_box)
        if abs(c - coverage) < best_err:
            best, best_err = m, abs(c - coverage)
        if c < coverage:
            lo = mid
        else:
            hi = mid
    return best


# -------------------------------------------------------------------------------------------------- fills

def _shading(hw: tuple[int, int], rng: np.random.Generator, strength: float) -> np.ndarray:
    """Smooth multiplicative shading field ``(H, W, 1)`` around 1."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    g = (np.cos(a) * xx / max(w, 1) + np.sin(a) * yy / max(h, 1))
    g = (g - g.mean()) * 2
    return (1.0 + strength * g)[..., None]


def _texture(hw: tuple[int, int], rng: np.random.Generator, kind: str,
             pool: Sequence[np.ndarray] | None) -> np.ndarray:
    """Fill texture ``(H, W, 3)`` float32 in [0, 255] covering the whole image (only the mask part is used)."""
    h, w = hw
    if kind == "hand" and (not pool or rng.random() < 0.7):
        base = np.array([rng.uniform(150, 235), rng.uniform(100, 180), rng.uniform(80, 150)], np.float32)
        tex = np.broadcast_to(base, (h, w, 3)) * _shading(hw, rng, 0.35)
    elif kind == "mask" and (not pool or rng.random() < 0.8):
        base = np.array([[235, 235, 235], [120, 170, 220], [40, 40, 45], [200, 220, 240]][rng.integers(4)], np.float32)
        yy = np.arange(h, dtype=np.float32)[:, None, None]
        folds = 1.0 + 0.06 * np.sin(yy / max(h, 1) * rng.uniform(20, 40) + rng.uniform(0, 6.3))
        tex = np.broadcast_to(base, (h, w, 3)) * folds * _shading(hw, rng, 0.2)
    elif pool and rng.random() < 0.6:
        src = pool[int(rng.integers(len(pool)))]
        if src.ndim != 3 or src.shape[2] != 3 or src.dtype != np.uint8:
            raise ValueError(f"pool images must be (H, W, 3) uint8 RGB, got shape {src.shape} dtype {src.dtype}")
        sh, sw = src.shape[:2]
        ch, cw = max(2, int(sh * rng.uniform(0.3, 0.8))), max(2, int(sw * rng.uniform(0.3, 0.8)))
        r0, c0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
        patch = src[r0:r0 + ch, c0:c0 + cw]
        tex = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    elif rng.random() < 0.5:
        base = rng.uniform(0, 255, size=3).astype(np.float32)
        tex = np.broadcast_to(base, (h, w, 3)) * _shading(hw, rng, 0.3)
    else:  # procedural texture: blurred colour noise
        small = rng.uniform(0, 255, size=(max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
        tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(tex, 0, 255).astype(np.float32)


def occlude(image: np.ndarray, face_box, coverage: float, rng: np.random.Generator, *, kind: str | None = None,
            pool: Sequence[np.ndarray] | None = None, landmarks: np.ndarray | None = None) -> Occlusion:
    """Paint one opaque synthetic occluder over ``image`` covering ``coverage`` of ``face_box``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        face_box: ``[x0, y0, x1, y1]`` image px, e.g. the 68 landmarks' bounding box.
        coverage: requested covered fraction of the face box in [0, 1]; the measured one is returned.
        rng: seeded ``numpy.random.Generator``; the result depends only on it and the inputs.
        kind: one of :data:`OCCLUDER_KINDS`, or ``None`` to draw one at random.
        pool: optional images to cut textures from (``(h, w, 3)`` uint8 RGB each).
        landmarks: optional ``(68, 2|3)`` image px (placement of ``"mask"`` occluders).
    Returns:
        :class:`Occlusion` (occluded image, bool mask, measured coverage, kind).

    >>> occ = occlude(np.zeros((64, 64, 3), np.uint8), [16, 16, 48, 48], 0.3, np.random.default_rng(0), kind="ellipse")
    >>> abs(occ.coverage - 0.3) <= 0.03
    True
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {img.shape} dtype {img.dtype}")
    fb = np.asarray(face_box, dtype=np.float64).reshape(-1)
    if fb.shape != (4,) or not np.isfinite(fb).all() or fb[2] <= fb[0] or fb[3] <= fb[1]:
        raise ValueError(f"face_box must be [x0, y0, x1, y1] with x1 > x0, y1 > y0, got {np.asarray(face_box).tolist()}")
    if not 0.0 <= float(coverage) <= 1.0:
        raise ValueError(f"coverage must be in [0, 1], got {coverage}")
    if kind is None:
        kind = OCCLUDER_KINDS[int(rng.integers(len(OCCLUDER_KINDS)))]
    hw = img.shape[:2]
    mask = occluder_mask(hw, fb, float(coverage), rng, kind, landmarks)
    tex = _texture(hw, rng, kind, pool)
    alpha = mask.astype(np.float32)
    # soft 1-px edge for the picture only; the returned mask stays binary
    alpha = np.maximum(alpha, cv2.GaussianBlur(alpha, (3, 3), 0.8))[..., None]
    out = img.astype(np.float32) * (1 - alpha) + tex * alpha
    return Occlusion(image=np.clip(out + 0.5, 0, 255).astype(np.uint8), mask=mask,
                     coverage=box_coverage(mask, fb), kind=kind)


#: relative frequency of the landmark-anchored kinds (:mod:`dsfnet.data.anchored_occluders`) when one is drawn
ANCHORED_WEIGHTS = {"facemask": 0.4, "hand": 0.2, "sunglasses": 0.12, "object": 0.1, "scarf": 0.1, "hair": 0.08}


def occlude_sample(sample: dict, rng: np.random.Generator, coverage: float | None = None, *, kind: str | None = None,
                   pool: Sequence[np.ndarray] | None = None, coverage_range: tuple[float, float] = (0.1, 0.5),
                   anchored_prob: float = 0.0, templates=None) -> dict:
    """Occlude a training-sample dict (``image (S, S, 3)``, ``seg (S, S)``, ``landmarks (68, 3)`` crop px).

    With probability ``anchored_prob`` (or when ``kind`` is one of
    :data:`~dsfnet.data.anchored_occluders.ANCHORED_KINDS`) the occluder is a landmark-anchored one (a face mask,
    hand, glasses, object, scarf or hair, drawn by :data:`ANCHORED_WEIGHTS`; ``templates``: optional
    :class:`~dsfnet.data.anchored_occluders.MaskTemplates`), whose size follows the face, not ``coverage``. Otherwise
    a shape of :data:`OCCLUDER_KINDS` covering ``coverage`` (default ``U(coverage_range)``) of the landmarks'
    bounding box. Returns a new dict with the occluded ``image``, ``seg`` cleared under the occluder (``alpha >=
    0.5``) and ``occluder (S, S) float32`` {0, 1}; other entries are shared, not copied.
    """
    from dsfnet.data.anchored_occluders import ANCHORED_KINDS, anchored_occluder

    lm = np.asarray(sample["landmarks"], dtype=np.float64)
    out = dict(sample)
    if kind in ANCHORED_KINDS or (kind is None and anchored_prob > 0 and rng.random() < anchored_prob):
        if kind is None:
            names = list(ANCHORED_WEIGHTS)
            w = np.array([ANCHORED_WEIGHTS[n] for n in names])
            kind = names[int(rng.choice(len(names), p=w / w.sum()))]
        img = np.asarray(sample["image"])
        alpha, fill = anchored_occluder(img.shape[:2], lm, kind, rng, templates)
        mask = alpha >= 0.5
        a = alpha[..., None]
        out["image"] = np.clip(img.astype(np.float32) * (1 - a) + fill * a + 0.5, 0, 255).astype(np.uint8)
    else:
        box = [lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max() + 1, lm[:, 1].max() + 1]
        if coverage is None:
            coverage = float(rng.uniform(*coverage_range))
        occ = occlude(sample["image"], box, coverage, rng, kind=kind, pool=pool, landmarks=lm)
        out["image"], mask = occ.image, occ.mask
    if "seg" in sample:
        out["seg"] = np.where(mask, 0.0, sample["seg"]).astype(np.float32)
    out["occluder"] = mask.astype(np.float32)
    return out
