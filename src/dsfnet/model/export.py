"""ONNX export of DSFNet: the whole network as one graph, plus its three learned parts.

What is exported (``torch.onnx.export(..., dynamo=False)``, batch dimension dynamic), by :func:`export_onnx`:

* ``network.onnx`` (opset :data:`NETWORK_OPSET` = 18): the whole fused network in one graph, standardised crop
  ``image (B, 3, S, S)`` → ``face_uvm (B, 3, U, U)`` float32 (pm units, crop frame, nose-relative z),
  ``rotation (B, 3, 3)`` float32 (proper ``Pose_Para`` rotation), ``fallback (B,)`` bool (too few visible UV
  cells: the model-space branch is reported) and ``seg (B, 1, S, S)`` (P(visible face), for landmark
  visibility): :data:`NETWORK_OUTPUTS`. Everything :meth:`DSFNet.forward` does for ``branch="fused"`` is in the
  graph: image stage, scatter of the visible pixels into UV (``ScatterElements`` with ``max``/``min``
  reduction, hence opset 18), the four confidence-weighted similarity fits, point selection (``TopK``),
  PointNet, 3DMM offsets, fusion UNet, nose-relative depth and the fallback switch. The fits are traced with
  ``model.alignment_solver = "quaternion"``: :func:`dsfnet.geometry.weighted_umeyama`'s SVD-free solver (Horn's
  quaternion, top eigenvector by a fixed number of 4×4 matrix squarings), which gives the SVD solver's result to
  float64 rounding; the torch backend and training keep the SVD. This is the graph ``OnnxRunner`` runs.
  Nothing is left outside: every op of the glue traces (``scatter_reduce`` amax/amin → ``ScatterElements``
  max/min, ``topk`` → ``TopK``, ``gather`` → ``GatherElements``, integer index arithmetic, ``argmax``); there is no
  data-dependent control flow (no ``If``/``Loop``: the fallback is a ``Where``). The glue is written for a lean
  graph: spatial sizes come from the config as constants (only the batch is dynamic; traced at batch 2 so that no
  size-1 batch is baked in), cell subsets are masks or ``GatherElements`` rather than ``Gather`` on an inner axis
  (slow in ONNX Runtime), and ``scatter_reduce`` gets a one-node symbolic (the built-in one wraps it in an ``If``).
* the learned parts alone (opset :data:`OPSET` = 17), for the other branches (``"image"``, ``"model"``),
  debugging and part-by-part comparisons:

  - ``image_stage.onnx``: standardised crop ``(B, 3, S, S)`` → the :class:`~dsfnet.model.dsfnet.ImageStage`
    outputs in the order of ``ImageStage.OUTPUTS``;
  - ``pointnet.onnx``: ``points (B, 6, N)``, ``mask (B, N)`` → ``shape_is (B, Ks)``, ``exp_is (B, Ke)``;
  - ``fusion.onnx``: ``maps (B, 12, U, U)``, ``msf`` → ``offset_raw (B, 3, U, U)``, ``posed_raw (B, 3, U, U)``.

  Between them the steps run through the SAME torch code: :func:`run_with_onnx` calls
  :meth:`DSFNet.forward_from_heads` with ONNX-runtime callables in place of the PointNet and the fusion UNet.

Agreement with PyTorch (``tests/test_model_onnx.py``, ``tests/test_onnx_agreement.py``): every graph on identical
inputs to ~1e-5; ``network.onnx`` end to end within 2e-6 pm units and 1e-6 in the rotation on real face crops.
The discrete choices of the scatter (``seg > 0.5``, ``floor`` of the grid, the most confident pixel per cell) can
flip where ONNX Runtime's convolutions differ from PyTorch's by ~1e-6 at a decision boundary; then the maps differ
more (see ``tests/test_onnx_agreement.py``).
"""
from __future__ import annotations

import io
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from dsfnet.io.writers import atomic_write_bytes
from dsfnet.model.dsfnet import DSFNet, ImageStage

OPSET = 17
#: the single-graph network needs ScatterElements with max/min reduction (opset 18)
NETWORK_OPSET = 18
PART_FILES = {"image_stage": "image_stage.onnx", "pointnet": "pointnet.onnx", "fusion": "fusion.onnx"}
NETWORK_FILE = "network.onnx"
NETWORK_OUTPUTS = ("face_uvm", "rotation", "fallback", "seg")


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


class _ImageStageGraph(nn.Module):
    def __init__(self, stage: ImageStage) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.stage(x)
        return tuple(out[k] for k in ImageStage.OUTPUTS)


class _PointNetGraph(nn.Module):
    def __init__(self, pointnet: nn.Module) -> None:
        super().__init__()
        self.pointnet = pointnet

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.pointnet(points, mask)
        return out["shape_is"], out["exp_is"]


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict,
            opset: int = OPSET) -> None:
    buf = io.BytesIO()
    # eval first: torch.onnx.export restores the module's mode afterwards, and a wrapper built in training mode would
    # switch the wrapped model's BatchNorm layers to training (a later forward would then update their statistics)
    module.eval()
    torch.onnx.export(module, args, buf, input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                      opset_version=opset, dynamo=False)
    atomic_write_bytes(path, buf.getvalue())


