"""MobileNetV1-style backbone with a small FPN (the backbone of the CPU variant ``lite``).

The body is layer-for-layer the 3DDFA_V2 MobileNetV1 (``conv1``/``bn1`` then 13 depthwise-separable blocks
``dw2_1 … dw6``), so at width 0.5 every tensor has the teacher checkpoint's shape: the teacher's network is this
body (:class:`dsfnet.teacher.network.TeacherNet`) and :func:`dsfnet.teacher.network.load_teacher_backbone`
copies its weights into the lite backbone. Widths at multiplier 1.0 (halved at 0.5)::

    conv1 s2: 32 | dw2_1: 64 | dw2_2 s2: 128 | dw3_1: 128 | dw3_2 s2: 256 | dw4_1: 256 | dw4_2 s2: 512
    dw5_1..dw5_5: 512 | dw5_6 s2: 1024 | dw6: 1024

Strides of the taps used by the FPN: dw2_1 → 2, dw3_1 → 4, dw4_1 → 8, dw5_5 → 16, dw6 → 32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsfnet.model.layers import DepthwiseSeparable, conv_bn_relu

#: (name, c_out at width 1.0, stride) of the 13 depthwise-separable blocks, in order
_BLOCKS: tuple[tuple[str, int, int], ...] = (
    ("dw2_1", 64, 1), ("dw2_2", 128, 2), ("dw3_1", 128, 1), ("dw3_2", 256, 2), ("dw4_1", 256, 1),
    ("dw4_2", 512, 2), ("dw5_1", 512, 1), ("dw5_2", 512, 1), ("dw5_3", 512, 1), ("dw5_4", 512, 1),
    ("dw5_5", 512, 1), ("dw5_6", 1024, 2), ("dw6", 1024, 1),
)
#: block after which each FPN tap is taken -> stride
_TAPS: dict[str, int] = {"dw2_1": 2, "dw3_1": 4, "dw4_1": 8, "dw5_5": 16, "dw6": 32}


class MobileNetV1Body(nn.Module):
    """The MobileNetV1 convolutional body: ``(B, 3, S, S)`` → taps at strides 2…32 (see module docstring)."""

    def __init__(self, width: float = 0.5) -> None:
        super().__init__()
        c0 = int(32 * width)
        self.conv1 = nn.Conv2d(3, c0, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        self.relu = nn.ReLU(inplace=True)
        self.tap_channels: dict[int, int] = {}
        c_in = c0
        for name, c, stride in _BLOCKS:
            c_out = int(c * width)
            setattr(self, name, DepthwiseSeparable(c_in, c_out, stride))
            if name in _TAPS:
                self.tap_channels[_TAPS[name]] = c_out
            c_in = c_out
        self.out_channels = c_in

    def forward_taps(self, x: torch.Tensor, min_stride: int = 2) -> dict[int, torch.Tensor]:
        """``(B, 3, S, S)`` → ``{stride: (B, C_stride, S/stride, S/stride)}`` for strides ≥ ``min_stride``."""
        x = self.relu(self.bn1(self.conv1(x)))
        taps: dict[int, torch.Tensor] = {}
        for name, _, _ in _BLOCKS:
            x = getattr(self, name)(x)
            if name in _TAPS and _TAPS[name] >= min_stride:
                taps[_TAPS[name]] = x
        return taps


class MobileNetFPN(nn.Module):
    """MobileNetV1 body + a small top-down FPN ending at ``out_stride`` (2 or 4).

    ``forward_features``: ``(B, 3, S, S)`` →

    * ``"dense"``: ``(B, fpn_channels, S/out_stride, S/out_stride)``;
    * ``"global"``: the stride-32 body output ``(B, 512·width·2, S/32, S/32)`` (512 channels at width 0.5).
    """

    def __init__(self, width: float = 0.5, fpn_channels: int = 32, out_stride: int = 2) -> None:
        super().__init__()
        if out_stride not in (2, 4):
            raise ValueError(f"out_stride must be 2 or 4, got {out_stride}")
        self.body = MobileNetV1Body(width)
        self.out_stride = out_stride
        self.strides = [s for s in (32, 16, 8, 4, 2) if s >= out_stride]
        self.lateral = nn.ModuleDict(
            {str(s): conv_bn_relu(self.body.tap_channels[s], fpn_channels, 1, relu=False) for s in self.strides}
        )
        # depthwise-separable smoothing at the output stride (cheap at high resolution)
        self.smooth = nn.Sequential(
            conv_bn_relu(fpn_channels, fpn_channels, 3, groups=fpn_channels),
            conv_bn_relu(fpn_channels, fpn_channels, 1),
        )
        self.feature_info = {
            "dense": {"channels": fpn_channels, "stride": out_stride},
            "global": {"channels": self.body.out_channels, "stride": 32},
        }

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """See class docstring."""
        taps = self.body.forward_taps(x, min_stride=self.out_stride)
        p = self.lateral["32"](taps[32])
        for s in self.strides[1:]:
            lat = self.lateral[str(s)](taps[s])
            p = lat + F.interpolate(p, size=lat.shape[-2:], mode="bilinear", align_corners=False)
        return {"dense": self.smooth(p), "global": taps[32]}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_features(x)
