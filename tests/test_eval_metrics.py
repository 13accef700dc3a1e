"""Evaluation metrics on hand-made cases with known answers (no shared data)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dsfnet.eval import metrics
from dsfnet.geometry import pose_para_to_matrix


def test_nme_2d_known():
    gt = np.array([[0.0, 0.0, 5.0], [40.0, 0.0, 1.0], [0.0, 10.0, 2.0], [40.0, 10.0, 0.0]])  # box 40 x 10 -> 20
    pred = gt.copy()
    pred[:, 0] += 3.0
    pred[:, 1] += 4.0  # every point 5 px off
    pred[:, 2] += 100.0  # z is ignored
    assert metrics.nme_2d(pred, gt) == pytest.approx(5.0 / 20.0)
    assert metrics.nme_2d(gt, gt) == 0.0
    with pytest.raises(ValueError):
        metrics.nme_2d(pred[:3], gt)
    with pytest.raises(ValueError):
        metrics.nme_2d(np.zeros((4, 2)), np.zeros((4, 2)))  # degenerate GT box


def test_yaw_bins_and_balanced_mean():
    assert metrics.yaw_bin_index([0, 30, -30.001, 60, 61, -95]).tolist() == [0, 0, 1, 1, 2, 2]
    r = metrics.binned_mean([1.0, 2.0, 4.0, 10.0], [5.0, -25.0, 45.0, -75.0])
    assert r.bins == (1.5, 4.0, 10.0) and r.counts == (2, 1, 1)
    assert r.balanced == pytest.approx((1.5 + 4.0 + 10.0) / 3)
    assert r.overall == pytest.approx(17.0 / 4) and r.empty_bins == ()
    r = metrics.binned_mean([1.0, 3.0], [10.0, 70.0])
    assert math.isnan(r.bins[1]) and r.empty_bins == ("(30,60]",)
    assert r.balanced == pytest.approx(2.0)  # the empty bin is excluded


def test_dense_nme_known():
    gt = np.array([[0.0, 0.0, 10.0], [30.0, 0.0, 10.0], [0.0, 30.0, 10.0], [30.0, 30.0, 10.0]])  # box 30 x 30
    # a constant z offset is removed; x-y offsets of 3 px everywhere
    pred = gt + [3.0, 0.0, 50.0]
    n3, n2 = metrics.dense_nme(pred, gt)
    assert n3 == pytest.approx(0.1) and n2 == pytest.approx(0.1)
    # z relief (+-4 about the mean) counts in 3-D only
    pred = gt.copy()
    pred[:, 2] += [4.0, -4.0, 4.0, -4.0]
    n3, n2 = metrics.dense_nme(pred, gt)
    assert n3 == pytest.approx(4.0 / 30.0) and n2 == 0.0


def _landmarks_with_eyes(p36, p45) -> np.ndarray:
    lm = np.zeros((68, 3))
    lm[:, 0] = np.arange(68)
    lm[36], lm[45] = p36, p45
    return lm


def test_reconstruction_nme_exact_similarity_is_zero():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(30, 3)) * 50
    r = pose_para_to_matrix(0.3, -0.5, 0.2)
    pred = 2.5 * gt @ r.T + [10.0, -4.0, 7.0]
    lm = _landmarks_with_eyes([0, 0, 0], [10, 0, 0])
    assert metrics.reconstruction_nme(pred, gt, lm) == pytest.approx(0.0, abs=1e-9)
    # no reflection check (reference behaviour): a mirrored prediction also aligns perfectly
    mirrored = gt * [-1.0, 1.0, 1.0]
    assert metrics.reconstruction_nme(mirrored, gt, lm) == pytest.approx(0.0, abs=1e-9)


def test_reconstruction_nme_known_value():
    """Square in z=0; prediction lifts corners by +-d in an alternating pattern (orthogonal to x and y, so the
    rotation stays the identity). Scale rule: sum of distances to the first point."""
    gt = np.array([[1.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [1.0, -1.0, 0.0]])
    d = 1.0
    pred = gt + np.array([[0, 0, d], [0, 0, -d], [0, 0, d], [0, 0, -d]])
    s = (2 + 2 * math.sqrt(2) + 2) / (2 * math.sqrt(4 + 4 * d * d) + 2 * math.sqrt(2))
    per_point = math.sqrt(2 * (1 - s) ** 2 + (s * d) ** 2)
    lm = _landmarks_with_eyes([0, 0, 0], [4, 0, 0])  # outer-eye distance 4
    assert metrics.reconstruction_nme(pred, gt, lm) == pytest.approx(per_point / 4.0, rel=1e-9)


def test_pose_mae_filter_and_no_wrap():
    gt = np.array([[10.0, 20.0, 30.0], [0.0, 0.0, 0.0], [0.0, 100.0, 0.0], [-99.0, 0.0, 0.0]])
    pred = np.array([[11.0, 22.0, 33.0], [0.0, 0.0, 6.0], [0.0, 0.0, 0.0], [-90.0, 0.0, 0.0]])
    m = metrics.pose_mae(pred, gt)
    # image 2 (|yaw| = 100 > 99) excluded; -99 is kept (limit inclusive)
    assert (m.n_used, m.n_excluded) == (3, 1)
    assert m.pitch == pytest.approx((1 + 0 + 9) / 3)
    assert m.yaw == pytest.approx(2 / 3)
    assert m.roll == pytest.approx((3 + 6 + 0) / 3)
    assert m.mean == pytest.approx((m.pitch + m.yaw + m.roll) / 3)
    # bias: mean signed pred - GT over the same images (pitch +1, 0, +9; yaw +2, 0, 0; roll +3, +6, 0)
    assert m.bias == pytest.approx((10 / 3, 2 / 3, 3.0))
    flipped = metrics.pose_mae(2 * gt - pred, gt)
    assert flipped.bias == pytest.approx((-10 / 3, -2 / 3, -3.0)) and flipped.mean == pytest.approx(m.mean)
    # no wrap-around: 179 vs -179 is an error of 358 degrees
    assert metrics.pose_errors([[0, 0, 179.0]], [[0, 0, -179.0]])[0, 2] == pytest.approx(358.0)
    none = metrics.pose_mae([[0, 0, 0]], [[0, 120, 0]])
    assert none.n_used == 0 and math.isnan(none.mean)


def test_ced_curve():
    x, y = metrics.ced_curve([1.0, 2.0, 3.0, 4.0], 4.0, 5)
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert y.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
