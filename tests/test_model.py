"""DSFNet registry, shapes, gradients, determinism, branches, guards and teacher-weight loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dsfnet.model import create_model, list_models, standardize
from dsfnet.model.config import MODEL_CONFIGS
from dsfnet.teacher.network import TeacherNet, load_teacher_backbone
from testing.analytic_face import synthetic_face

U = MODEL_CONFIGS["lite"].uv_size  # the lite network's UV maps (96²); its crops are 128²


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    fm, layout = synthetic_face(U)
    return create_model("lite", fm, layout=layout)


def test_registry_and_config() -> None:
    assert list_models() == ["paper", "lite"]
    lite_cfg, paper_cfg = MODEL_CONFIGS["lite"], MODEL_CONFIGS["paper"]
    assert (lite_cfg.input_size, lite_cfg.uv_size, lite_cfg.pos_scale) == (128, 96, 140.0)
    assert (paper_cfg.input_size, paper_cfg.uv_size, paper_cfg.pos_scale) == (256, 256, 280.0)
    with pytest.raises(ValueError, match="unknown model variant"):
        create_model("huge")
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        lite_cfg.with_overrides(uv_sise=64)
    with pytest.raises(ValueError, match="divisible"):
        lite_cfg.with_overrides(uv_size=100)
    with pytest.raises(Exception):
        lite_cfg.input_size = 64  # frozen


def test_landmarks_are_the_decoders_bilinear_reading(lite) -> None:
    # the trainer's validation reads the 68 landmarks as inference does (UVLayout.landmarks_from_map)
    _, layout = synthetic_face(U)
    maps = torch.randn(2, 3, U, U, dtype=torch.float64)
    got = lite.double().landmarks(maps)
    lite.float()
    assert got.shape == (2, 68, 3)
    assert torch.allclose(got, torch.as_tensor(layout.landmarks_from_map(maps.numpy())), atol=1e-9)


def test_standardize() -> None:
    img = torch.rand(2, 3, 32, 32) * 0.5 + 0.2
    out = standardize(img)
    assert torch.allclose(out.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5)
    var = img.var(dim=(2, 3), unbiased=False)
    assert torch.allclose(out.var(dim=(2, 3), unbiased=False), var / (var + 1e-3), atol=1e-5)
    with pytest.raises(ValueError, match="standardize expects"):
        standardize(torch.zeros(3, 32, 32))


def test_lite_shapes_train_and_eval(lite) -> None:
    x = torch.randn(2, 3, 128, 128)
    lite.train()
    out = lite(x)
    shapes = {
        "grid": (2, 2, 128, 128), "seg": (2, 1, 128, 128), "conf": (2, 1, 128, 128), "depth": (2, 1, 128, 128),
        "shape_ms": (2, 40), "exp_ms": (2, 10), "tm_ms": (2, 3, 4), "tm_ms_z": (2, 12), "msf": (2, 64, 4, 4),
        "shape_is": (2, 40), "exp_is": (2, 10), "offset_ms": (2, 3, U, U), "face_ms": (2, 3, U, U),
        "d_uv": (2, 3, U, U), "c_uv": (2, 1, U, U), "m_uv": (2, 1, U, U), "offset_is": (2, 3, U, U),
        "face_is": (2, 3, U, U), "offset_f": (2, 3, U, U), "kpt_f": (2, 3, U, U),
        "face_uvm": (2, 3, U, U), "rotation": (2, 3, 3), "fallback": (2,),
    }
    for k, shp in shapes.items():
        assert tuple(out[k].shape) == shp, k
        assert bool(torch.isfinite(out[k].float()).all()), k
    lite.eval()
    with torch.no_grad():
        ev = lite(x)
    assert set(ev) == {"face_uvm", "rotation", "fallback"}
    rot = ev["rotation"].double()
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(2, 3, 3), atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(2, dtype=torch.float64), atol=1e-5)
    # nose-relative depth: z at the nose-tip cell is 0
    r, c = lite.kpt_cells[30].tolist()
    assert float(ev["face_uvm"][:, 2, r, c].abs().max()) < 1e-6


def test_lite_backward_finite(lite) -> None:
    torch.manual_seed(1)
    lite.train()
    lite.zero_grad()
    out = lite(torch.randn(2, 3, 128, 128))
    assert float(out["m_uv"].sum()) > 100  # the image-space branch really ran
    loss = sum(v.square().mean() for k, v in out.items() if v.dtype.is_floating_point and v.requires_grad)
    loss.backward()
    groups = {"backbone": lite.image_stage.backbone, "dense_heads": lite.image_stage.dense_heads,
              "model_head": lite.image_stage.model_head, "pointnet": lite.pointnet, "fusion": lite.fusion}
    for name, mod in groups.items():
        grads = [p.grad for p in mod.parameters() if p.grad is not None]
        assert grads, name
        assert all(bool(torch.isfinite(g).all()) for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


def _visible_heads(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Image-stage outputs with every pixel visible and pixel (r, c) mapped to UV cell (r, c) (S = U)."""
    heads = dict(model.image_stage(x))
    s = x.shape[-1]
    axis = (torch.arange(s, dtype=torch.float32) + 0.5) / (s / 2) - 1
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    heads["grid"] = torch.stack([cols, rows])[None].expand(x.shape[0], -1, -1, -1)
    heads["seg"] = torch.ones_like(heads["seg"])
    return heads


