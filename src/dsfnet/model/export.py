"""ONNX export of DSFNet: the whole network as one graph, ``network.onnx``.

What :func:`export_onnx` writes (``torch.onnx.export(..., dynamo=False)``, opset :data:`NETWORK_OPSET` = 18, batch
dimension dynamic): standardised crop ``image (B, 3, S, S)`` → ``face_uvm (B, 3, U, U)`` float32 (pm units, crop
frame, nose-relative z), ``rotation (B, 3, 3)`` float32 (proper ``Pose_Para`` rotation), ``fallback (B,)`` bool (too
few visible UV cells: the model-space branch is reported) and ``seg (B, 1, S, S)`` (P(visible face), for landmark
visibility): :data:`NETWORK_OUTPUTS`. Everything :meth:`DSFNet.forward` does for ``branch="fused"`` is in the
graph: image stage, scatter of the visible pixels into UV (``ScatterElements`` with ``max``/``min`` reduction,
hence opset 18), the four confidence-weighted similarity fits, point selection (``TopK``), PointNet, 3DMM offsets,
fusion UNet, nose-relative depth and the fallback switch. The fits are traced with ``model.alignment_solver =
"quaternion"``: :func:`dsfnet.geometry.weighted_umeyama`'s SVD-free solver (Horn's quaternion, top eigenvector by a
fixed number of 4×4 matrix squarings), which gives the SVD solver's result to float64 rounding; the torch backend
and training keep the SVD. ONNX Runtime runs the graph in ``dsfnet.inference.onnx`` (the ONNX backend).

Nothing is left outside: every op of the glue traces (``scatter_reduce`` amax/amin → ``ScatterElements`` max/min,
``topk`` → ``TopK``, ``gather`` → ``GatherElements``, integer index arithmetic, ``argmax``); there is no
data-dependent control flow (no ``If``/``Loop``: the fallback is a ``Where``). The glue is written for a lean graph:
spatial sizes come from the config as constants (only the batch is dynamic; traced at batch 2 so that no size-1
batch is baked in), cell subsets are masks or ``GatherElements`` rather than ``Gather`` on an inner axis (slow in
ONNX Runtime), and ``scatter_reduce`` gets a one-node symbolic (the built-in one wraps it in an ``If``).

Agreement with PyTorch (``tests/test_model_onnx.py``, ``tests/test_onnx_agreement.py``): the image stage on
identical inputs to ~1e-5; ``network.onnx`` end to end within 2e-6 pm units and 1e-6 in the rotation on real face
crops. The discrete choices of the scatter (``seg > 0.5``, ``floor`` of the grid, the most confident pixel per cell)
can flip where ONNX Runtime's convolutions differ from PyTorch's by ~1e-6 at a decision boundary; then the maps
differ more (see ``tests/test_onnx_agreement.py``).
"""
from __future__ import annotations

import io
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from dsfnet.io.writers import atomic_write_bytes
from dsfnet.model.dsfnet import DSFNet
from dsfnet.model.weights import META_KEY, NETWORK_FILE, NETWORK_OUTPUTS

#: the network needs ScatterElements with max/min reduction (opset 18)
NETWORK_OPSET = 18


_REDUCTIONS = {"amax": "max", "amin": "min", "sum": "add", "prod": "mul"}


def _scatter_reduce(g, self, dim, index, src, reduce, include_self):
    """``aten::scatter_reduce`` as a single ``ScatterElements`` (opset ≥ 18 for max/min). The built-in symbolic wraps
    it in an ``If`` on the rank of ``self`` (for 0-d tensors), four extra nodes per scatter at run time."""
    from torch.onnx import symbolic_helper

    dim = symbolic_helper._get_const(dim, "i", "dim")
    reduce = symbolic_helper._get_const(reduce, "s", "reduce")
    include_self = symbolic_helper._get_const(include_self, "b", "include_self")
    if reduce not in _REDUCTIONS or not include_self:
        raise torch.onnx.errors.OnnxExporterError(
            f"scatter_reduce(reduce={reduce!r}, include_self={include_self}) has no ONNX form")
    return g.op("ScatterElements", self, index, src, axis_i=dim, reduction_s=_REDUCTIONS[reduce])


