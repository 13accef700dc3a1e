"""Network runners: the interface between the network and :class:`dsfnet.inference.FaceAligner`, and the torch one.

A runner maps a batch of crops to the network's UV outputs::

    runner(crops (B, S, S, 3) uint8 RGB) -> {"face_uvm": (B, 3, U, U) float32 pm units, crop frame,
                                             nose-relative z;
                                             "rotation": (B, 3, 3) proper Pose_Para rotation;
                                             optional "seg": (B, 1, S, S) P(visible face) in [0, 1]}

with attributes ``input_size`` (S) and ``uv_size`` (U). Standardisation (``dsfnet.model.preprocess``) happens
inside the runner, so callers only ever hand over uint8 crops. Anything with that shape of call can be plugged into
:class:`dsfnet.inference.FaceAligner` (the tests' ``testing/aligner.py`` has one that returns a known map). The torch runner is
:class:`TorchRunner` (its model from :func:`dsfnet.model.create_model`, which owns the weights); the ONNX one is
``dsfnet.inference.onnx.OnnxRunner``.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "NetworkRunner",
    "TorchRunner",
]


@runtime_checkable
class NetworkRunner(Protocol):
    input_size: int
    uv_size: int

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]: ...


def _check_crops(crops: np.ndarray, size: int) -> np.ndarray:
    c = np.asarray(crops)
    if c.ndim != 4 or c.shape[1:] != (size, size, 3) or c.dtype != np.uint8:
        raise ValueError(f"runner expects (B, {size}, {size}, 3) uint8 RGB crops, got {c.shape} {c.dtype}")
    return c


class TorchRunner:
    """Run a ``dsfnet.model.DSFNet`` on CPU (or ``device``) under ``torch.inference_mode``.

    Args:
        model: a DSFNet (put in eval mode here), e.g. ``create_model(config, weights="shipped")``.
        device: torch device string.
        branch: which reconstruction to report (``"fused"``, ``"image"``, ``"model"``).
        with_seg: also return the image-space visibility head ``seg`` (used for landmark visibility).
    """

    def __init__(self, model, device: str = "cpu", branch: str = "fused", with_seg: bool = True) -> None:
        self.model = model.eval()
        self.device = device
        self.branch = branch
        self.with_seg = with_seg
        self.input_size = int(model.config.input_size)
        self.uv_size = int(model.config.uv_size)

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        from dsfnet.model.preprocess import preprocess

        # the same standardisation as OnnxRunner (float64, one rounding): both backends see identical inputs
        x = torch.from_numpy(preprocess(_check_crops(crops, self.input_size))).to(self.device)
        with torch.inference_mode():
            out = self.model(x, branch=self.branch, return_all=self.with_seg)
        res = {"face_uvm": out["face_uvm"].float().cpu().numpy(), "rotation": out["rotation"].double().cpu().numpy()}
        if self.with_seg and "seg" in out:
            res["seg"] = out["seg"][:, :1].float().cpu().numpy()
        return res