def test_determinism_and_branches(lite) -> None:
    lite.eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        a, b = lite(x), lite(x)
        heads = _visible_heads(lite, x)
        fused = lite.forward_from_heads(heads, branch="fused", return_all=True)
        img = lite.forward_from_heads(heads, branch="image")
        mdl = lite.forward_from_heads(heads, branch="model")
        again = lite.forward_from_heads(heads, branch="fused")
    assert torch.equal(a["face_uvm"], b["face_uvm"]) and torch.equal(a["rotation"], b["rotation"])
    assert torch.equal(fused["face_uvm"], again["face_uvm"]) and torch.equal(fused["rotation"], again["rotation"])
    assert not bool(fused["fallback"][0]) and fused["visible_cells"].item() == float(lite.face_mask.sum())
    assert torch.equal(fused["face_uvm"], fused["face_f"]) and torch.equal(fused["rotation"], fused["rotation_f"])
    assert torch.equal(img["face_uvm"], fused["face_is"]) and torch.equal(mdl["face_uvm"], fused["face_ms"])
    assert float((fused["face_uvm"] - img["face_uvm"]).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="branch must be one of"):
        lite(x, branch="both")
    with pytest.raises(ValueError, match=r"expects \(B, 3, 128, 128\)"):
        lite(torch.randn(1, 3, 120, 120))


def test_empty_seg_falls_back_to_model_branch(lite) -> None:
    lite.eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        heads = _visible_heads(lite, x)
        heads["seg"] = heads["seg"].clone()
        heads["seg"][0] = 0.0  # sample 0: nothing visible; sample 1: everything
        out = lite.forward_from_heads(heads, return_all=True)
    assert out["fallback"].tolist() == [True, False]
    assert out["visible_cells"][0].item() == 0
    assert torch.equal(out["face_uvm"][0], out["face_ms"][0]) and torch.equal(out["rotation"][0], out["rotation_ms"][0])
    assert torch.equal(out["face_uvm"][1], out["face_f"][1])
    assert bool(torch.isfinite(out["face_uvm"]).all())


