"""Occluders placed by the 68 landmarks, drawn to look like the real ones (face masks, hands, glasses, objects).

One file on purpose: the six kinds are small drawers over the same private helpers (polygon fill, soft edges,
skin and cloth fills, face size) behind one dispatcher, :func:`anchored_occluder`; split by kind they would share
every helper across modules.

Kinds (:data:`ANCHORED_KINDS`):

* ``"facemask"``: a face mask over nose, mouth and chin. With :class:`MaskTemplates` (RGBA templates with six anchor
  points, the MaskTheFace ``masks.cfg`` format) a template is warped onto the face by a homography from its anchors to
  landmarks (:data:`MASK_ANCHOR_LANDMARKS`); the turned templates (``_left``/``_right``) are taken for turned faces.
  Without templates, or one time in three, a procedural mask: the outline from the jaw and the nose bridge, pleats,
  side shading and a colour (surgical blue/green/white, black, cloth tones, stripes and checks).
* ``"sunglasses"``: two tinted lenses over the eyes with a bridge; a fifth of them are clear glasses (frames only).
* ``"hand"``: a hand (palm, fingers, thumb; skin tones) in front of the mouth, a cheek or an eye.
* ``"object"``: a microphone, a cup or a phone near the mouth or the cheek.
* ``"scarf"``: a band of cloth from below the nose to past the chin, wider than the face.
* ``"hair"``: a lock of thick strands from the forehead over one eye and cheek.

Every function works in image pixels (x right, y down; ``docs/CONVENTIONS.md``) and returns an **alpha** ``(H, W)``
float32 in [0, 1] with a fill ``(H, W, 3)`` float32 RGB; the occluded pixels (the training ``seg`` target's zeros)
are ``alpha >= 0.5``, so the visibility target is exact in pixels. All randomness comes from the
``numpy.random.Generator`` passed in.
"""
from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

ANCHORED_KINDS = ("facemask", "sunglasses", "hand", "object", "scarf", "hair")

#: landmark (0-based iBUG index, or a pair averaged) matched to the templates' anchors ``mask_a`` … ``mask_f``:
#: a/c the cheek contour at the nose bridge's height, b the nose bridge, d/f the lower cheek, e the chin
MASK_ANCHOR_LANDMARKS: tuple[tuple[int, ...], ...] = ((1,), (28,), (15,), (4, 5), (8,), (11, 12))
#: templates are downscaled once, on load, so that their width is at most this (px)
TEMPLATE_WIDTH = 192
#: |yaw proxy| above which a turned template is used (see :func:`face_turn`)
TURN_THRESHOLD = 0.18
_SHIFT = 4
_FIX = float(1 << _SHIFT)


@dataclass(frozen=True)
class MaskTemplate:
    """One face-mask template: ``rgba (h, w, 4)`` uint8, ``anchors (6, 2)`` template px, ``turn`` -1/0/+1."""

    name: str
    rgba: np.ndarray
    anchors: np.ndarray
    turn: int


