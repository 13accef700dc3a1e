"""ONNX export of the lite network (one graph) and agreement of onnxruntime with PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dsfnet.model import create_model
from dsfnet.model.config import MODEL_CONFIGS
from dsfnet.inference.onnx import OnnxNetwork
from dsfnet.model.export import NETWORK_OPSET, export_onnx
from dsfnet.model.lifting import scatter_to_uv
from testing.analytic_face import synthetic_face
from testing.untrained import make_all_visible

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.mark.slow
def test_onnx_lite_agrees_with_torch(tmp_path, onnx_image_stage) -> None:
    torch.manual_seed(0)
    fm, layout = synthetic_face(MODEL_CONFIGS["lite"].uv_size)
    model = create_model("lite", fm, layout=layout)
    # a few training-mode passes so BatchNorm statistics are not the trivial init ones
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 128, 128))
    model.eval()
    path = export_onnx(model, tmp_path)
    assert path.is_file() and path.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network.onnx"]
    image_stage = onnx_image_stage(model)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        ref = model(x, return_all=True)
        heads = image_stage(x)
    for k, v in heads.items():
        torch.testing.assert_close(v, ref[k], atol=1e-4, rtol=0, msg=lambda m, k=k: f"image stage {k}: {m}")
    # end to end: the scatter is discrete (seg > 0.5, floor of grid, confidence ties), so a 1e-6 difference of a
    # head can move a pixel to another UV cell; the maps then differ slightly more than the network outputs do
    out = OnnxNetwork(tmp_path)(x)
    assert out["fallback"].tolist() == ref["fallback"].tolist()
    assert float(np.abs(out["face_uvm"] - ref["face_uvm"].numpy()).max()) < 5e-3
    assert float(np.abs(out["rotation"] - ref["rotation"].numpy()).max()) < 5e-3

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
    torch.onnx.export(_Scatter(mask), args, buf, input_names=["grid", "seg", "conf", "depth"], opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in zip(["grid", "seg", "conf", "depth"], args)})
    ref = _Scatter(mask)(*args)
    assert float(ref[2].sum()) > 50  # many cells filled, with confidence ties (conf rounded to 0.1)
    for g, r in zip(got, ref):
        torch.testing.assert_close(torch.from_numpy(g), r, atol=0, rtol=0)


def _lite_with_lifting(seed: int = 0):
    """A synthetic-face lite model whose image-space path runs: He-initialised image stage (so the grid varies over
    the image), seg pinned to sigmoid(4) (every pixel visible) and conf to 0.5 (exact ties, broken by pixel index),
    like ``test_onnx_agreement``. A noise crop then fills ~800 UV cells; an all-zero crop maps every pixel to one
    cell, fewer than ``min_visible_cells``: the fallback to the model-space branch."""
    torch.manual_seed(seed)
    fm, layout = synthetic_face(MODEL_CONFIGS["lite"].uv_size)
    model = create_model("lite", fm, layout=layout)
    make_all_visible(model)
    x = torch.cat([torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1)), torch.zeros(1, 3, 128, 128)])
    return model.eval(), x


@pytest.mark.slow
def test_network_graph_matches_torch(tmp_path, onnx_image_stage) -> None:
    """network.onnx: crop -> face_uvm, rotation, fallback, seg in one graph; batch of 2 with one fallback sample."""
    import onnx

    model, x = _lite_with_lifting()
    path = export_onnx(model, tmp_path)
    assert not model.training and model.alignment_solver == "svd"  # restored
    graph = onnx.load(str(path))
    ops = {n.op_type for n in graph.graph.node}
    assert {"ScatterElements", "TopK", "ArgMax"} <= ops and not ops & {"If", "Loop", "Scan"}  # no control flow
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == NETWORK_OPSET
    reductions = {a.s.decode() for n in graph.graph.node if n.op_type == "ScatterElements" for a in n.attribute
                  if a.name == "reduction"}
    assert reductions == {"max", "min"}

    net, image_stage = OnnxNetwork(tmp_path), onnx_image_stage(model)
    got = net(x)
    assert [got[k].dtype for k in ("face_uvm", "rotation", "fallback", "seg")] == [np.float32, np.float32, np.bool_, np.float32]
    with torch.no_grad():
        ref = model(x, return_all=True)
        # the torch glue (SVD fits) on ONNX Runtime's own image-stage heads: the same discrete scatter choices as
        # inside the graph, so the glue itself must agree tightly
        glue = model.forward_from_heads(image_stage(x))
    assert ref["fallback"].tolist() == got["fallback"].tolist() == [False, True]
    assert float(ref["visible_cells"][0]) > 500
    np.testing.assert_allclose(got["face_uvm"], glue["face_uvm"].numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got["rotation"], glue["rotation"].numpy(), rtol=0, atol=1e-5)
    # end to end against PyTorch: within 1e-3 position-map units (0.14 crop px) and 1e-4 in the rotation
    np.testing.assert_allclose(got["face_uvm"], ref["face_uvm"].numpy(), rtol=0, atol=1e-3)
    np.testing.assert_allclose(got["rotation"], ref["rotation"].numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(got["seg"], ref["seg"].numpy(), rtol=0, atol=1e-5)
    # the fallback sample reports the model-space branch
    np.testing.assert_allclose(got["face_uvm"][1], ref["face_ms"][1].numpy(), rtol=0, atol=1e-3)
    np.testing.assert_allclose(got["rotation"][1], ref["rotation_ms"][1].numpy(), rtol=0, atol=1e-4)
    # batch of 1 and batch of 3 through the same graph (traced at 2): the same per-sample results
    one = net(x[:1])
    np.testing.assert_allclose(one["face_uvm"][0], got["face_uvm"][0], rtol=0, atol=1e-5)
    three = net(torch.cat([x, x[:1]]))
    np.testing.assert_allclose(three["face_uvm"][:2], got["face_uvm"], rtol=0, atol=1e-5)
    assert three["fallback"].tolist() == [False, True, False]


def test_quaternion_solver_in_torch_matches_svd() -> None:
    """The solver the export traces gives the PyTorch model's outputs (both branches, fallback sample included)."""
    model, x = _lite_with_lifting()
    with torch.no_grad():
        ref = model(x, return_all=True)
        model.alignment_solver = "quaternion"
        try:
            got = model(x, return_all=True)
        finally:
            model.alignment_solver = "svd"
    for k in ("face_uvm", "face_is", "face_ms", "d_can", "offset_f"):
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    for k in ("rotation", "rotation_is", "rotation_ms", "rotation_f"):
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")