def test_tm_statistics_and_model_branch_geometry(lite) -> None:
    mean = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    std = np.full(12, 2.0, dtype=np.float32)
    old = (lite.tm_mean.clone(), lite.tm_std.clone())
    try:
        lite.set_tm_statistics(mean, std)
        tm = torch.as_tensor(mean)[None] + 4.0
        torch.testing.assert_close(lite.normalize_tm(tm), torch.full((1, 12), 2.0))
        torch.testing.assert_close(lite.denormalize_tm(lite.normalize_tm(tm)), tm)
        with pytest.raises(ValueError, match="std > 0"):
            lite.set_tm_statistics(mean, np.zeros(12))
    finally:
        lite.set_tm_statistics(*old)
    assert "tm_mean" in lite.state_dict() and "mean_map" not in lite.state_dict()
    # P_ms with the default Tm: the mean face lands y-flipped, about crop_size/1.8e5 px per model unit
    tm = lite.denormalize_tm(torch.zeros(1, 12))
    face = lite.posed_from_tm(lite.mean_map[None], tm)
    s0 = 128 / 1.8e5
    expected_x = s0 * lite.mean_map[0] / 1.5e-5 / 140 + 64 / 140
    torch.testing.assert_close(face[0, 0], expected_x, atol=1e-5, rtol=0)
    assert float(torch.linalg.det(tm[0, :, :3].double())) < 0  # the y-flip is inside Tm
    # the model branch's rotation: R back from Tm = s·F·R (+ t), proper
    from dsfnet.geometry import pose_para_to_matrix

    r = pose_para_to_matrix(0.2, -0.7, 0.3)
    lin = 7e-4 * np.diag([1.0, -1.0, 1.0]) @ r
    tm_r = torch.as_tensor(np.concatenate([lin, [[60.0], [70.0], [30.0]]], axis=1), dtype=torch.float32)[None]
    np.testing.assert_allclose(lite.model_rotation(tm_r)[0].numpy(), r, atol=1e-5)


def test_load_teacher_backbone_from_architecture(lite) -> None:
    torch.manual_seed(2)
    teacher = TeacherNet()
    sd = {"module." + k: v for k, v in teacher.state_dict().items() if k != "fc_param.bias"}
    report = load_teacher_backbone(lite, sd)
    body = lite.image_stage.backbone.body
    assert len(report["copied"]) == len(body.state_dict()) and not report["missing"]
    assert report["skipped"] == ["module.fc_param.weight"]
    torch.testing.assert_close(body.dw5_3.conv_sep.weight, teacher.dw5_3.conv_sep.weight)
    torch.testing.assert_close(body.conv1.weight, teacher.conv1.weight.flip(1))  # BGR -> RGB
    with pytest.raises(ValueError, match="no MobileNetV1Body"):
        load_teacher_backbone(torch.nn.Linear(2, 2), sd)


@pytest.mark.shared
def test_load_teacher_backbone_from_checkpoint(shared_dir, lite) -> None:
    path = shared_dir / "data" / "teacher_3ddfa_v2" / "mb05_120x120.pth"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    report = load_teacher_backbone(lite, sd)
    assert not report["missing"]
    assert sorted(report["skipped"]) == ["module.fc_lm.bias", "module.fc_lm.weight", "module.fc_param.bias", "module.fc_param.weight"]
    body = lite.image_stage.backbone.body
    torch.testing.assert_close(body.dw6.conv_sep.weight, sd["module.dw6.conv_sep.weight"])
    torch.testing.assert_close(body.bn1.running_var, sd["module.bn1.running_var"])


def test_builds_from_facemodel_layout() -> None:
    """The real ``dsfnet.facemodel`` path: toy FaceModel + get_uv_layout (create_model builds the layout)."""
    from dsfnet.facemodel import get_uv_layout
    from testing.face_model import toy_face_model

    fm = toy_face_model()
    model = create_model("lite", fm, uv_size=64, fusion_input_stride=4).eval()
    layout = get_uv_layout(fm, 64)
    assert (model.n_shape, model.n_exp) == (fm.n_shape, fm.n_exp)
    assert model.face_model_fingerprint == fm.fingerprint
    assert float(model.face_mask.sum()) == float(np.asarray(layout.face_mask).sum())
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 128))
    assert tuple(out["face_uvm"].shape) == (1, 3, 64, 64) and bool(torch.isfinite(out["face_uvm"]).all())


@pytest.mark.slow
def test_paper_builds_and_runs() -> None:
    torch.manual_seed(0)
    fm, layout = synthetic_face(256)
    model = create_model("paper", fm, layout=layout).eval()
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(n_params - 10.19e6) / 10.19e6 < 0.10, n_params
    assert model.image_stage.backbone.feature_info["dense"] == {"channels": 270, "stride": 4}
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert tuple(out["face_uvm"].shape) == (1, 3, 256, 256) and tuple(out["rotation"].shape) == (1, 3, 3)
    assert bool(torch.isfinite(out["face_uvm"]).all())
