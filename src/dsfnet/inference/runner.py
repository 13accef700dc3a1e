"""Network runners: the interface between the network and :class:`dsfnet.inference.FaceAligner`, and the torch one.

A runner maps a batch of crops to the network's UV outputs::

    runner(crops (B, S, S, 3) uint8 RGB) -> {"face_uvm": (B, 3, U, U) float32 pm units, crop frame,
                                             nose-relative z;
                                             "rotation": (B, 3, 3) proper Pose_Para rotation;
                                             optional "seg": (B, 1, S, S) P(visible face) in [0, 1]}

with attributes ``input_size`` (S) and ``uv_size`` (U). Standardisation (spec §1.3) happens inside the
runner, so callers only ever hand over uint8 crops. Anything with that shape of call can be plugged into
:class:`dsfnet.inference.FaceAligner` (tests use a fake runner that returns a known map). The torch runner is
:class:`TorchRunner` (its model from :func:`dsfnet.model.create_model`, which owns the weights); the ONNX one is
``dsfnet.inference.onnx.OnnxRunner``.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "NetworkRunner",
    "StaticRunner",
    "TorchRunner",
    "standardize_np",
]


@runtime_checkable
class NetworkRunner(Protocol):
    input_size: int
    uv_size: int

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]: ...


def standardize_np(crops: np.ndarray) -> np.ndarray:
    """``(B, S, S, 3)`` uint8 RGB → ``(B, 3, S, S)`` float32, per-image per-channel standardised (spec §1.3).

    ``dsfnet.model.standardize`` (``(x − mean) / sqrt(var + 1e-3)`` of x in [0, 1]) evaluated exactly and rounded
    once to float32 (the correctly rounded value up to ~1e-16, whatever the summation order). For uint8 crops the
    channel sums are exact integers, the variance's numerator ``n·Σx² − (Σx)²`` too, and each channel's 256
    possible outputs are a float64 table rounded once; the crop is then a table lookup (~3× faster than evaluating
    it in float64 tensors, the same values). Both runners feed the network through this one function, so the torch
    and the ONNX backends see bit-identical inputs (a float32 mean over the strided channel axes is off by up to
    ~1e-5, enough to move the end result by 1e-2 image px).
    """
    from dsfnet.model.dsfnet import STANDARDIZE_EPS

    c = np.asarray(crops)
    if c.ndim != 4 or c.shape[-1] != 3:
        raise ValueError(f"standardize_np expects (B, S, S, 3) RGB crops, got {c.shape}")
    b, h, w, _ = c.shape
    if c.dtype != np.uint8:  # any other input: the same formula in float64
        x = np.ascontiguousarray(c.transpose(0, 3, 1, 2), dtype=np.float64) / 255.0
        mean = x.mean(axis=(2, 3), keepdims=True)
        var = ((x - mean) ** 2).mean(axis=(2, 3), keepdims=True)
        return ((x - mean) / np.sqrt(var + STANDARDIZE_EPS)).astype(np.float32)
    n = h * w
    planes = np.ascontiguousarray(c.transpose(0, 3, 1, 2)).reshape(b * 3, n)
    levels = np.arange(256, dtype=np.float64) / 255.0
    out = np.empty((b * 3, n), np.float32)
    for k in range(b * 3):
        p = planes[k].astype(np.float64)  # integers up to 255: these sums are exact
        s, ss = int(p.sum()), int((p * p).sum())  # (no BLAS dot: its threads stall on a busy machine)
        mean = s / (255 * n)
        var = (n * ss - s * s) / (255 * 255 * n * n)  # exact integers, one rounding
        table = ((levels - mean) / np.sqrt(var + STANDARDIZE_EPS)).astype(np.float32)
        np.take(table, planes[k], out=out[k], mode="clip")  # indices are 0..255: clip never applies
    return out.reshape(b, 3, h, w)


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

        # the same standardisation as OnnxRunner (float64, one rounding): both backends see identical inputs
        x = torch.from_numpy(standardize_np(_check_crops(crops, self.input_size))).to(self.device)
        with torch.inference_mode():
            out = self.model(x, branch=self.branch, return_all=self.with_seg)
        res = {"face_uvm": out["face_uvm"].float().cpu().numpy(), "rotation": out["rotation"].double().cpu().numpy()}
        if self.with_seg and "seg" in out:
            res["seg"] = out["seg"][:, :1].float().cpu().numpy()
        return res


class StaticRunner:
    """A runner that returns the same known outputs for every crop (tests, demos without weights).

    Args:
        face_uvm: ``(3, U, U)`` position map (pm units, crop frame, nose-relative z).
        rotation: ``(3, 3)`` proper rotation.
        input_size: crop side S it pretends to take.
        seg: optional ``(S, S)`` visible-face probability.
    """

    def __init__(self, face_uvm: np.ndarray, rotation: np.ndarray, input_size: int, seg: np.ndarray | None = None) -> None:
        self.face_uvm = np.asarray(face_uvm, dtype=np.float32)
        if self.face_uvm.ndim != 3 or self.face_uvm.shape[0] != 3 or self.face_uvm.shape[1] != self.face_uvm.shape[2]:
            raise ValueError(f"face_uvm must be (3, U, U), got {self.face_uvm.shape}")
        self.rotation = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        self.input_size = int(input_size)
        self.uv_size = int(self.face_uvm.shape[-1])
        self.seg = None if seg is None else np.asarray(seg, dtype=np.float32).reshape(1, self.input_size, self.input_size)
        self.calls = 0
        self.last_crops: np.ndarray | None = None

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        c = _check_crops(crops, self.input_size)
        self.calls += 1
        self.last_crops = c
        b = len(c)
        out = {"face_uvm": np.repeat(self.face_uvm[None], b, 0), "rotation": np.repeat(self.rotation[None], b, 0)}
        if self.seg is not None:
            out["seg"] = np.repeat(self.seg[None], b, 0)
        return out
