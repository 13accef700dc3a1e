"""The optimiser and what changes with the step: learning rate, loss stage, teacher forcing, validation times.

Progress is ``step / total_steps`` ∈ [0, 1]; the loss stage active at a progress is
:func:`~dsfnet.train.losses.stage_at`'s. Epochs are ``step / steps_per_epoch`` (fractional).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch

from dsfnet.train.losses import Stage, active_weights, stage_at


def make_optimizer(params: Iterable[torch.nn.Parameter], optim: Any) -> torch.optim.Optimizer:
    """Adam over ``params`` with the config's ``lr_base``, ``betas`` and ``weight_decay`` (``optim``: the ``optim``
    section), as the fused single-kernel implementation (on CPU too: fewer passes over the parameters)."""
    return torch.optim.Adam(params, lr=optim.lr_base, betas=tuple(optim.betas), weight_decay=optim.weight_decay,
                            fused=True)


def learning_rate(optim: Any, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up ``lr_base → lr_peak`` over ``warmup_epochs``, then ``lr_peak · decay^(epochs after warm-up)``
    (before the stage's ``lr_scale``)."""
    e = step / max(steps_per_epoch, 1)
    if e < optim.warmup_epochs:
        return optim.lr_base + (optim.lr_peak - optim.lr_base) * e / optim.warmup_epochs
    return optim.lr_peak * optim.decay ** (e - optim.warmup_epochs)


@dataclass(frozen=True)
class StepPlan:
    """What the schedule sets for one training step.

    Attributes:
        stage: the active loss stage; weights: each term's loss weight; lr: learning rate (stage-scaled).
        teacher_forcing: probability that a sample is lifted with the ground-truth seg/grid.
        detach_alignment: fit the similarities on detached inputs (the stage's first ``detach_alignment_epochs``).
    """

    stage: Stage
    weights: dict[str, float]
    lr: float
    teacher_forcing: float
    detach_alignment: bool


def plan_step(config: Any, step: int, total_steps: int, steps_per_epoch: int) -> StepPlan:
    """The :class:`StepPlan` of ``step`` for a ``TrainConfig``."""
    progress = step / total_steps
    idx, stage = stage_at(config.loss, progress)
    lr = learning_rate(config.optim, step, steps_per_epoch) * stage.lr_scale
    # position inside the stage (for teacher forcing and the detached-alignment warm-up)
    begin = 0.0 if idx == 0 else config.loss.stages[idx - 1].until
    frac = (progress - begin) / max(stage.until - begin, 1e-12)
    p0, p1 = stage.teacher_forcing
    epochs_in = (progress - begin) * total_steps / steps_per_epoch
    return StepPlan(stage, active_weights(config.loss, progress), lr, p0 + (p1 - p0) * frac,
                    epochs_in < stage.detach_alignment_epochs)


def validation_due(run: Any, step: int, steps_per_epoch: int, total_steps: int) -> bool:
    """Whether the end of epoch at ``step`` validates: every ``run.val_every`` epochs, and at the last step."""
    epoch_done = step / steps_per_epoch
    return run.val_every > 0 and (abs(epoch_done / run.val_every - round(epoch_done / run.val_every)) < 1e-9
                                  or step == total_steps)


def validation_branch(config: Any, step: int, total_steps: int) -> str:
    """The forward branch validated at ``step``: the current stage's (the last stage's once the run is done)."""
    if step < total_steps:
        return stage_at(config.loss, step / total_steps)[1].branch
    return config.loss.stages[-1].branch
