"""Model variants as data: one frozen :class:`ModelConfig` per variant, in :data:`MODEL_CONFIGS`.

:func:`with_overrides` is the one way to change fields of a frozen config: unknown names and values of the wrong
type raise ValueError. :func:`coerce_value` is the one coercion of config values (YAML / ``--set``), for the model
and the training configuration alike.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, TypeVar

C = TypeVar("C")

from dsfnet.geometry.posmap import pos_scale


@dataclass(frozen=True)
class ModelConfig:
    """Every size of a DSFNet variant: the paper's network (``paper``) or the CPU variant (``lite``).

    Which module builds which part: docs/ARCHITECTURE.md ("DSFNet's parts").

    Attributes:
        name: variant name.
        input_size: crop side S (px); divisible by 32.
        uv_size: UV map side U; divisible by ``2 ** fusion_levels``.
        backbone: ``"hrnet"`` (HRNet-W18-lite) or ``"mobilenet"`` (MobileNetV1 + FPN).
        backbone_widths: HRNet branch widths (hrnet only).
        hrnet_blocks: BasicBlocks per branch per stage (hrnet only).
        mobilenet_width: width multiplier (0.5 = the 3DDFA_V2 teacher's, so its weights fit).
        fpn_channels, fpn_stride: FPN width and output stride (mobilenet only).
        head_kind: ``"reference"`` (nearest ×2, conv, nearest ×2, conv) or ``"light"`` (conv, bilinear, 1×1).
        head_channels: middle width of each dense head.
        head_shared: one head trunk with 5 output channels instead of three heads (CPU variant).
        msf_channels: model-space feature width; msf_flat_channels: BasicBlock squeeze before flatten (0 = GAP).
        pointnet_widths: per-point MLP widths; pointnet_points: N points (≤ 0: all face cells).
        fusion_levels, fusion_base: UNet depth (max-pools) and level-1 width.
        fusion_shared_decoder: one decoder trunk with two heads (else two decoders).
        fusion_input_stride: 1, or 2 / 3 / 4 to run the UNet on average-pooled maps and upsample its outputs
            bilinearly (CPU variant; use with ``fusion_residual`` so full-resolution detail comes from the base).
        fusion_residual: UNet predicts corrections to the mean of the two branches' maps (else the maps themselves).
        seg_threshold: visible-pixel threshold on seg.
        min_visible_cells: fewer filled UV face cells than this → the sample falls back to the model-space branch.
    """

    name: str
    input_size: int
    uv_size: int
    backbone: str
    backbone_widths: tuple[int, ...] = (18, 36, 72, 144)
    hrnet_blocks: int = 4
    mobilenet_width: float = 0.5
    fpn_channels: int = 32
    fpn_stride: int = 2
    head_kind: str = "light"
    head_channels: int = 32
    head_shared: bool = False
    msf_channels: int = 64
    msf_flat_channels: int = 0
    pointnet_widths: tuple[int, ...] = (32, 64, 128, 256)
    pointnet_points: int = 1024
    fusion_levels: int = 4
    fusion_base: int = 8
    fusion_shared_decoder: bool = True
    fusion_input_stride: int = 1
    fusion_residual: bool = True
    seg_threshold: float = 0.5
    min_visible_cells: int = 16

    @property
    def pos_scale(self) -> float:
        """Crop px per position-map unit: ``input_size · 280 / 256`` (140 at 128, 280 at 256)."""
        return pos_scale(self.input_size)

    def validate(self) -> None:
        """Raise ValueError on inconsistent sizes."""
        if self.input_size % 32:
            raise ValueError(f"input_size must be divisible by 32, got {self.input_size}")
        div = self.fusion_input_stride * 2 ** self.fusion_levels
        if self.uv_size % div:
            raise ValueError(f"uv_size {self.uv_size} must be divisible by fusion_input_stride * 2**fusion_levels = {div}")
        if self.fusion_input_stride not in (1, 2, 3, 4):
            raise ValueError(f"fusion_input_stride must be 1, 2, 3 or 4, got {self.fusion_input_stride}")
        if self.backbone not in ("hrnet", "mobilenet"):
            raise ValueError(f"backbone must be 'hrnet' or 'mobilenet', got {self.backbone!r}")
        if self.head_kind not in ("reference", "light"):
            raise ValueError(f"head_kind must be 'reference' or 'light', got {self.head_kind!r}")

    def with_overrides(self, **overrides: Any) -> "ModelConfig":
        """A copy with some fields replaced (:func:`with_overrides`)."""
        return with_overrides(self, overrides)


def with_overrides(config: C, overrides: Mapping[str, Any], *, validate: bool = True) -> C:
    """``dataclasses.replace(config, **overrides)``, type-checked, then ``config.validate()`` if it has one (and
    ``validate``: False checks names and types only, as a training config does when it is read).

    Each value is coerced to its field's annotation by :func:`coerce_value`. ``name`` cannot be overridden.
    Raises ValueError naming the field (unknown names list the valid ones).
    """
    hints = typing.get_type_hints(type(config))
    names = {f.name for f in fields(config)} - {"name"}
    kind = type(config).__name__
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown {kind} field(s) {unknown}; valid: {sorted(names)}")
    values = {k: coerce_value(hints[k], v, f"{kind}.{k}") for k, v in overrides.items()}
    cfg = replace(config, **values)
    if validate and hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def coerce_value(tp: Any, value: Any, where: str) -> Any:
    """``value`` as the scalar or tuple field type ``tp`` (the one coercion of config values, model and training).

    ``float``: any number or numeric string (YAML reads ``1e-5`` as text), not a bool; ``int``: an integer, an
    integral float or an integer string, not a bool; ``bool``, ``str``: exactly that type; ``tuple[T, ...]``: a
    list or tuple of ``T``. Raises ValueError naming ``where``; TypeError for another ``tp``.
    """
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        return tuple(coerce_value(typing.get_args(tp)[0], v, where) for v in value)
    if tp is float or tp is int:
        what = "a number" if tp is float else "an integer"
        if isinstance(value, bool) or (tp is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{where} must be {what}, got {value!r}")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be {what}, got {value!r}") from None
    if tp is bool or tp is str:
        if not isinstance(value, tp):
            raise ValueError(f"{where} must be {'true/false' if tp is bool else 'a string'}, got {value!r}")
        return value
    raise TypeError(f"{where}: no coercion for the field type {tp!r}")


#: the registry: variant name -> configuration
MODEL_CONFIGS: dict[str, ModelConfig] = {
    # the paper's network: HRNet-W18-lite, reference heads, flattened 8x8x8 global feature,
    # PointNet 64-64-64-128-1024 on 2048 points, UNet base 16 with 4 levels and two decoders
    "paper": ModelConfig(
        name="paper", input_size=256, uv_size=256, backbone="hrnet", backbone_widths=(18, 36, 72, 144), hrnet_blocks=4,
        head_kind="reference", head_channels=270, msf_channels=72, msf_flat_channels=8,
        pointnet_widths=(64, 64, 64, 128, 1024), pointnet_points=2048,
        fusion_levels=4, fusion_base=16, fusion_shared_decoder=False, fusion_residual=False,
    ),
    # CPU variant: MobileNetV1-0.5 (teacher-compatible) + FPN to stride 4, one shared light head
    # (conv3x3 48 ch at stride 4, 1x1 to 5 outputs, x4 bilinear),
    # GAP global feature, PointNet 32-64-128-256 on 128 points, UNet (base 8, 3 levels, shared decoder)
    # on the 3x-pooled 32x32 maps predicting residuals on top of the two branches' full-resolution mean.
    # 96² UV maps (6,095 face cells): every map-sized step costs 0.56x what it does at 128², landmarks are read
    # bilinearly (the coarser grid costs them 0.02% of the face size), and the UNet sees the same 32² grid as
    # at 128² with 4x pooling, so weights trained at 128² carry over (docs/training.md, runs lite7 and lite8)
    "lite": ModelConfig(
        name="lite", input_size=128, uv_size=96, backbone="mobilenet", mobilenet_width=0.5, fpn_channels=32, fpn_stride=4,
        head_kind="light", head_channels=48, head_shared=True, msf_channels=64, msf_flat_channels=0,
        pointnet_widths=(32, 64, 128, 256), pointnet_points=128,
        fusion_levels=3, fusion_base=8, fusion_shared_decoder=True, fusion_input_stride=3, fusion_residual=True,
    ),
}