def export_onnx(model: DSFNet, folder: str | os.PathLike, *, parts: bool = True) -> dict[str, Path]:
    """Export ``model`` to ``folder``: ``network.onnx`` and (with ``parts``) the three part graphs.

    The model's mode and solver are restored afterwards. Returns ``{"network" | part: path}``.
    """
    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    paths = {"network": out_dir / NETWORK_FILE}
    with onnx_export_mode(model), torch.no_grad(), warnings.catch_warnings():
        # shape checks and the config-fixed spatial sizes become constants of the trace (only the batch is dynamic)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # traced at batch 2 so that no size-1 batch dimension can be baked in as a constant
        x = torch.randn(2, 3, cfg.input_size, cfg.input_size, generator=torch.Generator().manual_seed(0))
        with _network_symbolics():
            _export(NetworkGraph(model), (x,), paths["network"], ["image"], list(NETWORK_OUTPUTS),
                    {"image": {0: "batch"}, **{k: {0: "batch"} for k in NETWORK_OUTPUTS}}, opset=NETWORK_OPSET)
        if not parts:
            return paths
        heads = model.image_stage(x[:1])
        paths.update({k: out_dir / v for k, v in PART_FILES.items()})
        _export(_ImageStageGraph(model.image_stage), (x[:1],), paths["image_stage"], ["image"], list(ImageStage.OUTPUTS),
                {"image": {0: "batch"}, **{k: {0: "batch"} for k in ImageStage.OUTPUTS}})
        n = cfg.pointnet_points if 0 < cfg.pointnet_points < model.face_index.numel() else model.face_index.numel()
        pts, mask = torch.zeros(1, 6, n), torch.ones(1, n)
        _export(_PointNetGraph(model.pointnet), (pts, mask), paths["pointnet"], ["points", "mask"], ["shape_is", "exp_is"],
                {"points": {0: "batch"}, "mask": {0: "batch"}, "shape_is": {0: "batch"}, "exp_is": {0: "batch"}})
        u = cfg.uv_size
        maps = torch.zeros(1, 12, u, u)
        _export(model.fusion, (maps, heads["msf"]), paths["fusion"], ["maps", "msf"], ["offset_raw", "posed_raw"],
                {"maps": {0: "batch"}, "msf": {0: "batch"}, "offset_raw": {0: "batch"}, "posed_raw": {0: "batch"}})
    return paths


def ort_session(path: str | os.PathLike, threads: int):
    """An ONNX Runtime CPU session of ``path`` with ``threads`` intra-op threads (one inter-op thread, quiet log)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


META_KEY = "dsfnet_meta"


def embed_metadata(path: str | os.PathLike, meta: dict) -> bytes:
    """The ONNX model at ``path`` serialised with ``meta`` (JSON) in its ``metadata_props`` under :data:`META_KEY`:
    a single-file export that carries what ``meta.json`` holds in a folder export."""
    import json

    import onnx

    model = onnx.load(str(path))
    entry = next((p for p in model.metadata_props if p.key == META_KEY), None) or model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    return model.SerializeToString()


def embedded_metadata(session) -> dict | None:
    """The :func:`embed_metadata` dict of an ONNX Runtime session's model, or None."""
    import json

    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    return None if raw is None else json.loads(raw)


class OnnxNetwork:
    """ONNX Runtime session of ``network.onnx``: ``(B, 3, S, S)`` float32 standardised crops → dict of numpy arrays
    (the :data:`NETWORK_OUTPUTS`)."""

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / NETWORK_FILE
        if not path.is_file():
            raise FileNotFoundError(f"ONNX network not found: expected {path}")
        self.path = path
        self.session = ort_session(path, threads)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, x) -> dict[str, np.ndarray]:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        res = self.session.run(None, {"image": np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.outputs, res))


class OnnxParts:
    """ONNX-runtime sessions of the three exported parts, callable like the torch modules (torch in, torch out)."""

    def __init__(self, folder: str | os.PathLike, threads: int = 1) -> None:
        self.sessions = {}
        for part, name in PART_FILES.items():
            path = Path(folder) / name
            if not path.is_file():
                raise FileNotFoundError(f"ONNX part {part!r} not found: expected {path}")
            self.sessions[part] = ort_session(path, threads)

    @staticmethod
    def _run(session, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        res = session.run(None, {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in feeds.items()})
        return [torch.from_numpy(r) for r in res]

    def image_stage(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(ImageStage.OUTPUTS, self._run(self.sessions["image_stage"], {"image": x})))

    def pointnet(self, points: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        shape, exp = self._run(self.sessions["pointnet"], {"points": points, "mask": mask})
        return {"shape_is": shape, "exp_is": exp}

    def fusion(self, maps: torch.Tensor, msf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offset, posed = self._run(self.sessions["fusion"], {"maps": maps, "msf": msf})
        return offset, posed


def run_with_onnx(model: DSFNet, parts: OnnxParts, x: torch.Tensor, branch: str = "fused", return_all: bool = False) -> dict[str, torch.Tensor]:
    """The full forward pass with the three network parts in ONNX runtime and the rest in ``model``'s torch code
    (the pre-``network.onnx`` path; still the one for ``branch="image" | "model"``).

    ``x``: ``(B, 3, S, S)`` standardised crops. Same outputs as ``model(x, branch, return_all)`` in eval mode.
    """
    s = model.config.input_size
    if x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s):
        raise ValueError(f"expected (B, 3, {s}, {s}) standardised RGB, got {tuple(x.shape)}")
    with torch.no_grad():
        return model.forward_from_heads(parts.image_stage(x), branch=branch, return_all=return_all,
                                        pointnet=parts.pointnet, fusion=parts.fusion)
