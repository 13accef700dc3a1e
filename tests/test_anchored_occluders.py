"""Landmark-anchored occluders: placement on the landmarks, exact seg targets, template warps, determinism."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dsfnet.data.anchored_occluders import (ANCHORED_KINDS, MASK_ANCHOR_LANDMARKS, MaskTemplates, anchored_occluder,
                                            face_turn)
from dsfnet.data.occlusion import occlude_sample


def _face(size: int = 128) -> np.ndarray:
    """A frontal 68-point layout (iBUG order) spanning the middle ~60% of a ``size`` crop."""
    s = size / 128.0
    jaw_t = np.linspace(np.pi * 0.95, np.pi * 0.05, 17)
    jaw = np.stack([64 + 40 * np.cos(jaw_t), 60 + 45 * np.sin(jaw_t)], 1)
    brows = np.concatenate([np.stack([np.linspace(34, 56, 5), np.full(5, 40)], 1),
                            np.stack([np.linspace(72, 94, 5), np.full(5, 40)], 1)])
    nose = np.concatenate([np.stack([np.full(4, 64), np.linspace(48, 66, 4)], 1),
                           np.stack([np.linspace(56, 72, 5), np.full(5, 70)], 1)])

    def eye(cx):
        t = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        return np.stack([cx - 8 * np.cos(t), 50 + 3 * np.sin(t)], 1)

    t12 = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    t8 = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    mouth = np.concatenate([np.stack([64 - 14 * np.cos(t12), 86 + 6 * np.sin(t12)], 1),
                            np.stack([64 - 9 * np.cos(t8), 86 + 2 * np.sin(t8)], 1)])
    lm = np.concatenate([jaw, brows, nose, eye(46), eye(82), mouth]) * s
    assert lm.shape == (68, 2)
    return lm


@pytest.mark.parametrize("kind", ANCHORED_KINDS)
def test_anchored_kinds_cover_their_part_and_stay_in_range(kind):
    lm = _face()
    hits = []
    for seed in range(6):
        alpha, fill = anchored_occluder((128, 128), lm, kind, np.random.default_rng(seed))
        assert alpha.shape == (128, 128) and fill.shape == (128, 128, 3)
        assert alpha.min() >= 0.0 and alpha.max() <= 1.0 and 0 <= fill.min() and fill.max() <= 255
        assert 0 < (alpha >= 0.5).mean() < 0.7
        part = {"facemask": [51, 57, 62, 66], "sunglasses": [37, 44], "scarf": [57], "hand": None, "object": None,
                "hair": None}[kind]
        if part is not None:
            ij = np.round(lm[part]).astype(int)
            hits.append(bool((alpha[ij[:, 1], ij[:, 0]] >= 0.5).all()))
    if hits:  # clear glasses (a fifth of "sunglasses") leave the eye itself seen
        assert np.mean(hits) >= 0.6, (kind, hits)


def test_facemask_leaves_the_eyes_and_brows_seen():
    lm = _face()
    for seed in range(8):
        alpha, _ = anchored_occluder((128, 128), lm, "facemask", np.random.default_rng(seed))
        ij = np.round(lm[17:27]).astype(int)
        assert (alpha[ij[:, 1], ij[:, 0]] < 0.5).all()


def test_occlude_sample_anchored_target_is_exact_and_deterministic():
    rng_img = np.random.default_rng(1)
    image = rng_img.integers(0, 255, size=(128, 128, 3), dtype=np.uint8)
    sample = {"image": image, "seg": np.ones((128, 128), np.float32), "landmarks": np.c_[_face(), np.zeros(68)]}
    a = occlude_sample(sample, np.random.default_rng(5), kind="hand")
    b = occlude_sample(sample, np.random.default_rng(5), kind="hand")
    np.testing.assert_array_equal(a["image"], b["image"])
    occ = a["occluder"] > 0
    assert occ.any()
    np.testing.assert_array_equal(a["seg"], np.where(occ, 0.0, 1.0))
    # pixels away from the occluder (beyond its 1-px soft edge) are untouched
    far = cv2.dilate(occ.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    np.testing.assert_array_equal(a["image"][far], image[far])


def test_occlude_sample_anchored_prob_zero_keeps_the_old_stream():
    sample = {"image": np.zeros((64, 64, 3), np.uint8), "seg": np.ones((64, 64), np.float32),
              "landmarks": np.c_[_face(64), np.zeros(68)]}
    a = occlude_sample(sample, np.random.default_rng(3))
    b = occlude_sample(sample, np.random.default_rng(3), anchored_prob=0.0)
    np.testing.assert_array_equal(a["occluder"], b["occluder"])


def test_mask_template_warp_lands_anchors_on_landmarks(tmp_path):
    # a template: an opaque hexagon whose corners are the six anchors (like a real mask: b above a/c, e below d/f)
    (tmp_path / "templates").mkdir()
    hexagon = np.array([[10, 40], [80, 5], [150, 40], [150, 80], [80, 95], [10, 80]])  # a b c f e d
    rgba = np.zeros((100, 160, 4), np.uint8)
    cv2.fillPoly(rgba, [hexagon.reshape(-1, 1, 2).astype(np.int32)], (200, 50, 50, 255))
    cv2.imwrite(str(tmp_path / "templates" / "plain.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    (tmp_path / "masks.cfg").write_text("[plain]\ntemplate: masks/templates/plain.png\nmask_a: 10, 40\nmask_b: 80, 5\n"
                                        "mask_c: 150, 40\nmask_d: 10, 80\nmask_e: 80, 95\nmask_f: 150, 80\n")
    t = MaskTemplates(tmp_path)
    assert len(t.templates) == 1 and t.templates[0].turn == 0
    lm = _face()
    from dsfnet.data.anchored_occluders import template_mask

    alpha, _ = template_mask((128, 128), lm, t, np.random.default_rng(0))
    anchors = np.array([lm[list(i)].mean(0) for i in MASK_ANCHOR_LANDMARKS])
    inside = anchors + (np.array([[64, 80]]) - anchors) * 0.2  # a little inside each anchor
    ij = np.round(inside).astype(int)
    assert (alpha[ij[:, 1], ij[:, 0]] >= 0.5).all()
    # the mouth is under it, the eyes are not
    assert alpha[86, 64] >= 0.5 and alpha[50, 46] < 0.5


def test_mask_templates_bad_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        MaskTemplates(tmp_path)
    (tmp_path / "masks.cfg").write_text("[x]\ntemplate: masks/templates/missing.png\n")
    with pytest.raises(ValueError, match="no usable mask template"):
        MaskTemplates(tmp_path)


def test_face_turn_sign():
    lm = _face()
    assert abs(face_turn(lm)) < 1e-6
    turned = lm.copy()
    turned[30, 0] += 20  # nose towards point 16
    assert face_turn(turned) > 0.2


def test_anchored_occluder_rejects_bad_landmarks():
    with pytest.raises(ValueError):
        anchored_occluder((64, 64), np.zeros((5, 2)), "hand", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown"):
        anchored_occluder((64, 64), _face(64), "cape", np.random.default_rng(0))
