"""The network's input: per-image, per-channel standardisation of RGB crops (``docs/CONVENTIONS.md``).

``x = (c/255 − mean) / sqrt(var + STANDARDIZE_EPS)``, mean and (biased) variance over each crop's pixels, per
channel. Two evaluations of that one formula:

* :func:`preprocess` (numpy): uint8 crops ``(B, S, S, 3)`` → float32 ``(B, 3, S, S)``, evaluated exactly and rounded
  once. Inference (torch and ONNX Runtime backends) and the trainer's validation feed the network through it, so they
  see bit-identical inputs.
* :func:`standardize` (torch, float32, on the batch's device, differentiable): float images in [0, 1]; the training
  step uses it through :func:`images_to_input` (within ~1e-5 of :func:`preprocess`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported by the torch paths only: the ONNX Runtime backend runs without it
    import torch

#: per-channel variance floor of the input standardisation
STANDARDIZE_EPS = 1e-3


def standardize(images: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel standardisation: ``(x − mean) / sqrt(var + 1e-3)``.

    Args:
        images: ``(B, 3, S, S)`` float RGB in [0, 1].
    Returns:
        ``(B, 3, S, S)`` float, the network input.
    """
    if images.dim() != 4 or images.shape[1] != 3 or not images.dtype.is_floating_point:
        raise ValueError(f"standardize expects float (B, 3, S, S) RGB in [0, 1], got {images.dtype} {tuple(images.shape)}")
    import torch

    var, mean = torch.var_mean(images, dim=(2, 3), keepdim=True, correction=0)
    return (images - mean) / torch.sqrt(var + STANDARDIZE_EPS)


def images_to_input(images: torch.Tensor) -> torch.Tensor:
    """A training batch's ``(B, S, S, 3)`` uint8 RGB tensor → ``(B, 3, S, S)`` network input (:func:`standardize`)."""
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"batch['image'] must be (B, S, S, 3) uint8 RGB, got {tuple(images.shape)}")
    return standardize(images.permute(0, 3, 1, 2).float() / 255.0)


def preprocess(crops: np.ndarray) -> np.ndarray:
    """``(B, S, S, 3)`` uint8 RGB → ``(B, 3, S, S)`` float32 network input, exact.

    :func:`standardize`'s formula evaluated exactly and rounded once to float32 (the correctly rounded value up to
    ~1e-16, whatever the summation order). For uint8 crops the channel sums are exact integers, the variance's
    numerator ``n·Σx² − (Σx)²`` too, and each channel's 256 possible outputs are a float64 table rounded once; the
    crop is then a table lookup (~3× faster than evaluating it in float64 tensors, the same values). A float32 mean
    over the strided channel axes would be off by up to ~1e-5, enough to move the end result by 1e-2 image px.
    Other dtypes: the same formula in float64.
    """
    c = np.asarray(crops)
    if c.ndim != 4 or c.shape[-1] != 3:
        raise ValueError(f"preprocess expects (B, S, S, 3) RGB crops, got {c.shape}")
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
