"""Checkpoint averaging: the element-wise mean of several checkpoints' weights (one model, one training run).

Averaging the weights of checkpoints taken along the end of one run (e.g. the kept epoch checkpoints,
``run.keep_epochs``) aims at the middle of the basin that the run wanders around. Measured on the lite model
(``docs/training.md``, session 6): averages scored level with the run's single checkpoints on held-out identities
(2.60-2.62% NME), not better. BatchNorm running statistics of the average are not those of the averaged network:
recompute them afterwards (:func:`dsfnet.train.batchnorm.recompute_batchnorm_statistics`, ``scripts/precise_bn.py``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch


def average_state_dicts(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of state dicts with the same keys and shapes.

    Floating-point tensors are averaged in float64 and cast back to their dtype; other tensors (e.g. BatchNorm's
    ``num_batches_tracked``) are taken from the first state dict.

    Raises:
        ValueError: on no states, or keys/shapes that differ between them.
    """
    if not states:
        raise ValueError("average_state_dicts needs at least one state dict")
    first = states[0]
    for i, s in enumerate(states[1:], 1):
        if s.keys() != first.keys():
            raise ValueError(f"state dict {i} has other keys than state dict 0: "
                             f"{sorted(set(s.keys()) ^ set(first.keys()))[:5]}")
        bad = [k for k in first if s[k].shape != first[k].shape]
        if bad:
            raise ValueError(f"state dict {i} differs in shape from state dict 0 at {bad[:5]}")
    out = {}
    for k, v in first.items():
        if v.is_floating_point():
            out[k] = (sum(s[k].double() for s in states) / len(states)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out
