"""Crop: boxes, pixel-exact crop matrices, point transforms."""
from __future__ import annotations

import numpy as np
import pytest

from dsfnet.crop import (
    BoxCalibration,
    box_from_detection,
    box_from_landmarks,
    crop_matrix,
    invert_matrix,
    transform_points,
    warp_image,
)


def test_box_from_landmarks_rule():
    pts = np.array([[10.0, 20.0], [30.0, 60.0], [20.0, 40.0]])
    box = box_from_landmarks(pts)
    # centre (20, 40), side 1.5 * (20 + 40)/2 = 45
    np.testing.assert_allclose(box, [20 - 22.5, 40 - 22.5, 20 + 22.5, 40 + 22.5])
    with pytest.raises(ValueError):
        box_from_landmarks(np.zeros((1, 2)))


def test_box_from_detection_calibration():
    box = box_from_detection([0, 0, 100, 100], BoxCalibration(side_scale=1.58, center_shift_y=0.14))
    np.testing.assert_allclose(box, [50 - 79, 64 - 79, 50 + 79, 64 + 79])
    with pytest.raises(ValueError):
        box_from_detection([10, 0, 5, 10])


def test_crop_matrix_is_pixel_exact():
    # a crop of exactly the image at the same size is the identity
    np.testing.assert_allclose(crop_matrix([-0.5, -0.5, 99.5, 99.5], 100), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    # a 2x downscale of a 2x2 block average: the crop pixel centre maps to the block centre
    m = crop_matrix([-0.5, -0.5, 63.5, 63.5], 32)
    c = warp_image(img.astype(np.float32), m, 32)
    expect = img.astype(np.float32).reshape(32, 2, 32, 2, 3).mean((1, 3))
    np.testing.assert_allclose(c[1:-1, 1:-1], expect[1:-1, 1:-1], atol=1e-3)


def test_point_round_trip_and_z_scaling():
    m = crop_matrix([10, 20, 110, 120], 128)
    pts = np.array([[10.0, 20.0, 5.0], [60.0, 70.0, -2.0]])
    c = transform_points(pts, m)
    assert c[1, 2] == pytest.approx(-2.0 * 1.28)
    back = transform_points(c, invert_matrix(m))
    np.testing.assert_allclose(back, pts, atol=1e-9)