class MaskTemplates:
    """Face-mask templates read from a folder in the MaskTheFace layout (``masks.cfg`` + ``templates/*.png``,
    optional ``textures/**/*.{png,jpg}``).

    The folder is the user's (a MaskTheFace checkout or copy); nothing here is shipped. Sections whose
    template is missing are skipped; a folder with no usable template raises ``ValueError``.
    """

    def __init__(self, folder: str | Path) -> None:
        root = Path(folder)
        cfg_path = root / "masks.cfg"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{cfg_path} not found: expected a MaskTheFace-style folder (masks.cfg, templates/)")
        cfg = configparser.ConfigParser()
        cfg.read(cfg_path)
        self.templates: list[MaskTemplate] = []
        for name in cfg.sections():
            sec = cfg[name]
            rel = sec.get("template", "").strip()
            path = root / Path(rel).relative_to("masks") if rel.startswith("masks/") else root / rel
            if not path.is_file() or name.startswith("gas"):  # gas masks cover the eyes too: a different target
                continue
            rgba = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
                continue
            rgba = cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA)
            anchors = np.array([[float(v) for v in sec[f"mask_{c}"].split(",")] for c in "abcdef"])
            k = min(1.0, TEMPLATE_WIDTH / rgba.shape[1])
            if k < 1.0:
                rgba = cv2.resize(rgba, (round(rgba.shape[1] * k), round(rgba.shape[0] * k)), interpolation=cv2.INTER_AREA)
                anchors = anchors * k
            turn = -1 if name.endswith("_left") else (1 if name.endswith("_right") else 0)
            self.templates.append(MaskTemplate(name, rgba, anchors, turn))
        if not self.templates:
            raise ValueError(f"no usable mask template in {root}")
        self.textures: list[np.ndarray] = []
        for p in sorted((root / "textures").rglob("*")) if (root / "textures").is_dir() else []:
            if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
                im = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if im is not None:
                    k = min(1.0, 128 / max(im.shape[:2]))
                    im = cv2.resize(im, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else im
                    self.textures.append(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))

    def choose(self, turn: int, rng: np.random.Generator) -> MaskTemplate:
        """A random template of the given turn (any turn when none matches)."""
        cands = [t for t in self.templates if t.turn == turn] or self.templates
        return cands[int(rng.integers(len(cands)))]


def face_turn(landmarks: np.ndarray) -> float:
    """Signed turn proxy in [-1, 1]: (d_left − d_right)/(d_left + d_right) of the nose tip's distance to the two jaw
    ends (points 0 and 16). Positive when the nose is nearer point 16 (the face's left side, image right)."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    d0 = np.linalg.norm(lm[30] - lm[0])
    d16 = np.linalg.norm(lm[30] - lm[16])
    return float((d0 - d16) / max(d0 + d16, 1e-9))


def _face_size(lm: np.ndarray) -> float:
    w, h = np.ptp(lm[:, 0]), np.ptp(lm[:, 1])
    return float(np.sqrt(max(w, 1.0) * max(h, 1.0)))


def _fill(hw: tuple[int, int], polys: Sequence[np.ndarray]) -> np.ndarray:
    m = np.zeros(hw, dtype=np.uint8)
    for p in polys:
        cv2.fillPoly(m, [np.round(np.asarray(p) * _FIX).astype(np.int32).reshape(-1, 1, 2)], 1,
                     lineType=cv2.LINE_8, shift=_SHIFT)
    return m.astype(np.float32)


def _soft(alpha: np.ndarray, sigma: float = 0.7) -> np.ndarray:
    """A 1-px anti-aliased edge that keeps the ``>= 0.5`` region unchanged."""
    hard = (alpha >= 0.5).astype(np.float32)
    blurred = cv2.GaussianBlur(hard, (3, 3), sigma)
    return np.where(hard > 0, np.maximum(hard * alpha, 0.5), np.minimum(blurred, 0.49)).astype(np.float32)


def _grad(hw: tuple[int, int], rng: np.random.Generator, strength: float) -> np.ndarray:
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    g = np.cos(a) * xx / max(w, 1) + np.sin(a) * yy / max(h, 1)
    return (1.0 + strength * 2 * (g - g.mean()))[..., None]


def _solid(hw: tuple[int, int], rgb: Sequence[float]) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.float32), (*hw, 3)).copy()


def _skin(rng: np.random.Generator) -> np.ndarray:
    tones = np.array([[236, 196, 170], [222, 170, 135], [198, 140, 105], [160, 105, 75], [112, 72, 50], [80, 52, 38]],
                     np.float32)
    return tones[int(rng.integers(len(tones)))] * rng.uniform(0.85, 1.1, size=3).astype(np.float32)


_CLOTH = np.array([[235, 238, 240], [140, 185, 225], [110, 170, 160], [30, 30, 35], [60, 70, 110], [150, 40, 50],
                   [200, 175, 140], [95, 110, 90], [225, 160, 180]], np.float32)


def _cloth_fill(hw: tuple[int, int], rng: np.random.Generator, textures: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Cloth: a colour with stripes/checks, or a tiled texture; pleats and shading added by the caller."""
    h, w = hw
    r = rng.random()
    if textures and r < 0.3:
        tex = textures[int(rng.integers(len(textures)))].astype(np.float32)
        k = rng.uniform(0.3, 0.8)
        tex = cv2.resize(tex, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if min(tex.shape[:2]) * k >= 4 else tex
        reps = (int(np.ceil(h / tex.shape[0])) + 1, int(np.ceil(w / tex.shape[1])) + 1, 1)
        tiled = np.tile(tex, reps)
        r0, c0 = int(rng.integers(tex.shape[0])), int(rng.integers(tex.shape[1]))
        return tiled[r0:r0 + h, c0:c0 + w].copy()
    base = _CLOTH[int(rng.integers(len(_CLOTH)))] * rng.uniform(0.85, 1.1, size=3).astype(np.float32)
    out = _solid(hw, base)
    if r < 0.55:
        other = _CLOTH[int(rng.integers(len(_CLOTH)))]
        period = rng.uniform(3, 9)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, np.pi)
        band = (np.sin((np.cos(a) * xx + np.sin(a) * yy) / period * np.pi) > 0)
        if rng.random() < 0.5:
            band ^= np.sin((-np.sin(a) * xx + np.cos(a) * yy) / period * np.pi) > 0
        out = np.where(band[..., None], out, other)
    return out


