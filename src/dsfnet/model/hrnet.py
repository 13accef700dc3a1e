"""HRNet-W18-lite backbone of the ``paper`` variant, after DSFNet's reference network: one module per stage
(standard HRNet-W18 has 1/4/3), four BasicBlocks per branch, branch widths 18/36/72/144 at strides 4/8/16/32.

Input ``(B, 3, S, S)`` standardised RGB (S divisible by 32). ``forward_features`` returns

* ``"dense"``: the four stage-4 outputs upsampled (bilinear) to stride 4 and concatenated,
  ``(B, 270, S/4, S/4)`` for the default widths;
* ``"global"``: the stride-32 branch, ``(B, 144, S/32, S/32)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsfnet.model.layers import HRNET_BN_MOMENTUM, BasicBlock, Bottleneck, conv_bn_relu

_M = HRNET_BN_MOMENTUM


class _HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by all-to-all fusion by summation.

    Inputs/outputs: a list of ``n`` tensors ``(B, widths[i], H/2^i, W/2^i)``.
    Up-paths: 1x1 conv + BN + bilinear upsampling; down-paths: chains of strided conv3x3 + BN (+ReLU but the last).
    """

    def __init__(self, widths: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(w, w, momentum=_M) for _ in range(blocks)]) for w in widths
        )
        n = len(widths)
        self.fuse = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(nn.Sequential(nn.Conv2d(widths[j], widths[i], 1, bias=False), nn.BatchNorm2d(widths[i], momentum=_M)))
                else:
                    steps: list[nn.Module] = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        c_out = widths[i] if last else widths[j]
                        steps.append(conv_bn_relu(widths[j], c_out, 3, 2, relu=not last, momentum=_M))
                    row.append(nn.Sequential(*steps))
            self.fuse.append(row)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            acc = xs[i]
            for j, path in enumerate(row):
                if j == i:
                    continue
                y = path(xs[j])
                if j > i:
                    y = F.interpolate(y, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
                acc = acc + y
            out.append(self.relu(acc))
        return out


class HRNetLite(nn.Module):
    """HRNet-W18-lite feature extractor (no classification head).

    Args:
        widths: branch widths, default (18, 36, 72, 144).
        blocks: BasicBlocks per branch in every stage (4 in the reference; 2 is a cheaper CPU option).
        stem_width: channels of the two stride-2 stem convs (64).
    """

    def __init__(self, widths: tuple[int, ...] = (18, 36, 72, 144), blocks: int = 4, stem_width: int = 64) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"HRNetLite needs 4 branch widths, got {widths}")
        self.widths = tuple(widths)
        self.stem = nn.Sequential(conv_bn_relu(3, stem_width, 3, 2, momentum=_M), conv_bn_relu(stem_width, stem_width, 3, 2, momentum=_M))
        self.layer1 = nn.Sequential(*[Bottleneck(stem_width if i == 0 else 4 * stem_width, stem_width, momentum=_M) for i in range(4)])
        c1 = 4 * stem_width
        self.transition1 = nn.ModuleList([conv_bn_relu(c1, widths[0], 3, 1, momentum=_M), conv_bn_relu(c1, widths[1], 3, 2, momentum=_M)])
        self.stage2 = _HighResolutionModule(widths[:2], blocks)
        self.transition2 = conv_bn_relu(widths[1], widths[2], 3, 2, momentum=_M)
        self.stage3 = _HighResolutionModule(widths[:3], blocks)
        self.transition3 = conv_bn_relu(widths[2], widths[3], 3, 2, momentum=_M)
        self.stage4 = _HighResolutionModule(widths[:4], blocks)
        self.feature_info = {"dense": {"channels": sum(widths), "stride": 4}, "global": {"channels": widths[3], "stride": 32}}
        self._init_weights()

    def _init_weights(self) -> None:
        # reference initialisation: convs N(0, 0.001), BN gamma 1 beta 0 (no ImageNet pre-training)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, S, S) -> {"dense": (B, sum(widths), S/4, S/4), "global": (B, widths[3], S/32, S/32)}``."""
        x = self.layer1(self.stem(x))
        xs = [t(x) for t in self.transition1]
        xs = self.stage2(xs)
        xs = self.stage3(xs + [self.transition2(xs[-1])])
        xs = self.stage4(xs + [self.transition3(xs[-1])])
        size = xs[0].shape[-2:]
        ups = [xs[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in xs[1:]]
        return {"dense": torch.cat(ups, dim=1), "global": xs[3]}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_features(x)
