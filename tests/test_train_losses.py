"""Known-answer tests of the training losses (``dsfnet.train.losses``) and the stage schedule."""
from __future__ import annotations

import math

import pytest
import torch

from dsfnet.train.losses import (
    EPS, LossConfig, LossContext, Stage, active_weights, compute_losses, confidence_target, edge_loss,
    face_rse, face_weighted_rse, masked_mean, normal_loss, para_loss, point_error, seg_bce, stage_at,
)

D0 = math.sqrt(EPS)  # the score of a perfect prediction on every Δ-based term (1e-4)


def _face(u: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    fm = torch.zeros(u, u)
    fm[1:7, 2:6] = 1.0
    wm = torch.arange(u * u, dtype=torch.float32).reshape(u, u) % 5  # varied weights, nonzero outside the mask too
    return fm, wm


def test_point_error_perfect_and_offset():
    a = torch.randn(2, 3, 4, 4)
    assert torch.allclose(point_error(a, a), torch.full((2, 4, 4), D0))
    b = a.clone()
    b[:, 0] += 3.0
    b[:, 1] += 4.0
    assert torch.allclose(point_error(b, a), torch.full((2, 4, 4), math.sqrt(25.0 + EPS)))


def test_masked_mean_is_per_sample_then_batch():
    err = torch.zeros(2, 2, 2)
    mask = torch.zeros(2, 2, 2)
    err[0, 0, 0], mask[0, 0, 0] = 2.0, 1.0  # sample 0: 1 pixel with error 2
    err[1, :, :], mask[1, :, :] = 1.0, 1.0  # sample 1: 4 pixels with error 1
    err[1, 0, 0] = 1.0
    # (2/1 + 4/4) / 2 = 1.5, not the pooled 6/5
    assert masked_mean(err, mask).item() == pytest.approx(1.5)
    # an empty mask contributes 0, never NaN
    assert masked_mean(err, torch.zeros(2, 2, 2)).item() == 0.0


def test_grid_term_ignores_pixels_outside_seg():
    gt = torch.rand(1, 2, 6, 6) * 2 - 1
    seg = torch.zeros(1, 6, 6)
    seg[0, :3] = 1.0
    pred = gt.clone()
    pred[:, 0, :3] += 0.1  # inside the mask: 0.1
    pred[:, :, 3:] += 5.0  # outside: ignored
    assert masked_mean(point_error(pred, gt), seg).item() == pytest.approx(math.sqrt(0.01 + EPS), rel=1e-5)


def test_face_rse_and_weighted_rse_one_pixel_offset():
    fm, wm = _face()
    pos_scale = 128 * 280 / 256  # 140 crop px per pm unit
    gt = torch.rand(3, 3, 8, 8)
    pred = gt.clone()
    pred[:, 0] += 1.0 / pos_scale  # 1 crop px in x everywhere
    delta = math.sqrt((1.0 / pos_scale) ** 2 + EPS)
    assert face_rse(pred, gt, fm).item() == pytest.approx(delta, rel=1e-5)
    # normalised by the mask AREA, not by the weights: mean of w over the mask times Δ
    expected = float((wm * fm).sum() / fm.sum()) * delta
    assert face_weighted_rse(pred, gt, fm, wm).item() == pytest.approx(expected, rel=1e-5)
    assert face_weighted_rse(gt, gt, fm, wm).item() == pytest.approx(float((wm * fm).sum() / fm.sum()) * D0, rel=1e-5)


def test_para_loss_is_mean_of_per_sample_rmse():
    target = torch.zeros(2, 4)
    pred = torch.zeros(2, 4)
    pred[0, 0] = 2.0  # RMSE sqrt(4/4) = 1; sample 1 perfect
    assert para_loss(target, pred).item() == pytest.approx((math.sqrt(1 + EPS) + D0) / 2, rel=1e-6)
    p = torch.zeros(2, 4, requires_grad=True)
    para_loss(target, p).backward()  # finite gradient at a perfect prediction
    assert torch.isfinite(p.grad).all()


def test_seg_bce_known_values():
    gt = torch.tensor([[[1.0, 0.0]]])
    assert seg_bce(torch.tensor([[[[30.0, -30.0]]]]), gt).item() < 1e-12
    assert seg_bce(torch.zeros(1, 1, 1, 2), gt).item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_confidence_target_formula_and_detached():
    grid_gt = torch.zeros(1, 2, 2, 2)
    depth_gt = torch.zeros(1, 2, 2)
    seg = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])
    grid_pred = grid_gt.clone()
    grid_pred[0, 0, 0, 0] = 0.05  # one α of grid error at pixel (0,0)
    depth_pred = depth_gt.clone()
    depth_pred[0, 0, 1] = 0.1  # two α of depth error at pixel (0,1)
    grid_pred.requires_grad_(True)
    depth_pred.requires_grad_(True)
    c = confidence_target(grid_pred, grid_gt, depth_pred, depth_gt, seg, alpha=0.05)
    assert not c.requires_grad
    eg = math.sqrt(0.0025 + EPS)
    assert c[0, 0, 0].item() == pytest.approx(math.sqrt(math.exp(-eg / 0.05) * math.exp(-D0 / 0.05) + EPS), rel=1e-5)
    assert c[0, 0, 1].item() == pytest.approx(math.sqrt(math.exp(-D0 / 0.05) * math.exp(-math.sqrt(0.01 + EPS) / 0.05) + EPS), rel=1e-5)
    assert c[0, 1, 1].item() == 0.0  # outside the visible face
    assert c[0, 1, 0].item() == pytest.approx(math.exp(-D0 / 0.05), rel=1e-5)