def _pleats(hw: tuple[int, int], lm: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
    """Horizontal pleats (multiplicative, ``(H, W, 1)``) along the face's own vertical axis."""
    h, w = hw
    up = lm[27, :2] - lm[8, :2]
    up = up / max(np.linalg.norm(up), 1e-9)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx - lm[8, 0]) * up[0] + (yy - lm[8, 1]) * up[1]
    period = size * rng.uniform(0.07, 0.12)
    return (1.0 + rng.uniform(0.04, 0.12) * np.sin(t / period * 2 * np.pi + rng.uniform(0, 6.3)))[..., None]


# ------------------------------------------------------------------------------------------------ face masks

def _anchor_points(lm: np.ndarray) -> np.ndarray:
    return np.array([lm[list(idx), :2].mean(0) for idx in MASK_ANCHOR_LANDMARKS])


def template_mask(hw: tuple[int, int], landmarks: np.ndarray, templates: MaskTemplates,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A template warped onto the face by the homography from its six anchors to :data:`MASK_ANCHOR_LANDMARKS`.

    The template's colours are kept, recoloured (its luminance times a cloth colour) or textured, at random.
    Returns ``(alpha, fill)``.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    turn = face_turn(lm)
    t = templates.choose(0 if abs(turn) < TURN_THRESHOLD else (1 if turn > 0 else -1), rng)
    dst = _anchor_points(lm) + rng.normal(0, 0.01 * _face_size(lm), size=(6, 2))
    hmat, _ = cv2.findHomography(t.anchors.astype(np.float32), dst.astype(np.float32), 0)
    if hmat is None or not np.isfinite(hmat).all():
        return procedural_mask(hw, lm, rng, templates.textures)
    h, w = hw
    warped = cv2.warpPerspective(t.rgba, hmat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=(0, 0, 0, 0)).astype(np.float32)
    alpha = warped[..., 3] / 255.0
    rgb = warped[..., :3]
    r = rng.random()
    if r < 0.35:  # recolour: the template's shading on another colour or texture
        lum = rgb.mean(-1, keepdims=True)
        ref = max(float(np.percentile(lum[alpha > 0.5], 90)) if (alpha > 0.5).any() else 255.0, 1.0)
        rgb = _cloth_fill(hw, rng, templates.textures) * np.clip(lum / ref, 0.3, 1.2)
    rgb = rgb * _grad(hw, rng, 0.25)
    return _soft(alpha), np.clip(rgb, 0, 255)


def procedural_mask(hw: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator,
                    textures: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A face mask drawn from the landmarks: jaw contour below (slightly outside it), the nose bridge above,
    straps towards the ears; pleats, side shading, a surgical or cloth colour. Returns ``(alpha, fill)``."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    size = _face_size(lm)
    centre = lm[[30, 33, 51, 57, 8]].mean(0)
    jaw = lm[1:16]
    out = centre + (jaw - centre) * rng.uniform(1.0, 1.06)
    top_k = rng.uniform(0.25, 0.55)  # how far up the nose the mask reaches (0 = tip, 1 = bridge top)
    nose_top = lm[30] + (lm[27] - lm[30]) * top_k
    left_top = lm[1] + (lm[0] - lm[1]) * rng.uniform(-0.2, 0.6)
    right_top = lm[15] + (lm[16] - lm[15]) * rng.uniform(-0.2, 0.6)
    upper = np.array([right_top, (right_top + nose_top) / 2 + (0, -0.02 * size), nose_top,
                      (left_top + nose_top) / 2 + (0, -0.02 * size), left_top])
    poly = np.concatenate([[left_top], out, upper[:-1]])  # chin side left → right, then back over the nose
    alpha = _fill(hw, [poly])
    surgical = np.array([[140, 190, 230], [240, 242, 245], [130, 200, 190], [35, 35, 40], [170, 200, 235]], np.float32)
    if rng.random() < 0.55:
        fill = _solid(hw, surgical[int(rng.integers(len(surgical)))] * rng.uniform(0.9, 1.05, size=3))
    else:
        fill = _cloth_fill(hw, rng, textures)
    fill = fill * _pleats(hw, lm, rng, size) * _grad(hw, rng, 0.3)
    if rng.random() < 0.6:  # ear loops
        for a, b in ((lm[1], lm[0] + (lm[0] - lm[2]) * 0.5), (lm[15], lm[16] + (lm[16] - lm[14]) * 0.5)):
            cv2.line(alpha, tuple(np.round(a * _FIX).astype(int)), tuple(np.round(b * _FIX).astype(int)), 1.0,
                     max(1, round(0.015 * size)), cv2.LINE_8, _SHIFT)
    return _soft(alpha), np.clip(fill, 0, 255)


# -------------------------------------------------------------------------------------------- other kinds

def sunglasses(hw: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two lenses centred on the eyes (points 36–41, 42–47) joined by a bridge. A fifth are clear glasses: only the
    frames occlude. Returns ``(alpha, fill)``."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    size = _face_size(lm)
    eyes = [lm[36:42], lm[42:48]]
    axis = lm[45] - lm[36]
    ang = float(np.degrees(np.arctan2(axis[1], axis[0])))
    clear = rng.random() < 0.2
    alpha = np.zeros(hw, np.float32)
    w_k, h_k = rng.uniform(1.6, 2.0), rng.uniform(0.65, 0.9)
    thick = max(1, round(size * rng.uniform(0.012, 0.03)))
    centres = []
    for e in eyes:
        c = e.mean(0) + (0, rng.uniform(-0.01, 0.03) * size)
        ew = max(np.ptp(e[:, 0]), 0.12 * size)
        axes = (ew * w_k / 2, ew * w_k / 2 * h_k)
        centres.append((c, axes))
        pts = cv2.ellipse2Poly((int(c[0] * _FIX), int(c[1] * _FIX)), (int(axes[0] * _FIX), int(axes[1] * _FIX)),
                               int(ang), 0, 360, 10)
        if clear:
            cv2.polylines(alpha, [pts.reshape(-1, 1, 2)], True, 1.0, thick, cv2.LINE_8, _SHIFT)
        else:
            cv2.fillPoly(alpha, [pts.reshape(-1, 1, 2)], 1.0, cv2.LINE_8, _SHIFT)
    (c0, a0), (c1, a1) = centres
    for p, q in ((c0 + (a0[0] * 0.8, -a0[1] * 0.4), c1 - (a1[0] * 0.8, a1[1] * 0.4)),
                 (c0 - (a0[0], a0[1] * 0.3), lm[0] + (0, -0.05 * size)),
                 (c1 + (a1[0], -a1[1] * 0.3), lm[16] + (0, -0.05 * size))):
        cv2.line(alpha, tuple(np.round(p * _FIX).astype(int)), tuple(np.round(q * _FIX).astype(int)), 1.0,
                 thick, cv2.LINE_8, _SHIFT)
    tint = np.array([[20, 20, 25], [60, 45, 30], [30, 45, 40], [70, 70, 80]], np.float32)[int(rng.integers(4))]
    fill = _solid(hw, tint) * _grad(hw, rng, 0.6) + rng.uniform(0, 40)
    return _soft(alpha), np.clip(fill, 0, 255)


def _hand_polys(rng: np.random.Generator) -> list[np.ndarray]:
    """A hand about 1 unit tall, fingers up (-y), centred near the middle of the palm and fingers."""
    from dsfnet.data.occlusion import hand_outline

    return hand_outline(rng, rotate=False)


def _rotate(polys: Sequence[np.ndarray], angle: float) -> list[np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return [p @ rot.T for p in polys]


def hand(hw: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A hand in front of the mouth, a cheek or an eye, fingers pointing up or across. Returns ``(alpha, fill)``."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    size = _face_size(lm)
    where = rng.choice(["mouth", "cheek_l", "cheek_r", "eye"], p=[0.4, 0.2, 0.2, 0.2])
    eye = lm[36:42] if rng.random() < 0.5 else lm[42:48]
    anchor = {"mouth": lm[48:68].mean(0), "cheek_l": lm[[3, 4, 31, 48]].mean(0),
              "cheek_r": lm[[12, 13, 35, 54]].mean(0), "eye": eye.mean(0)}[where]
    side = -1.0 if where == "cheek_l" else (1.0 if where == "cheek_r" else rng.choice([-1.0, 1.0]))
    angle = rng.uniform(-0.5, 0.5) + (side * rng.uniform(0.8, 1.6) if rng.random() < 0.5 else 0.0)
    polys = [anchor + size * rng.uniform(0.7, 1.05) * p for p in _rotate(_hand_polys(rng), angle)]
    alpha = _fill(hw, polys)
    fill = _solid(hw, _skin(rng)) * _grad(hw, rng, 0.35)
    return _soft(alpha), np.clip(fill, 0, 255)


def obj(hw: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A microphone (handle + head) or a cup in front of the mouth, or a phone at a cheek. Returns ``(alpha, fill)``."""
    from dsfnet.data.occlusion import capsule

    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    size = _face_size(lm)
    mouth = lm[48:68].mean(0)
    what = rng.choice(["mic", "cup", "phone"])
    if what == "mic":
        head = mouth + rng.normal(0, 0.08, 2) * size + (0, 0.12 * size)
        ang = np.pi / 2 + rng.uniform(-0.6, 0.6)
        end = head + 1.2 * size * np.array([np.cos(ang), np.sin(ang)])
        r = size * rng.uniform(0.1, 0.16)
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        polys = [head + r * np.stack([np.cos(t), np.sin(t)], 1), capsule(head, end, r * 0.45)]
        colour = np.array([[30, 30, 32], [90, 90, 95], [170, 170, 175]], np.float32)[int(rng.integers(3))]
    elif what == "cup":
        c = mouth + (rng.uniform(-0.15, 0.15) * size, rng.uniform(0.05, 0.3) * size)
        w, h = size * rng.uniform(0.35, 0.55), size * rng.uniform(0.5, 0.8)
        polys = [np.array([c + (-w / 2, -h / 2), c + (w / 2, -h / 2), c + (w * 0.4, h / 2), c + (-w * 0.4, h / 2)]),
                 capsule(c + (w * 0.45, -h * 0.2), c + (w * 0.7, h * 0.1), w * 0.09)]
        colour = _CLOTH[int(rng.integers(len(_CLOTH)))]
    else:
        side, inner = ((0, 2), (16, 14))[int(rng.integers(2))]
        c = lm[side] * 0.7 + lm[inner] * 0.3
        ang = rng.uniform(-0.5, 0.5)
        w, h = size * 0.28, size * 0.6
        rect = np.array([(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)])
        polys = [c + p for p in _rotate([rect], ang)]
        colour = np.array([[20, 20, 22], [200, 200, 205], [60, 60, 120]], np.float32)[int(rng.integers(3))]
    alpha = _fill(hw, polys)
    fill = _solid(hw, colour * rng.uniform(0.85, 1.1, size=3)) * _grad(hw, rng, 0.5)
    return _soft(alpha), np.clip(fill, 0, 255)


def scarf(hw: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator,
          textures: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Cloth from a wavy line below the nose (or the mouth) down past the chin, wider than the jaw."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    size = _face_size(lm)
    top_y = float(lm[33, 1] * (1 - (k := rng.uniform(0.0, 0.8))) + lm[57, 1] * k)
    x0, x1 = lm[:, 0].min() - 0.2 * size, lm[:, 0].max() + 0.2 * size
    xs = np.linspace(x0, x1, 24)
    wave = rng.uniform(0.01, 0.04) * size * np.sin(xs / size * rng.uniform(6, 14) + rng.uniform(0, 6.3))
    tilt = (xs - xs.mean()) * rng.uniform(-0.15, 0.15)
    top = np.stack([xs, top_y + wave + tilt], 1)
    bottom = np.array([[x1, hw[0] + size], [x0, hw[0] + size]])
    alpha = _fill(hw, [np.concatenate([top, bottom])])
    fill = _cloth_fill(hw, rng, textures) * _pleats(hw, lm, rng, size) * _grad(hw, rng, 0.3)
    return _soft(alpha), np.clip(fill, 0, 255)


def hair(hw: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A lock of 4–9 thick curved strands from above the brows over one eye and cheek."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    size = _face_size(lm)
    side = int(rng.integers(2))
    brow = lm[17:22] if side == 0 else lm[22:27]
    start = brow.mean(0) + (0, -0.35 * size)
    end = (lm[2] if side == 0 else lm[14]) + (0, rng.uniform(0, 0.3) * size)
    alpha = np.zeros(hw, np.float32)
    for _ in range(int(rng.integers(4, 10))):
        p0 = start + rng.normal(0, 0.08, 2) * size
        p2 = end + rng.normal(0, 0.1, 2) * size
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.15, 2) * size
        t = np.linspace(0, 1, 20)[:, None]
        curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
        cv2.polylines(alpha, [np.round(curve * _FIX).astype(np.int32).reshape(-1, 1, 2)], False, 1.0,
                      max(1, round(size * rng.uniform(0.03, 0.07))), cv2.LINE_8, _SHIFT)
    colour = np.array([[25, 20, 18], [70, 45, 30], [120, 85, 50], [200, 170, 120], [150, 60, 30]], np.float32)
    fill = _solid(hw, colour[int(rng.integers(len(colour)))]) * _grad(hw, rng, 0.4)
    return _soft(alpha), np.clip(fill, 0, 255)


def anchored_occluder(hw: tuple[int, int], landmarks: np.ndarray, kind: str, rng: np.random.Generator,
                      templates: MaskTemplates | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha (H, W) f32 in [0, 1], fill (H, W, 3) f32 RGB)`` of one occluder of ``kind`` (:data:`ANCHORED_KINDS`)
    placed by ``landmarks`` ``(68, 2|3)`` image px. ``templates``: face-mask templates for ``"facemask"``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] != 68 or lm.shape[1] < 2 or not np.isfinite(lm[:, :2]).all():
        raise ValueError(f"landmarks must be finite (68, 2|3) image px, got shape {lm.shape}")
    textures = templates.textures if templates is not None else ()
    if kind == "facemask":
        if templates is not None and rng.random() < 0.67:
            return template_mask(hw, lm, templates, rng)
        return procedural_mask(hw, lm, rng, textures)
    if kind == "sunglasses":
        return sunglasses(hw, lm, rng)
    if kind == "hand":
        return hand(hw, lm, rng)
    if kind == "object":
        return obj(hw, lm, rng)
    if kind == "scarf":
        return scarf(hw, lm, rng, textures)
    if kind == "hair":
        return hair(hw, lm, rng)
    raise ValueError(f"unknown anchored occluder kind {kind!r}; valid: {ANCHORED_KINDS}")
