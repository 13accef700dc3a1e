"""Synthetic occluders (dsfnet.data.occlusion): measured coverage, determinism, seg clearing."""
from __future__ import annotations

import numpy as np
import pytest

from dsfnet.data.occlusion import OCCLUDER_KINDS, occlude, occlude_sample
from dsfnet.geometry.boxes import box_coverage

BOX = [60.0, 40.0, 180.0, 190.0]


def face_landmarks() -> np.ndarray:
    """Rough 68 points in BOX: a U-shaped jaw (0..16), nose (27..35), mouth (48..67), the rest in between."""
    lm = np.tile([120.0, 100.0], (68, 1))
    t = np.pi - np.pi * np.arange(17) / 16
    lm[:17] = np.stack([120 + 55 * np.cos(t), 100 + 85 * np.sin(t)], 1)
    lm[27:31] = np.stack([np.full(4, 120.0), np.linspace(80, 120, 4)], 1)
    lm[31:36] = np.stack([np.linspace(108, 132, 5), np.full(5, 130.0)], 1)
    lm[48:68] = np.stack([100 + 40 * (np.arange(20) % 7) / 6, np.full(20, 150.0)], 1)
    return lm


def photo() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, size=(240, 256, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", OCCLUDER_KINDS)
@pytest.mark.parametrize("coverage", [0.1, 0.3, 0.5, 0.8])
def test_coverage_within_3_percent(kind, coverage):
    img = photo()
    lm = face_landmarks()
    for seed in range(4):
        occ = occlude(img, BOX, coverage, np.random.default_rng(seed), kind=kind, landmarks=lm)
        measured = box_coverage(occ.mask, BOX)
        assert occ.coverage == pytest.approx(measured)
        assert abs(measured - coverage) <= 0.03, (kind, coverage, seed, measured)
        assert occ.kind == kind
        # opaque: pixels under the mask changed (not all, random image could coincide), outside unchanged
        outside = ~occ.mask
        from scipy import ndimage

        far = ~ndimage.binary_dilation(occ.mask, iterations=2)
        np.testing.assert_array_equal(occ.image[far & outside], img[far & outside])


def test_zero_and_full_coverage():
    img = photo()
    occ0 = occlude(img, BOX, 0.0, np.random.default_rng(0), kind="blob")
    assert occ0.coverage == 0.0 and not occ0.mask.any()
    occ1 = occlude(img, BOX, 1.0, np.random.default_rng(0), kind="ellipse")
    assert occ1.coverage >= 0.97


def test_deterministic_and_seed_dependent():
    img = photo()
    pool = [photo()[::-1].copy()]
    a = occlude(img, BOX, 0.4, np.random.default_rng(5), pool=pool)
    b = occlude(img, BOX, 0.4, np.random.default_rng(5), pool=pool)
    c = occlude(img, BOX, 0.4, np.random.default_rng(6), pool=pool)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.kind == b.kind
    assert not np.array_equal(a.mask, c.mask)


def test_pool_texture_is_used():
    img = np.zeros((200, 200, 3), np.uint8)
    pool = [np.full((50, 60, 3), (10, 200, 30), np.uint8)]
    hits = 0
    for seed in range(10):
        occ = occlude(img, [50, 50, 150, 150], 0.3, np.random.default_rng(seed), kind="blob", pool=pool)
        core = occ.image[occ.mask]
        hits += int(np.abs(core.mean(0) - (10, 200, 30)).max() < 3)
    assert hits >= 2  # the pool is drawn with probability 0.6 for blobs


def test_occlude_sample_clears_seg():
    s = 64
    sample = {"image": np.full((s, s, 3), 90, np.uint8), "seg": np.ones((s, s), np.float32),
              "landmarks": np.stack([np.linspace(16, 48, 68), np.linspace(14, 50, 68), np.zeros(68)], 1)}
    out = occlude_sample(sample, np.random.default_rng(0), 0.35, kind="hand")
    m = out["occluder"] > 0
    assert m.any()
    assert (out["seg"][m] == 0).all() and (out["seg"][~m] == 1).all()
    assert sample["seg"].min() == 1  # input untouched


def test_bad_inputs():
    with pytest.raises(ValueError, match="uint8"):
        occlude(np.zeros((10, 10)), BOX, 0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="coverage"):
        occlude(photo(), BOX, 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="face_box"):
        occlude(photo(), [10, 10, 5, 20], 0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="kind"):
        occlude(photo(), BOX, 0.1, np.random.default_rng(0), kind="scarf")
