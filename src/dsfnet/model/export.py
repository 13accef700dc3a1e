"""ONNX export of DSFNet's network parts, and running the whole pipeline with them.

What is exported and why: the three learned parts are exported as three ONNX graphs (opset 17,
``torch.onnx.export(..., dynamo=False)``), batch dimension dynamic:

* ``image_stage.onnx``: standardised crop ``(B, 3, S, S)`` → the :class:`~dsfnet.model.dsfnet.ImageStage`
  outputs in the order of ``ImageStage.OUTPUTS``;
* ``pointnet.onnx``: ``points (B, 6, N)``, ``mask (B, N)`` → ``shape_is (B, Ks)``, ``exp_is (B, Ke)``;
* ``fusion.onnx``: ``maps (B, 12, U, U)``, ``msf`` → ``offset_raw (B, 3, U, U)``, ``posed_raw (B, 3, U, U)``.

The steps between them (scatter, point selection, the four confidence-weighted similarity fits, 3DMM offsets)
are tensor ops, but the fits call :func:`dsfnet.geometry.weighted_umeyama`, whose 3×3 SVD (``linalg.svd``) has no
ONNX operator. So they run through the SAME torch code: :func:`run_with_onnx` calls
:meth:`DSFNet.forward_from_heads` with ONNX-runtime callables in place of the PointNet and the fusion UNet.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dsfnet.io.writers import atomic_write_bytes
from dsfnet.model.dsfnet import DSFNet, ImageStage

OPSET = 17
PART_FILES = {"image_stage": "image_stage.onnx", "pointnet": "pointnet.onnx", "fusion": "fusion.onnx"}


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


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: dict) -> None:
    buf = io.BytesIO()
    torch.onnx.export(module, args, buf, input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                      opset_version=OPSET, dynamo=False)
    atomic_write_bytes(path, buf.getvalue())


def export_onnx(model: DSFNet, folder: str | os.PathLike) -> dict[str, Path]:
    """Export the three network parts of ``model`` (in eval mode) to ``folder``; returns ``{part: path}``."""
    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, 3, cfg.input_size, cfg.input_size)
            heads = model.image_stage(x)
            paths = {k: out_dir / v for k, v in PART_FILES.items()}
            _export(_ImageStageGraph(model.image_stage), (x,), paths["image_stage"], ["image"], list(ImageStage.OUTPUTS),
                    {"image": {0: "batch"}, **{k: {0: "batch"} for k in ImageStage.OUTPUTS}})
            n = cfg.pointnet_points if 0 < cfg.pointnet_points < model.face_index.numel() else model.face_index.numel()
            pts, mask = torch.zeros(1, 6, n), torch.ones(1, n)
            _export(_PointNetGraph(model.pointnet), (pts, mask), paths["pointnet"], ["points", "mask"], ["shape_is", "exp_is"],
                    {"points": {0: "batch"}, "mask": {0: "batch"}, "shape_is": {0: "batch"}, "exp_is": {0: "batch"}})
            u = cfg.uv_size
            maps = torch.zeros(1, 12, u, u)
            _export(model.fusion, (maps, heads["msf"]), paths["fusion"], ["maps", "msf"], ["offset_raw", "posed_raw"],
                    {"maps": {0: "batch"}, "msf": {0: "batch"}, "offset_raw": {0: "batch"}, "posed_raw": {0: "batch"}})
    finally:
        model.train(was_training)
    return paths


class OnnxParts:
    """ONNX-runtime sessions of the three exported parts, callable like the torch modules (torch in, torch out)."""

    def __init__(self, folder: str | os.PathLike, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.sessions = {}
        for part, name in PART_FILES.items():
            path = Path(folder) / name
            if not path.is_file():
                raise FileNotFoundError(f"ONNX part {part!r} not found: expected {path}")
            self.sessions[part] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

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
    """The full forward pass with the network parts in ONNX runtime and the rest in ``model``'s torch code.

    ``x``: ``(B, 3, S, S)`` standardised crops. Same outputs as ``model(x, branch, return_all)`` in eval mode.
    """
    s = model.config.input_size
    if x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s):
        raise ValueError(f"expected (B, 3, {s}, {s}) standardised RGB, got {tuple(x.shape)}")
    with torch.no_grad():
        return model.forward_from_heads(parts.image_stage(x), branch=branch, return_all=return_all,
                                        pointnet=parts.pointnet, fusion=parts.fusion)
