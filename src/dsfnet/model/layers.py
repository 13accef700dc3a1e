"""Small building blocks shared by the backbones, heads and the fusion UNet.

All blocks map ``(B, C_in, H, W)`` feature maps to ``(B, C_out, H', W')``; ``H' = H / stride``.
They hold parameters only (no buffers besides BatchNorm statistics) and are ONNX-traceable.
"""
from __future__ import annotations

import torch
from torch import nn

#: BatchNorm momentum of the HRNet reference implementation (used by every HRNet block)
HRNET_BN_MOMENTUM = 0.01


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, *, relu: bool = True,
                 momentum: float = 0.1, groups: int = 1) -> nn.Sequential:
    """``conv(kernel, stride, padding=kernel//2, no bias) -> BN -> [ReLU]``: ``(B, c_in, H, W) -> (B, c_out, H/stride, W/stride)``."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out, momentum=momentum),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (two conv3x3), with a 1x1 conv + BN projection on the shortcut when the shape changes.

    ``(B, c_in, H, W) -> (B, c_out, H/stride, W/stride)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, momentum: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out, momentum=momentum)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=momentum)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out, momentum=momentum))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3, 1x1 with expansion 4): ``(B, c_in, H, W) -> (B, 4*width, H, W)``."""

    expansion = 4

    def __init__(self, c_in: int, width: int, momentum: float = 0.1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(
            conv_bn_relu(c_in, width, 1, momentum=momentum),
            conv_bn_relu(width, width, 3, momentum=momentum),
            conv_bn_relu(width, c_out, 1, relu=False, momentum=momentum),
        )
        self.shortcut: nn.Module = nn.Identity()
        if c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out, momentum=momentum))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 block: depthwise conv3x3 (stride) + BN + ReLU, pointwise conv1x1 + BN + ReLU.

    ``(B, c_in, H, W) -> (B, c_out, H/stride, W/stride)``. The attribute names (``conv_dw``, ``bn_dw``,
    ``conv_sep``, ``bn_sep``) match the 3DDFA_V2 MobileNetV1 checkpoint so its tensors copy by name.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False)
        self.bn_dw = nn.BatchNorm2d(c_in)
        self.conv_sep = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn_sep = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn_dw(self.conv_dw(x)))
        return self.relu(self.bn_sep(self.conv_sep(x)))


class DoubleConv(nn.Module):
    """Two ``conv3x3 -> [BN] -> ReLU`` layers: ``(B, c_in, H, W) -> (B, c_out, H, W)`` (UNet block)."""

    def __init__(self, c_in: int, c_out: int, batch_norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(((c_in, c_out), (c_out, c_out))):
            layers.append(nn.Conv2d(a, b, 3, 1, 1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(b))
            layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