def _perfect(b: int = 2, s: int = 8, u: int = 8, ks: int = 4, ke: int = 2):
    torch.manual_seed(0)
    seg = (torch.rand(b, s, s) > 0.5).float()
    batch = {"posmap": torch.rand(b, 3, u, u), "offset": torch.randn(b, 3, u, u) * 0.1, "shape": torch.randn(b, ks),
             "exp": torch.randn(b, ke), "tm": torch.randn(b, 3, 4), "grid": torch.rand(b, 2, s, s) * seg[:, None],
             "seg": seg, "depth": torch.randn(b, s, s) * seg}
    tm_mean, tm_std = torch.randn(12), torch.rand(12) + 0.5
    out = {"grid": batch["grid"].clone(), "seg_logit": (seg[:, None] * 2 - 1) * 40.0, "depth": batch["depth"][:, None].clone(),
           "shape_ms": batch["shape"].clone(), "exp_ms": batch["exp"].clone(), "shape_is": batch["shape"].clone(),
           "exp_is": batch["exp"].clone(), "tm_ms_z": (batch["tm"].reshape(b, 12) - tm_mean) / tm_std,
           "kpt_f": batch["posmap"].clone(), "face_f": batch["posmap"].clone(), "face_is": batch["posmap"].clone(),
           "face_ms": batch["posmap"].clone(), "offset_f": batch["offset"].clone()}
    out["conf"] = confidence_target(out["grid"], batch["grid"], out["depth"][:, 0], batch["depth"], seg)[:, None]
    fm, wm = _face(u)
    return out, batch, LossContext(fm, wm, tm_mean, tm_std)


def test_perfect_prediction_scores_the_floor_on_every_term():
    out, batch, ctx = _perfect()
    weights = {t: 1.0 for t in ("grid", "seg", "depth", "conf", "shape_ms", "exp_ms", "tm_ms", "shape_is", "exp_is",
                                "kpt_f", "offset_f", "face_f", "face_is", "face_ms")}
    total, terms = compute_losses(out, batch, ctx, weights)
    w_mean = float((ctx.weight_mask * ctx.face_mask).sum() / ctx.face_mask.sum())
    for t in ("grid", "depth", "shape_ms", "exp_ms", "shape_is", "exp_is", "offset_f"):
        assert terms[t].item() == pytest.approx(D0, rel=1e-3), t
    assert terms["tm_ms"].item() == pytest.approx(D0, rel=1e-2)  # float32 round trip of the z-score
    for t in ("kpt_f", "face_f", "face_is", "face_ms"):
        assert terms[t].item() == pytest.approx(w_mean * D0, rel=1e-3), t
    assert terms["seg"].item() < 1e-12
    assert terms["conf"].item() < 1e-6
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-6)


