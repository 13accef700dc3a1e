"""What the trainer needs of a network: :class:`TrainableNetwork` (``DSFNet`` has it; so must any registered model).

The trainer calls these members directly (no ``hasattr`` probing): a network registered with
:func:`dsfnet.model.registry.register_model` must provide all of them to be trained.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch


class TrainableNetwork(Protocol):
    """The training interface of a DSFNet-like ``nn.Module``.

    Attributes:
        config: frozen config with ``name``, ``input_size`` (S), ``uv_size`` (U), ``pos_scale`` (crop px per pm unit).
        n_shape, n_exp: coefficient counts; face_model_fingerprint: the face model it was built for (or None).
        face_mask, weight_mask: ``(U, U)`` buffers of the losses; tm_mean, tm_std: ``(12,)`` Tm z-score statistics;
        mean_map: ``(3, U, U)`` mean shape map (sm) or None (no UV-grid mesh losses).
        detach_alignment: fit the similarities on detached inputs (set by the schedule at every step).
        training: ``nn.Module``'s flag.
    """

    config: Any
    n_shape: int
    n_exp: int
    face_model_fingerprint: str | None
    face_mask: torch.Tensor
    weight_mask: torch.Tensor
    tm_mean: torch.Tensor
    tm_std: torch.Tensor
    mean_map: torch.Tensor | None
    detach_alignment: bool
    training: bool

    def __call__(self, x: torch.Tensor, branch: str = "fused", return_all: bool | None = None) -> dict[str, torch.Tensor]:
        """``(B, 3, S, S)`` standardised crops → outputs (``face_uvm``, ``rotation``; all heads with ``return_all``)."""

    def image_stage(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The image-space heads (``grid``, ``seg``, ``seg_logit``, ...) of standardised crops."""

    def forward_from_heads(self, heads: dict[str, torch.Tensor], branch: str = "fused",
                           return_all: bool | None = None) -> dict[str, torch.Tensor]:
        """Everything after the image stage (teacher forcing substitutes ``seg``/``grid`` in ``heads``)."""

    def landmarks(self, face_uvm: torch.Tensor) -> torch.Tensor:
        """``(B, 68, 3)`` landmarks of ``(B, 3, U, U)`` position maps, in the maps' units."""

    def set_tm_statistics(self, mean: Any, std: Any) -> None:
        """Set ``tm_mean``/``tm_std`` from data (``(3, 4)`` or ``(12,)`` each)."""

    def normalize_tm(self, tm: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 4)`` Tm → ``(B, 12)`` z-scored."""

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...