@contextmanager
def _network_symbolics() -> Iterator[None]:
    torch.onnx.register_custom_op_symbolic("aten::scatter_reduce", _scatter_reduce, NETWORK_OPSET)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::scatter_reduce", NETWORK_OPSET)


@contextmanager
def onnx_export_mode(model: DSFNet) -> Iterator[DSFNet]:
    """``model`` in eval mode with the SVD-free similarity solver, restored afterwards (also on errors)."""
    was_training, solver = model.training, getattr(model, "alignment_solver", "svd")
    model.eval()
    model.alignment_solver = "quaternion"
    try:
        yield model
    finally:
        model.alignment_solver = solver
        model.train(was_training)


class NetworkGraph(nn.Module):
    """The fused network as one traceable module: ``image (B, 3, S, S)`` → the :data:`NETWORK_OUTPUTS` tuple.

    Trace it inside :func:`onnx_export_mode` (the SVD of the default solver does not export).
    """

    def __init__(self, model: DSFNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        heads = self.model.image_stage(x)
        out = self.model.forward_from_heads(heads, branch="fused", return_all=False)
        return out["face_uvm"], out["rotation"], out["fallback"], heads["seg"]


#: Why the TorchScript exporter (``dynamo=False``), whose use torch >= 2.9 reports as deprecated: the graph needs
#: custom symbolics (:func:`_network_symbolics`: the max/min ``ScatterElements`` reductions of the UV scatter) that
#: only that exporter takes, and its output is verified against PyTorch on every export. Checked on these torch
#: versions (``tests/test_model_onnx.py`` pins the list against the installed torch):
LEGACY_EXPORTER_TORCH = ("2.13",)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict,
            opset: int) -> None:
    buf = io.BytesIO()
    # eval first: torch.onnx.export restores the module's mode afterwards, and a wrapper built in training mode would
    # switch the wrapped model's BatchNorm layers to training (a later forward would then update their statistics)
    module.eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*", category=DeprecationWarning)
        torch.onnx.export(module, args, buf, input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=opset, dynamo=False)
    atomic_write_bytes(path, buf.getvalue())


def export_onnx(model: DSFNet, folder: str | os.PathLike) -> Path:
    """Export ``model`` to ``folder``/``network.onnx``; returns that path. The model's mode and solver are restored
    afterwards."""
    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    path = out_dir / NETWORK_FILE
    with onnx_export_mode(model), torch.no_grad(), warnings.catch_warnings():
        # shape checks and the config-fixed spatial sizes become constants of the trace (only the batch is dynamic)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # traced at batch 2 so that no size-1 batch dimension can be baked in as a constant
        x = torch.randn(2, 3, cfg.input_size, cfg.input_size, generator=torch.Generator().manual_seed(0))
        with _network_symbolics():
            _export(NetworkGraph(model), (x,), path, ["image"], list(NETWORK_OUTPUTS),
                    {"image": {0: "batch"}, **{k: {0: "batch"} for k in NETWORK_OUTPUTS}}, opset=NETWORK_OPSET)
    return path


def embed_metadata(path: str | os.PathLike, meta: dict) -> bytes:
    """The ONNX model at ``path`` serialised with ``meta`` (JSON) in its ``metadata_props`` under :data:`META_KEY`:
    a single-file export that carries what ``meta.json`` holds in a folder export (read back by
    ``dsfnet.inference.onnx.embedded_metadata``)."""
    import onnx

    model = onnx.load(str(path))
    entry = next((p for p in model.metadata_props if p.key == META_KEY), None) or model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    return model.SerializeToString()
