"""The teacher's network, 3DDFA_V2 MobileNetV1 ×0.5, and its checkpoint (``mb05_120x120.pth``).

:class:`TeacherNet` is our MobileNetV1 body (:class:`dsfnet.model.mobilenet.MobileNetV1Body`, the lite backbone's:
a 3×3 stride-2 stem, 13 depthwise-separable blocks with BatchNorm and ReLU) at width 0.5 with global average
pooling and a 512 → 62 linear layer ``fc_param``. Its parameter names are the checkpoint's (after removing
``module.``), so the checkpoint loads strictly (:func:`load_teacher_network`) and its body copies into the lite
backbone (:func:`load_teacher_backbone`, ``dsfnet train --teacher-init``).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from dsfnet.model.mobilenet import MobileNetV1Body
from dsfnet.teacher.constants import N_PARAMS, TEACHER_WEIGHTS

#: width multiplier of the teacher's body
TEACHER_WIDTH = 0.5
#: checkpoint heads we deliberately do not load
_IGNORED_PREFIXES = ("fc_lm.",)


class TeacherNet(MobileNetV1Body):
    """``(B, 3, 120, 120)`` normalised BGR (``(x − 127.5) / 128``) → ``(B, 62)`` normalised parameters."""

    def __init__(self) -> None:
        super().__init__(TEACHER_WIDTH)
        self.fc_param = nn.Linear(self.out_channels, N_PARAMS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_taps(x, min_stride=32)[32]
        return self.fc_param(x.mean(dim=(2, 3)))


def read_teacher_state_dict(weights_path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors with the ``module.`` prefix removed (all heads kept).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a loadable checkpoint dict.
    """
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"teacher weights not found: {weights_path} (expected 3DDFA_V2's {TEACHER_WEIGHTS})")
    try:
        ckpt = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad or unsafe files
        raise ValueError(f"{weights_path}: not a loadable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{weights_path}: expected a dict with 'state_dict', got {type(ckpt).__name__}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def load_teacher_network(weights_path: str | Path, device: str = "cpu") -> TeacherNet:
    """Build :class:`TeacherNet` and load ``mb05_120x120.pth`` strictly (``module.`` removed, ``fc_lm`` ignored).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a checkpoint of this network (missing / unexpected / mis-shaped keys, listed).
    """
    state = read_teacher_state_dict(weights_path)
    state = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIXES)}
    net = TeacherNet()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(f"{weights_path} does not match the 3DDFA_V2 MobileNetV1-0.5 ({N_PARAMS} outputs): "
                         f"missing {missing[:6]}{'...' if len(missing) > 6 else ''}, "
                         f"unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}, "
                         f"wrong shapes {[(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in wrong[:4]]}")
    net.load_state_dict(state, strict=True)
    return net.eval().to(device)


def load_teacher_backbone(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *,
                          bgr_to_rgb: bool = True) -> dict[str, list[str]]:
    """Copy the teacher's weights into ``model``'s MobileNetV1 body where names and shapes match.

    Args:
        model: a :class:`~dsfnet.model.dsfnet.DSFNet` with a ``MobileNetFPN`` backbone (the ``lite`` variant), a
            ``MobileNetFPN``, a :class:`TeacherNet` or a ``MobileNetV1Body``.
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
    own = {k: v for k, v in body.state_dict().items() if not k.startswith("fc_param.")}
    copied, skipped = [], []
    new_state = dict(body.state_dict())
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
