"""``dsfnet.train``: losses (:mod:`dsfnet.train.losses`), configuration, checkpoints and the (distributed) trainer.

Heavy modules are imported on use; :func:`load_checkpoint` is the one strict loader for weights.
"""
from __future__ import annotations

from dsfnet.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dsfnet.train.config import TrainConfig

__all__ = ["CheckpointError", "TrainConfig", "load_checkpoint", "save_checkpoint"]
