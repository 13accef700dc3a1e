"""The training forward: what DistributedDataParallel wraps (the network, with optional teacher forcing)."""
from __future__ import annotations

import torch
from torch import nn

from dsfnet.model.interface import TrainableNetwork


class TrainForward(nn.Module):
    """The training forward of a :class:`~dsfnet.model.interface.TrainableNetwork`, with teacher forcing.

    ``forward(x, branch, tf_mask=None, seg_gt=None, grid_gt=None)``: samples with ``tf_mask`` True are lifted into
    UV with the GT ``seg (B,S,S)``/``grid (B,2,S,S)`` instead of the predictions (training stage B); the returned
    ``grid``/``seg``/``seg_logit`` are always the predictions (they are what the image-space losses train).
    """

    def __init__(self, model: TrainableNetwork) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, branch: str = "fused", tf_mask: torch.Tensor | None = None,
                seg_gt: torch.Tensor | None = None, grid_gt: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        m = self.model
        if tf_mask is None:
            return m(x, branch=branch, return_all=True)
        heads = m.image_stage(x)
        sub = dict(heads)
        sel = tf_mask[:, None, None, None]
        sub["seg"] = torch.where(sel, seg_gt[:, None].to(heads["seg"].dtype), heads["seg"])
        sub["grid"] = torch.where(sel, grid_gt.to(heads["grid"].dtype), heads["grid"])
        out = m.forward_from_heads(sub, branch=branch, return_all=True)
        out.update(grid=heads["grid"], seg=heads["seg"], seg_logit=heads["seg_logit"])
        return out
