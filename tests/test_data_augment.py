"""Augmentation (dsfnet.data.augment): targets move with the crop; flips recompute everything."""
from __future__ import annotations

import numpy as np
import pytest

from dsfnet.data.augment import AugmentConfig, Augmenter, similarity_about_centre
from dsfnet.data.targets import TargetBuilder
from dsfnet.facemodel.uv import get_uv_layout
from testing.face_model import toy_face_model

S = U = 128
H = 256


@pytest.fixture(scope="module")
def aug() -> Augmenter:
    fm = toy_face_model()
    return Augmenter(TargetBuilder(fm, get_uv_layout(fm, U, disk_cache=False), S))


def textured_image() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:H]
    img = np.stack([xx, yy, (xx * 3 + yy * 7) % 256], -1)
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def sample(aug):
    fm = aug.builder.face_model
    return aug.builder.build(textured_image(), fm.shape_std * 0.5, fm.exp_std * 0.3,
                             [0.1, 0.3, -0.1, H / 2, H / 2, 0, 110 / 1.5e5])


def test_warp_moves_every_target_consistently(aug, sample):
    b = aug.builder
    g = similarity_about_centre(S, 20.0, 1.05, 6.0, -4.0)
    out = aug.warp(sample, g)
    # landmarks: the similarity applied to x, y; z scaled by 1.05
    lm = sample["landmarks"].astype(np.float64)
    np.testing.assert_allclose(out["landmarks"][:, :2], lm[:, :2] @ g[:, :2].T + g[:, 2], atol=1e-3)
    np.testing.assert_allclose(out["landmarks"][:, 2], lm[:, 2] * 1.05, atol=1e-3)
    # posmap landmarks still match the landmarks, tm still maps the model to them
    err = np.linalg.norm(b.codec.landmarks(out["posmap"])[:, :2] - out["landmarks"][:, :2], axis=1)
    assert err.max() < 0.6
    v = b.posed_from_tm(out["tm"], out["shape"], out["exp"])
    np.testing.assert_allclose(v[b.face_model.keypoints], out["landmarks"], atol=1e-2)
    # the image moved with them: red/green encode the photo's x/y, so compare at old and new landmark pixels
    for i in (8, 30, 36, 45, 48):
        xn, yn = np.rint(out["landmarks"][i, :2]).astype(int)
        new_xy = np.array([xn, yn], float)
        old_xy = np.linalg.solve(g[:, :2], new_xy - g[:, 2])  # where that pixel was before the warp
        xo, yo = np.rint(old_xy).astype(int)
        np.testing.assert_allclose(out["image"][yn, xn, :2].astype(float), sample["image"][yo, xo, :2].astype(float),
                                   atol=4.0)
    # in-plane rotation by +20° on screen (counter-clockwise) changes the roll, not yaw much
    assert abs(out["pose"][2] - sample["pose"][2]) > np.radians(15)
    # image-space maps were re-rendered: seg follows the landmarks
    nx, ny = np.rint(out["landmarks"][30, :2]).astype(int)
    assert out["seg"][ny, nx] == 1
    for k in ("offset", "shape", "exp"):
        assert out[k] is sample[k]


def test_photometric_changes_only_the_image(aug, sample):
    cfg = AugmentConfig(flip_prob=0.0, rotate_prob=0.0, translate=0.0, scale=0.0, gain_prob=1.0, blur_prob=1.0,
                        noise_prob=1.0, contrast_prob=1.0, occlude_prob=0.0)
    out = Augmenter(aug.builder, cfg)(sample, np.random.default_rng(1))
    assert not np.array_equal(out["image"], sample["image"])
    for k in ("posmap", "landmarks", "tm", "seg", "grid", "depth"):
        np.testing.assert_allclose(out[k], sample[k], atol=1e-4, err_msg=k)
    assert not out["occluder"].any()


def test_occluder_clears_seg(aug, sample):
    cfg = AugmentConfig(flip_prob=0.0, rotate_prob=0.0, occlude_prob=1.0, occlude_coverage=(0.3, 0.3))
    out = Augmenter(aug.builder, cfg)(sample, np.random.default_rng(2))
    m = out["occluder"] > 0
    assert m.any() and (out["seg"][m] == 0).all()
    lm = out["landmarks"]
    box = [lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max() + 1, lm[:, 1].max() + 1]
    from dsfnet.geometry.boxes import box_coverage

    assert abs(box_coverage(m, box) - 0.3) <= 0.03


def test_flip_mirrors_pose_landmarks_maps(aug, sample):
    b = aug.builder
    f = aug.flip(sample)
    np.testing.assert_allclose(f["pose"], sample["pose"] * [1, -1, -1], atol=1e-4)
    np.testing.assert_array_equal(f["image"], sample["image"][:, ::-1])
    from dsfnet.facemodel.uv import FLIP_68

    lm = sample["landmarks"][FLIP_68]
    np.testing.assert_allclose(f["landmarks"][:, 0], S - 1 - lm[:, 0], atol=1e-4)
    np.testing.assert_allclose(f["landmarks"][:, 1:], lm[:, 1:], atol=1e-4)
    # the flipped position map agrees with the flipped landmarks (UV mirror is a nearest-cell map)
    err = np.linalg.norm(b.codec.landmarks(f["posmap"])[:, :2] - f["landmarks"][:, :2], axis=1)
    assert np.median(err) < 0.5 and err.max() < 1.5, err.max()
    # seg is the mirror of the old seg up to a few boundary pixels
    assert (f["seg"] != sample["seg"][:, ::-1]).mean() < 0.01
    # flipping twice gives back the pose and tm
    ff = aug.flip(f)
    np.testing.assert_allclose(ff["tm"], sample["tm"], atol=1e-4)
    np.testing.assert_allclose(ff["pose"], sample["pose"], atol=1e-5)


def test_flip_refits_coefficients_of_a_symmetric_face(aug):
    """The toy mean face is mirror-symmetric: flipping it must give ~zero coefficients and a consistent tm."""
    b = aug.builder
    fm = b.face_model
    d = b.build(textured_image(), np.zeros(fm.n_shape), np.zeros(fm.n_exp), [0.0, 0.4, 0.1, H / 2, H / 2, 0, 110 / 1.5e5])
    f = aug.flip(d)
    assert np.abs(f["shape"]).max() < 0.05 and np.abs(f["exp"]).max() < 0.05
    v = b.posed_from_tm(f["tm"], f["shape"], f["exp"])
    np.testing.assert_allclose(v[fm.keypoints][:, :2], f["landmarks"][:, :2], atol=0.5)


def test_random_augmentation_is_seeded(aug, sample):
    a = aug(sample, np.random.default_rng(7))
    b = aug(sample, np.random.default_rng(7))
    c = aug(sample, np.random.default_rng(8))
    assert set(a) == set(c) == set(sample) | {"occluder"}  # same keys whether or not an occluder was drawn
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["image"], c["image"])
    for k in ("posmap", "grid", "depth", "seg", "tm", "landmarks"):
        assert np.isfinite(a[k]).all()
