"""UV-space fusion UNet: ``[P_is, P_ms, O_is, O_ms]`` + the model-space feature → ``O_f``, ``K_f``.

``P_is``/``P_ms``: the posed faces of the image- and model-space branches (pm units, crop frame); ``O_is``/``O_ms``:
their offset maps (sm units, model frame); ``O_f``, ``K_f``: the fused offset map and posed map, whose weighted
self-alignment gives the final face (units and the whole forward pass: :mod:`dsfnet.model.dsfnet`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsfnet.model.layers import DoubleConv


class _Decoder(nn.Module):
    """Up-blocks ``widths[L] → … → widths[0]``: ConvTranspose k2 s2, concat skip, two conv3×3 + ReLU (no BN)."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for i in range(len(widths) - 1, 0, -1):
            self.ups.append(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, 2))
            self.blocks.append(DoubleConv(2 * widths[i - 1], widths[i - 1], batch_norm=False))

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return x


def _out_head(c: int) -> nn.Sequential:
    """conv3×3 ``c→c`` + BN + ReLU, conv1×1 ``c→3``: ``(B, c, U, U) → (B, 3, U, U)``."""
    return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, 3, 1))


class FusionUNet(nn.Module):
    """The fusion network.

    Args:
        c_in: input channels (12: two posed maps and two offset maps).
        msf_channels: channels of the injected model-space feature.
        base: width of level 1; level i has ``base·2^(i−1)`` channels.
        levels: number of max-pool steps (4 in the reference: U → U/16 at the centre).
        shared_decoder: one decoder trunk with two output heads (``lite``) instead of two decoders (``paper``).
        input_stride: 2 or 4 runs the UNet on average-pooled input and upsamples both outputs bilinearly to U.

    ``forward(x (B, 12, U, U), msf (B, C_msf, h, w))`` → ``(offset (B, 3, U, U), posed (B, 3, U, U))``:
    raw head outputs; the caller adds any residual base. ``U`` must be divisible by ``input_stride·2^levels``.
    """

    def __init__(self, c_in: int, msf_channels: int, base: int, levels: int, shared_decoder: bool, input_stride: int = 1) -> None:
        super().__init__()
        self.input_stride = input_stride
        widths = [base * 2 ** i for i in range(levels + 1)]
        self.levels = levels
        self.enc = nn.ModuleList([DoubleConv(c_in, widths[0])] + [DoubleConv(widths[i - 1], widths[i]) for i in range(1, levels + 1)])
        self.inject = DoubleConv(widths[-1] + msf_channels, widths[-1])
        self.shared_decoder = shared_decoder
        self.dec_offset = _Decoder(widths)
        self.dec_posed: nn.Module | None = None if shared_decoder else _Decoder(widths)
        self.head_offset = _out_head(widths[0])
        self.head_posed = _out_head(widths[0])
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
        # outputs start small so that a residual base (if any) dominates at initialisation
        for head in (self.head_offset, self.head_posed):
            nn.init.normal_(head[-1].weight, std=1e-3)

    def forward(self, x: torch.Tensor, msf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = x.shape[-2:]
        if self.input_stride > 1:
            x = F.avg_pool2d(x, self.input_stride)
        skips = []
        for i, block in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        centre = skips.pop()
        g = F.interpolate(msf, size=centre.shape[-2:], mode="bilinear", align_corners=False)
        centre = self.inject(torch.cat([centre, g], dim=1))
        trunk_o = self.dec_offset(centre, skips)
        trunk_p = trunk_o if self.dec_posed is None else self.dec_posed(centre, skips)
        offset, posed = self.head_offset(trunk_o), self.head_posed(trunk_p)
        if self.input_stride > 1:
            offset = F.interpolate(offset, size=size, mode="bilinear", align_corners=False)
            posed = F.interpolate(posed, size=size, mode="bilinear", align_corners=False)
        return offset, posed