def test_export_leaves_the_model_unchanged(tmp_path) -> None:
    """Exporting restores the mode and the solver and never runs the model in training mode (BatchNorm statistics)."""
    model, x = _lite_with_lifting()
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path)
    assert model.training and model.alignment_solver == "svd"
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_export_warns_nothing_and_the_legacy_exporter_is_pinned_to_checked_torch(tmp_path) -> None:
    """The TorchScript exporter is kept for a stated reason (``LEGACY_EXPORTER_TORCH``'s comment) on the torch versions
    it was checked on; a new torch must be checked (the export is verified against PyTorch) and added there."""
    import warnings

    from dsfnet.model.export import LEGACY_EXPORTER_TORCH

    installed = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    assert installed in LEGACY_EXPORTER_TORCH, f"torch {installed}: check the ONNX export, then add it"
    model, _ = _lite_with_lifting()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(model, tmp_path)
    ours = [w for w in caught if issubclass(w.category, DeprecationWarning) and "ONNX" in str(w.message)]
    assert ours == []  # the deprecation notice is answered above, not shown to users


def _foreign_graph(path, output="x") -> None:
    """A valid ONNX graph that is not dsfnet's network: image (B, 3, S, S) -> Identity -> ``output``."""
    import onnx
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 8, 8])
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], [output])], "foreign", [inp], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_foreign_graphs_and_bad_metadata_are_refused_by_name(tmp_path) -> None:
    import json

    from dsfnet.inference.onnx import OnnxNetwork, OnnxRunner

    _foreign_graph(tmp_path / "network.onnx")
    with pytest.raises(ValueError, match=r"network.onnx is not a dsfnet network: outputs \{'x': 4\}"):
        OnnxNetwork(tmp_path / "network.onnx")
    (tmp_path / "meta.json").write_text(json.dumps([1, 2]))  # an array, not an object
    with pytest.raises(ValueError, match=r"meta.json: the dsfnet metadata must be a JSON object, got list"):
        OnnxRunner(tmp_path)
    (tmp_path / "meta.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"meta.json: the dsfnet metadata is not valid JSON"):
        OnnxRunner(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"variant": "lite"}))
    with pytest.raises(ValueError, match="is not a dsfnet network"):
        OnnxRunner(tmp_path)  # the metadata is ours, the graph is not: refused at load, not per image
