"""Augmentation of a training-sample dict (:mod:`dsfnet.data.targets`): geometry, flip, colour, blur.

Geometric augmentation (rotation, scale, translation) is one 2×3 similarity ``G`` of the crop
about its centre. It is applied consistently:

* ``image``: bilinear warp by ``G`` (black outside the old crop);
* ``posmap`` (covered cells) and ``landmarks``: x, y by ``G``, z scaled by the scale of ``G`` (nose-relative
  depth stays nose-relative: the nose is scaled too);
* ``tm``: left-multiplied by the 4×4 lift of ``G``;
* ``pose``: recomputed from the new ``tm`` (an in-plane rotation changes the Pose_Para angles, mostly roll);
* ``offset``, ``shape``, ``exp``: unchanged (pose-free);
* ``seg``, ``grid``, ``depth``: re-rendered from the new position map (:meth:`TargetBuilder.render_maps`).

**Horizontal flip.** A mirrored face is not a coefficient operation, so its targets are recomputed from the
mirrored geometry. There is no vertex mirror permutation in the face model, so we use the UV mirror
``layout.flip_perm`` (cell → cell of the left/right mirrored mean-shape point) on the maps:

* ``image`` ← ``image[:, ::-1]``; crop x ← ``S − 1 − x``;
* ``posmap'[cell] = mirror_x(posmap[flip_perm[cell]])``, then z made nose-relative again;
* ``landmarks'[i] = mirror_x(landmarks[FLIP_68[i]])`` (exact);
* ``offset'``: the full shape map ``mean + O`` is mirrored about the face's symmetry plane ``x = xs`` (mean x
  of the midline landmark vertices of the mean shape, the plane ``layout.flip_perm`` was built with) and re-indexed by ``flip_perm``, minus the mean map;
* ``shape``, ``exp``: a least-squares fit of the normalised coefficients to ``offset'`` over the face-mask
  cells (a small ridge keeps it stable); the fit residual is the model's asymmetry, not an error of ours;
* ``tm' = M_crop · tm · M_model`` with ``M_crop: x → S − 1 − x`` and ``M_model: x → 2·xs_model − x``; its
  rotation has yaw and roll negated (pitch kept), and ``pose`` is recomputed from it;
* ``seg``, ``grid``, ``depth``: re-rendered.

A synthetic occluder (:func:`dsfnet.data.occlusion.occlude_sample`, probability ``occlude_prob``) is painted
after the geometric step and clears ``seg`` under it. Photometric augmentation (colour gain,
brightness/contrast, blur, noise) then changes only ``image``.
Randomness comes only from the ``numpy.random.Generator`` passed in.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dsfnet.data.targets import TargetBuilder, lift_affine, pose_from_tm

_MIDLINE_68 = np.array([8, 27, 28, 29, 30, 33, 51, 57, 62, 66])
_RIDGE = 1e-3  # ridge of the mirrored-coefficient fit, relative to the mean diagonal of the normal matrix


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges (rotations in degrees, translations as fractions of the crop).

    The defaults start from SADRNet's augmenter (translation ±10 %, rotation with probability 0.25, per-channel
    gain 0.6–1.4 with probability 0.5) with a narrower rotation range, a wider scale range, a horizontal flip,
    contrast, blur, noise and a higher occlusion rate.
    """

    translate: float = 0.10        # ± fraction of S, x and y independently, always
    scale: float = 0.05            # 1 + U(−scale, scale), always
    rotate_prob: float = 0.25
    rotate_deg: float = 30.0       # U(−rotate_deg, rotate_deg) when applied
    flip_prob: float = 0.5
    gain_prob: float = 0.5
    gain: tuple[float, float] = (0.6, 1.4)   # per-channel multiplicative gain
    contrast_prob: float = 0.3
    contrast: float = 0.3          # contrast and brightness jitter amplitude
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    noise_prob: float = 0.2
    noise_std: float = 6.0         # grey levels
    occlude_prob: float = 0.5      # synthetic occluder (dsfnet.data.occlusion), seg cleared under it
    occlude_coverage: tuple[float, float] = (0.1, 0.5)  # fraction of the landmark box
    occlude_anchored: float = 0.0  # of the occluded samples, the fraction with a landmark-anchored occluder


