"""The image-space dense heads (per-pixel UV correspondence ``grid``, visible-face ``seg`` with the confidence,
``depth``) and the model-space head (global 3DMM coefficients and pose ``Tm``); see ``docs/ARCHITECTURE.md``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsfnet.model.layers import BasicBlock, conv_bn_relu

#: output channels of the three dense heads: grid (UV col, row), seg (+ confidence), depth
DENSE_OUTPUTS: dict[str, int] = {"grid": 2, "seg": 2, "depth": 1}


class ReferenceDenseHead(nn.Module):
    """Reference layout (``paper``): nearest ×2, conv3×3 + BN + ReLU, nearest ×2, conv3×3 → ``c_out``.

    ``(B, c_in, S/4, S/4) → (B, c_out, S, S)``.
    """

    def __init__(self, c_in: int, c_mid: int, c_out: int, stride: int) -> None:
        super().__init__()
        if stride != 4:
            raise ValueError(f"ReferenceDenseHead expects stride-4 features, got stride {stride}")
        self.mid = conv_bn_relu(c_in, c_mid, 3)
        self.out = nn.Conv2d(c_mid, c_out, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mid(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.out(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class LightDenseHead(nn.Module):
    """CPU layout (``lite``): [1×1 reduce], conv3×3 + BN + ReLU at the feature stride,
    bilinear upsampling to the input size, conv1×1 → ``c_out``.

    The 1×1 output conv and the bilinear upsampling are both linear (and bilinear weights sum to 1), so they
    commute: we apply the conv first and upsample ``c_out`` channels instead of ``c_mid`` (same result, cheaper).

    ``(B, c_in, S/stride, S/stride) → (B, c_out, S, S)``.
    """

    def __init__(self, c_in: int, c_mid: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.reduce: nn.Module = nn.Identity() if c_in == c_mid else conv_bn_relu(c_in, c_mid, 1)
        self.mid = conv_bn_relu(c_mid, c_mid, 3)
        self.out = nn.Conv2d(c_mid, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.out(self.mid(self.reduce(x)))
        return F.interpolate(x, scale_factor=float(self.stride), mode="bilinear", align_corners=False)


class DenseHeads(nn.Module):
    """The three image-space heads on the backbone's ``dense`` feature (``shared``: one trunk, 5 outputs).

    ``forward``: ``(B, c_in, S/stride, S/stride)`` → dict of

    * ``grid``  ``(B, 2, S, S)``: UV cell of the surface seen at each pixel, ``g = (cell + 0.5)/(U/2) − 1``,
      channel 0 = column, 1 = row (no activation);
    * ``seg_logit`` ``(B, 1, S, S)`` and ``seg`` = sigmoid: P(visible fore-face);
    * ``conf_logit`` ``(B, 1, S, S)`` and ``conf`` = sigmoid: image-space confidence in (0, 1);
    * ``depth`` ``(B, 1, S, S)``: nose-relative depth in position-map units.
    """

    def __init__(self, c_in: int, c_mid: int, stride: int, kind: str, shared: bool = False) -> None:
        super().__init__()
        cls = {"reference": ReferenceDenseHead, "light": LightDenseHead}.get(kind)
        if cls is None:
            raise ValueError(f"unknown dense head kind {kind!r}; expected 'reference' or 'light'")
        self.shared = shared
        if shared:  # one trunk, 5 output channels [grid 2 | seg 2 | depth 1]
            self.heads = nn.ModuleDict({"all": cls(c_in, c_mid, sum(DENSE_OUTPUTS.values()), stride)})
        else:
            self.heads = nn.ModuleDict({name: cls(c_in, c_mid, c, stride) for name, c in DENSE_OUTPUTS.items()})

    def forward(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.shared:
            out = self.heads["all"](feature)
            grid, seg2, depth = out[:, 0:2], out[:, 2:4], out[:, 4:5]
        else:
            grid = self.heads["grid"](feature)
            seg2 = self.heads["seg"](feature)
            depth = self.heads["depth"](feature)
        seg_logit, conf_logit = seg2[:, 0:1], seg2[:, 1:2]
        return {
            "grid": grid,
            "seg_logit": seg_logit,
            "seg": torch.sigmoid(seg_logit),
            "conf_logit": conf_logit,
            "conf": torch.sigmoid(conf_logit),
            "depth": depth,
        }


class ModelSpaceHead(nn.Module):
    """Global regression of normalised 3DMM coefficients and a z-scored Tm (the model-space branch's head).

    ``forward``: ``(B, c_in, h, w)`` stride-32 feature → dict of

    * ``msf`` ``(B, msf_channels, h, w)``: the model-space feature (also injected into the fusion UNet);
    * ``shape_ms`` ``(B, Ks)``, ``exp_ms`` ``(B, Ke)``: normalised coefficients (α/σ, β/σ);
    * ``tm_ms_z`` ``(B, 12)``: z-scored Tm (row-major 3×4), de-normalised by the caller.

    With ``flat_channels > 0`` (reference): BasicBlock ``msf → flat_channels`` then flatten
    (``flat_channels·h·w`` values, 8·8·8 = 512 in the paper); with 0: global average pool of ``msf``.
    """

    def __init__(self, c_in: int, msf_channels: int, flat_channels: int, spatial: int, n_shape: int, n_exp: int) -> None:
        super().__init__()
        self.msf = BasicBlock(c_in, msf_channels)
        if flat_channels > 0:
            self.squeeze: nn.Module = BasicBlock(msf_channels, flat_channels)
            n_flat = flat_channels * spatial * spatial
        else:
            self.squeeze = nn.AdaptiveAvgPool2d(1)
            n_flat = msf_channels
        self.fc_shape = nn.Linear(n_flat, n_shape)
        self.fc_exp = nn.Linear(n_flat, n_exp)
        self.fc_tm = nn.Linear(n_flat, 12)
        for fc in (self.fc_shape, self.fc_exp, self.fc_tm):
            nn.init.normal_(fc.weight, std=0.01)
            nn.init.zeros_(fc.bias)

    def forward(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        msf = self.msf(feature)
        flat = torch.flatten(self.squeeze(msf), 1)
        return {"msf": msf, "shape_ms": self.fc_shape(flat), "exp_ms": self.fc_exp(flat), "tm_ms_z": self.fc_tm(flat)}
