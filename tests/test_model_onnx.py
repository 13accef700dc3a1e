"""ONNX export of the lite network parts and agreement of onnxruntime with PyTorch (< 1e-4 per part)."""
from __future__ import annotations

import pytest
import torch

from dsfnet.model import create_model
from dsfnet.model._synthetic import synthetic_face
from dsfnet.model.export import OPSET, OnnxParts, export_onnx, run_with_onnx
from dsfnet.model.lifting import scatter_to_uv

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.mark.slow
def test_onnx_lite_agrees_with_torch(tmp_path) -> None:
    torch.manual_seed(0)
    fm, layout = synthetic_face(128)
    model = create_model("lite", fm, layout=layout)
    # a few training-mode passes so BatchNorm statistics are not the trivial init ones
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 128, 128))
    model.eval()
    paths = export_onnx(model, tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    parts = OnnxParts(tmp_path)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        ref = model(x, return_all=True)
        heads = parts.image_stage(x)
    for k, v in heads.items():
        torch.testing.assert_close(v, ref[k], atol=1e-4, rtol=0, msg=lambda m, k=k: f"image stage {k}: {m}")
    # the rest on identical heads: ONNX PointNet and fusion UNet inside the same torch pipeline
    with torch.no_grad():
        torch_heads = {k: ref[k] for k in heads}
        mixed = model.forward_from_heads(torch_heads, return_all=True, pointnet=parts.pointnet, fusion=parts.fusion)
    for k in ("shape_is", "exp_is", "offset_f", "kpt_f", "face_uvm", "rotation"):
        torch.testing.assert_close(mixed[k], ref[k], atol=1e-4, rtol=0, msg=lambda m, k=k: f"{k}: {m}")
    # end to end: the scatter is discrete (seg > 0.5, floor of grid, confidence ties), so a 1e-6 difference of a
    # head can move a pixel to another UV cell; the maps then differ slightly more than the network outputs do
    out = run_with_onnx(model, parts, x, return_all=True)
    assert torch.equal(out["fallback"], ref["fallback"])
    assert float((out["m_uv"] != ref["m_uv"]).float().mean()) < 1e-3
    assert float((out["face_uvm"] - ref["face_uvm"]).abs().max()) < 5e-3
    assert float((out["rotation"] - ref["rotation"]).abs().max()) < 5e-3

class _Scatter(torch.nn.Module):
    def __init__(self, face_mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("face_mask", face_mask)

    def forward(self, grid, seg, conf, depth):
        out = scatter_to_uv(grid, seg, conf, depth, uv_size=16, pos_scale=35.0, face_mask=self.face_mask)
        return out.d_uv, out.c_uv, out.m_uv


def test_scatter_exports_to_onnx(tmp_path) -> None:
    """The image -> UV scatter is plain tensor ops: it exports and onnxruntime reproduces it exactly."""
    import io

    import onnxruntime as ort

    torch.manual_seed(0)
    mask = (torch.rand(16, 16) > 0.2).float()
    args = (torch.rand(1, 2, 32, 32) * 2 - 1, torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32).round(decimals=1),
            torch.randn(1, 1, 32, 32))
    buf = io.BytesIO()
    torch.onnx.export(_Scatter(mask), args, buf, input_names=["grid", "seg", "conf", "depth"], opset_version=OPSET, dynamo=False)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in zip(["grid", "seg", "conf", "depth"], args)})
    ref = _Scatter(mask)(*args)
    assert float(ref[2].sum()) > 50  # many cells filled, with confidence ties (conf rounded to 0.1)
    for g, r in zip(got, ref):
        torch.testing.assert_close(torch.from_numpy(g), r, atol=0, rtol=0)