def similarity_about_centre(size: int, angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    """2×3 crop → crop similarity: rotate by ``angle_deg`` (counter-clockwise on screen) and scale about the
    crop centre ``((S−1)/2, (S−1)/2)``, then translate by ``(tx, ty)`` pixels."""
    c = (size - 1) / 2.0
    m = cv2.getRotationMatrix2D((c, c), float(angle_deg), float(scale))
    m[:, 2] += (tx, ty)
    return m


class Augmenter:
    """Applies :class:`AugmentConfig` to sample dicts made by a :class:`TargetBuilder`.

    Args:
        builder: the builder that made the samples (UV layout, crop size, codec, basis maps, renderer).
        config: probabilities and ranges.
        pool: optional images (``(h, w, 3)`` uint8 RGB) to cut occluder textures from.
        templates: optional :class:`~dsfnet.data.anchored_occluders.MaskTemplates` for face-mask occluders.
    """

    def __init__(self, builder: TargetBuilder, config: AugmentConfig = AugmentConfig(),
                 pool: list[np.ndarray] | None = None, templates=None) -> None:
        self.builder = builder
        self.config = config
        self.pool = pool
        self.templates = templates
        lay = builder.layout
        u = builder.uv_size
        self.flip_perm = np.asarray(lay.flip_perm, dtype=np.int64)
        self.covered = np.asarray(lay.covered, dtype=bool)
        from dsfnet.facemodel.uv import FLIP_68
        from dsfnet.geometry.posmap import SHAPE_MAP_SCALE

        fm = builder.face_model
        #: x of the face's symmetry plane (mean x of the midline landmark vertices), model units
        self.xs_model = float(np.asarray(fm.mean, dtype=np.float64)[fm.keypoints[_MIDLINE_68], 0].mean())
        self.xs = self.xs_model * SHAPE_MAP_SCALE  # the same in shape-map units
        self.flip_68 = FLIP_68
        face = np.asarray(lay.face_mask, dtype=bool).reshape(-1)
        basis = np.concatenate([builder.shape_maps, builder.exp_maps]).reshape(-1, 3, u * u)[:, :, face]
        a = basis.reshape(basis.shape[0], -1).astype(np.float64).T  # (3*F, K)
        ata = a.T @ a
        ata += _RIDGE * np.trace(ata) / len(ata) * np.eye(len(ata))
        self._fit = np.linalg.solve(ata, a.T)  # (K, 3*F)
        self._face = face
        self._n_shape = builder.shape_maps.shape[0]

    # ------------------------------------------------------------------ geometric

    def warp(self, sample: dict, matrix: np.ndarray) -> dict:
        """Apply a 2×3 crop → crop similarity to the sample (see the module docstring); returns a new dict."""
        b = self.builder
        g = np.asarray(matrix, dtype=np.float64)
        k = float(np.sqrt(abs(np.linalg.det(g[:, :2]))))
        out = dict(sample)
        out["image"] = cv2.warpAffine(sample["image"], g, (b.crop_size, b.crop_size), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        pm = sample["posmap"].astype(np.float64)
        xy = pm[:2].reshape(2, -1) * b.pos_scale
        xy = (g[:, :2] @ xy + g[:, 2:3]) / b.pos_scale
        new = np.concatenate([xy, pm[2].reshape(1, -1) * k]).reshape(pm.shape) * self.covered
        out["posmap"] = new.astype(np.float32)
        lm = sample["landmarks"].astype(np.float64)
        lm2 = lm.copy()
        lm2[:, :2] = lm[:, :2] @ g[:, :2].T + g[:, 2]
        lm2[:, 2] *= k
        out["landmarks"] = lm2.astype(np.float32)
        tm = (lift_affine(g) @ np.vstack([sample["tm"].astype(np.float64), [0, 0, 0, 1]]))[:3]
        out["tm"] = tm.astype(np.float32)
        out["pose"] = pose_from_tm(tm).astype(np.float32)
        out["seg"], out["grid"], out["depth"] = b.render_maps(new)
        return out

    def flip(self, sample: dict) -> dict:
        """Horizontal mirror of the sample with recomputed targets (module docstring); returns a new dict."""
        b = self.builder
        s, u = b.crop_size, b.uv_size
        out = dict(sample)
        out["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
        fp = self.flip_perm
        pm = sample["posmap"].astype(np.float64).reshape(3, -1)[:, fp]
        pm[0] = (s - 1) / b.pos_scale - pm[0]
        r, c = b.codec.nose_cell
        pm = pm.reshape(3, u, u)
        pm[2] -= pm[2, r, c]
        pm *= self.covered
        out["posmap"] = pm.astype(np.float32)
        lm = sample["landmarks"].astype(np.float64)[self.flip_68]
        lm[:, 0] = s - 1 - lm[:, 0]
        out["landmarks"] = lm.astype(np.float32)
        full = (b.mean_map + sample["offset"]).astype(np.float64).reshape(3, -1)[:, fp]
        full[0] = 2 * self.xs - full[0]
        off = (full.reshape(3, u, u) - b.mean_map) * self.covered
        out["offset"] = off.astype(np.float32)
        coeffs = self._fit @ off.reshape(3, -1)[:, self._face].reshape(-1)
        out["shape"] = coeffs[: self._n_shape].astype(np.float32)
        out["exp"] = coeffs[self._n_shape:].astype(np.float32)
        m_crop = np.diag([-1.0, 1.0, 1.0, 1.0])
        m_crop[0, 3] = s - 1
        m_model = np.diag([-1.0, 1.0, 1.0, 1.0])
        m_model[0, 3] = 2 * self.xs_model
        tm = (m_crop @ np.vstack([sample["tm"].astype(np.float64), [0, 0, 0, 1]]) @ m_model)[:3]
        out["tm"] = tm.astype(np.float32)
        out["pose"] = pose_from_tm(tm).astype(np.float32)
        out["seg"], out["grid"], out["depth"] = b.render_maps(pm)
        return out

    # ------------------------------------------------------------------ photometric

    def photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Colour gain, contrast/brightness, blur and noise of a ``(S, S, 3)`` uint8 RGB image."""
        cfg = self.config
        img = image.astype(np.float32)
        if rng.random() < cfg.gain_prob:
            img *= rng.uniform(*cfg.gain, size=3).astype(np.float32)
        if rng.random() < cfg.contrast_prob:
            m = img.mean()
            img = (img - m) * (1 + rng.uniform(-cfg.contrast, cfg.contrast)) + m * (
                1 + rng.uniform(-cfg.contrast, cfg.contrast))
        if rng.random() < cfg.blur_prob:
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(*cfg.blur_sigma)))
        if rng.random() < cfg.noise_prob:
            img += rng.normal(0.0, cfg.noise_std, size=img.shape).astype(np.float32)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        """Random flip, similarity, occluder and photometric change of one sample (a new dict; the input is
        untouched). The result always has an ``occluder (S, S)`` f32 {0, 1} entry (zeros when none was drawn)."""
        from dsfnet.data.occlusion import occlude_sample

        cfg = self.config
        s = self.builder.crop_size
        out = self.flip(sample) if rng.random() < cfg.flip_prob else dict(sample)
        angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg) if rng.random() < cfg.rotate_prob else 0.0
        scale = 1.0 + rng.uniform(-cfg.scale, cfg.scale)
        tx, ty = rng.uniform(-cfg.translate, cfg.translate, size=2) * s
        out = self.warp(out, similarity_about_centre(s, angle, scale, tx, ty))
        if rng.random() < cfg.occlude_prob:
            out = occlude_sample(out, rng, pool=self.pool, coverage_range=cfg.occlude_coverage,
                                 anchored_prob=cfg.occlude_anchored, templates=self.templates)
        else:
            out["occluder"] = np.zeros((s, s), dtype=np.float32)
        out["image"] = self.photometric(out["image"], rng)
        return out
