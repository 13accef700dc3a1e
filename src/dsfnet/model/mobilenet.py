"""MobileNetV1-style backbone with a small FPN (the ``lite`` variant, spec §8.1), and the teacher's
architecture (3DDFA_V2 MobileNetV1-0.5) for timing and weight initialisation.

The body is layer-for-layer the 3DDFA_V2 MobileNetV1 (``conv1``/``bn1`` then 13 depthwise-separable blocks
``dw2_1 … dw6``), so at width 0.5 every tensor has the teacher checkpoint's shape and
:func:`load_teacher_backbone` can copy it. Widths at multiplier 1.0 (halved at 0.5)::

    conv1 s2: 32 | dw2_1: 64 | dw2_2 s2: 128 | dw3_1: 128 | dw3_2 s2: 256 | dw4_1: 256 | dw4_2 s2: 512
    dw5_1..dw5_5: 512 | dw5_6 s2: 1024 | dw6: 1024

Strides of the taps used by the FPN: dw2_1 → 2, dw3_1 → 4, dw4_1 → 8, dw5_5 → 16, dw6 → 32.
"""
from __future__ import annotations

from collections.abc import Mapping

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


class MobileNetV1Teacher(nn.Module):
    """The teacher's architecture (3DDFA_V2 ``mobilenet``, widen 0.5, 62 outputs) for timing and comparison.

    ``(B, 3, 120, 120)`` → ``(B, num_params)``. Random weights unless loaded; key names equal the checkpoint's
    after stripping ``module.`` (``fc_param`` is called ``fc`` here, as in 3DDFA_V2).
    """

    def __init__(self, width: float = 0.5, num_params: int = 62) -> None:
        super().__init__()
        self.body = MobileNetV1Body(width)
        self.fc = nn.Linear(self.body.out_channels, num_params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body.forward_taps(x, min_stride=32)[32]
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


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


def load_teacher_backbone(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, bgr_to_rgb: bool = True) -> dict[str, list[str]]:
    """Copy the 3DDFA_V2 MobileNetV1-0.5 weights into ``model``'s MobileNetV1 body where names and shapes match.

    Args:
        model: a :class:`~dsfnet.model.dsfnet.DSFNet` with a :class:`MobileNetFPN` backbone, a
            :class:`MobileNetFPN`, a :class:`MobileNetV1Teacher` or a :class:`MobileNetV1Body`.
        state_dict: the checkpoint's ``state_dict`` (keys like ``module.dw2_1.conv_dw.weight``; the
            ``module.`` prefix is optional), e.g. ``torch.load(path, map_location="cpu", weights_only=True)["state_dict"]``.
        bgr_to_rgb: the teacher reads BGR; reverse ``conv1``'s input channels so that RGB input sees the same filters.
            (Input scaling differs too: the teacher uses (x−127.5)/128, we standardise per image; BN adapts.)
    Returns:
        ``{"copied": [...], "skipped": [...], "missing": [...]}``: body keys copied, checkpoint keys not used
        (``fc_param``, ``fc_lm``, or a shape mismatch), body keys with no checkpoint tensor.
    Raises:
        ValueError: if ``model`` has no MobileNetV1 body or nothing could be copied.
    """
    body = next((m for m in model.modules() if isinstance(m, MobileNetV1Body)), None)
    if body is None:
        raise ValueError(f"load_teacher_backbone: {type(model).__name__} has no MobileNetV1Body (expected the 'lite' backbone)")
    own = body.state_dict()
    copied, skipped = [], []
    new_state = dict(own)
    for key, value in state_dict.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name not in own or tuple(own[name].shape) != tuple(value.shape):
            skipped.append(key)
            continue
        value = value.detach().to(own[name].dtype)
        if bgr_to_rgb and name == "conv1.weight":
            value = value.flip(1)
        new_state[name] = value.clone()
        copied.append(name)
    if not copied:
        raise ValueError("load_teacher_backbone: no tensor of the state dict matches the MobileNetV1 body "
                         f"(first keys: {list(state_dict)[:3]})")
    body.load_state_dict(new_state)
    missing = [k for k in own if k not in copied]
    return {"copied": copied, "skipped": skipped, "missing": missing}
