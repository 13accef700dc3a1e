"""Synthetic occluders: requested coverage is met (±2%), deterministic per seed, nested across coverages."""
from __future__ import annotations

import numpy as np
import pytest

from dsfnet.eval.occlusion import occlude
from dsfnet.geometry.boxes import box_coverage as coverage_of


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (300, 320, 3), dtype=np.uint8)


@pytest.mark.parametrize("coverage", [0.1, 0.2, 0.3, 0.4, 0.5, 0.8])
def test_coverage_within_two_percent(image, coverage):
    for seed in range(4):
        box = [60.0 + 5 * seed, 50.5, 250.0, 260.0 - 7 * seed]
        out, mask = occlude(image, box, coverage, seed)
        assert abs(coverage_of(mask, box) - coverage) <= 0.02
        # the image changed exactly where the mask says (up to texture pixels equal to the original)
        changed = (out != image).any(axis=2)
        assert not (changed & ~mask).any()
        assert changed[mask].mean() > 0.95


def test_box_partly_outside_image(image):
    box = [-80.0, 200.0, 120.0, 400.0]  # clipped to the image for the coverage count
    out, mask = occlude(image, box, 0.3, 7)
    assert abs(coverage_of(mask, box) - 0.3) <= 0.02


def test_deterministic_and_nested(image):
    box = [50.0, 40.0, 260.0, 270.0]
    a, ma = occlude(image, box, 0.3, 11)
    b, mb = occlude(image, box, 0.3, 11)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    _, mc = occlude(image, box, 0.3, 12)
    assert not np.array_equal(ma, mc)  # another seed, other occluders
    _, m_small = occlude(image, box, 0.1, 11)
    assert (m_small & ~ma).sum() <= 0.005 * ma.size  # shapes are drawn in the same order: mostly nested


def test_edge_cases(image):
    out, mask = occlude(image, [10, 10, 100, 100], 0.0, 0)
    assert np.array_equal(out, image) and not mask.any()
    out, mask = occlude(image, [10, 10, 100, 100], 1.0, 0)
    assert coverage_of(mask, [10, 10, 100, 100]) == 1.0
    with pytest.raises(ValueError):
        occlude(image, [10, 10, 100, 100], 1.5, 0)
    with pytest.raises(ValueError):
        occlude(image, [400, 400, 500, 500], 0.2, 0)  # box outside the image
    with pytest.raises(ValueError):
        occlude(image.astype(np.float32), [10, 10, 100, 100], 0.2, 0)