def test_weighted_total_and_inactive_terms_skipped():
    out, batch, ctx = _perfect()
    out["shape_ms"] = out["shape_ms"] + 1.0  # RMSE sqrt(1 + eps) over every sample
    total, terms = compute_losses(out, batch, ctx, {"shape_ms": 10.0, "grid": 0.0})
    assert set(terms) == {"shape_ms"}
    assert total.item() == pytest.approx(10 * math.sqrt(1 + EPS), rel=1e-5)
    del out["kpt_f"]
    with pytest.raises(ValueError, match="kpt_f"):
        compute_losses(out, batch, ctx, {"kpt_f": 1.0})
    with pytest.raises(ValueError, match="unknown loss terms"):
        compute_losses(out, batch, ctx, {"nope": 1.0})


def test_conf_term_does_not_backpropagate_into_grid_or_depth():
    out, batch, ctx = _perfect()
    out["grid"] = (out["grid"] + 0.02).requires_grad_(True)
    out["depth"] = (out["depth"] + 0.01).requires_grad_(True)
    out["conf"] = torch.full_like(out["conf"], 0.5).requires_grad_(True)
    total, _ = compute_losses(out, batch, ctx, {"conf": 1.0})
    total.backward()
    assert out["grid"].grad is None and out["depth"].grad is None
    assert out["conf"].grad.abs().sum() > 0


def test_edge_and_normal_losses():
    u = 4
    rows, cols = torch.meshgrid(torch.arange(u, dtype=torch.float32), torch.arange(u, dtype=torch.float32), indexing="ij")
    flat = torch.stack([cols, -rows, torch.zeros_like(rows)])[None]  # a planar grid, spacing 1, z = 0
    tris = []
    for i in range(u - 1):
        for j in range(u - 1):
            c = i * u + j
            tris += [[c, c + u, c + 1], [c + 1, c + u, c + u + 1]]
    tris = torch.tensor(tris)
    assert edge_loss(flat, flat, tris).item() == pytest.approx(0.0, abs=1e-6)
    # doubling the size: each edge grows by its own length -> mean |l_pred - l_gt| = mean edge length
    lengths = torch.tensor([1.0] * 24 + [math.sqrt(2)] * 9)  # 12 horizontal + 12 vertical + 9 diagonals on a 4x4 grid
    assert edge_loss(2 * flat, flat, tris).item() == pytest.approx(lengths.mean().item(), rel=1e-5)
    assert normal_loss(flat, flat, tris).item() == pytest.approx(0.0, abs=1e-6)
    tilted = flat.clone()
    tilted[:, 2] = tilted[:, 0]  # z = x: edges along x now have a z component
    assert normal_loss(tilted, flat, tris).item() > 0.1


def test_stage_schedule_and_face_f_ramp():
    cfg = LossConfig()
    assert stage_at(cfg, 0.0)[1].name == "A" and stage_at(cfg, 0.45)[1].name == "B" and stage_at(cfg, 0.99)[1].name == "C"
    a = active_weights(cfg, 0.1)
    assert a["grid"] == 50 and a["depth"] == 100 and a["conf"] == 0.1 and a["shape_is"] == 0 and a["kpt_f"] == 0
    b = active_weights(cfg, 0.5)
    assert b["shape_is"] == 10 and b["exp_is"] == 50 and b["kpt_f"] == 0
    c = active_weights(cfg, 0.7)
    assert c["kpt_f"] == 1 and c["offset_f"] == 5 and c["face_f"] == 0 and c["edge"] == 0
    assert active_weights(cfg, 0.875)["face_f"] == pytest.approx(0.25)  # halfway through the [0.8, 0.95] ramp
    assert active_weights(cfg, 0.97)["face_f"] == pytest.approx(0.5)


def test_loss_config_validation():
    with pytest.raises(ValueError, match="unknown loss terms"):
        LossConfig(stages=[Stage("X", 1.0, ["gird"])]).validate()
    with pytest.raises(ValueError, match="last stage"):
        LossConfig(stages=[Stage("X", 0.5, ["grid"])]).validate()
    with pytest.raises(ValueError, match="branch"):
        LossConfig(stages=[Stage("X", 1.0, ["grid"], branch="both")]).validate()
