"""Run state: seeding, the checkpoint's training state (step, optimiser, RNG states, best metric), resume and start.

The training state a checkpoint carries (``checkpoint["train"]``; the file format is :mod:`dsfnet.model.checkpoint`'s)::

    {"step", "epoch", "best_metric", "best_branch", "optimizer" (state dict),
     "scheduler": {"kind": "warmup_exp", "step", "steps_per_epoch"},
     "rng": {"python": [version, int64 tensor, gauss], "numpy": [name, int64 tensor, pos, has_gauss, cached],
             "torch": uint8 tensor}}

RNG states are stored as plain containers and tensors so that ``torch.load(weights_only=True)`` reads them.
"""
from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from dsfnet.model.checkpoint import load_checkpoint
from dsfnet.model.interface import TrainableNetwork

#: file names inside a run folder (see :mod:`dsfnet.train.loop`)
LAST, BEST, CSV_NAME, CONFIG_NAME = "last.pt", "best.pt", "metrics.csv", "config.yaml"


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint kept at the end of ``epoch`` (1-based) when ``run.keep_epochs`` is set."""
    return f"epoch_{epoch:03d}.pt"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The python, numpy and torch (CPU) generator states, checkpoint-ready."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [int(version), torch.tensor(internal, dtype=torch.int64), gauss],
            "numpy": [str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                      float(cached)],
            "torch": torch.get_rng_state()}


def restore_rng(state: Mapping) -> None:
    """Set the generators from :func:`rng_state`'s output."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])


def train_state(step: int, steps_per_epoch: int, best_metric: float, best_branch: str,
                optimizer: torch.optim.Optimizer) -> dict:
    """The ``checkpoint["train"]`` dict of the module docstring (with the current RNG states)."""
    return {"step": step, "epoch": step // steps_per_epoch, "best_metric": best_metric, "best_branch": best_branch,
            "optimizer": optimizer.state_dict(),
            "scheduler": {"kind": "warmup_exp", "step": step, "steps_per_epoch": steps_per_epoch},
            "rng": rng_state()}


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run goes on: ``step``, the best validation NME so far and its branch, the saved config."""

    step: int
    best_metric: float
    best_branch: str
    config: Mapping | None


def resume(path: Path, model: TrainableNetwork, optimizer: torch.optim.Optimizer, restore_generators: bool) -> Resumed:
    """Load ``path`` (a ``last.pt``) into ``model`` and ``optimizer``; ``restore_generators``: also the RNG states
    (rank 0: the other ranks keep their own seeds). ValueError for a file without training state."""
    ckpt = load_checkpoint(path, model=model)
    st = ckpt.get("train")
    if not st:
        raise ValueError(f"{path} has no training state; it cannot be resumed (use it with --teacher-init or inference)")
    optimizer.load_state_dict(st["optimizer"])
    rng = st.get("rng")
    if rng and restore_generators:
        restore_rng(rng)
    return Resumed(int(st["step"]), float(st.get("best_metric", math.inf)), str(st.get("best_branch", "")),
                   ckpt.get("config"))


def config_diff(a: Mapping, b: Mapping, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


def fresh_start(model: TrainableNetwork, optimizer: torch.optim.Optimizer, run: Any, train_set: Any,
                verbose: bool) -> None:
    """A new run's starting point per the ``run`` section: 3DDFA_V2 backbone weights (``teacher_init``), a
    checkpoint (``init_weights``, optionally with its optimiser state), or Tm statistics from ``train_set``
    (``tm_stats: data``). ``verbose``: print what was done (rank 0)."""
    if run.teacher_init and run.init_weights:
        raise ValueError("run.teacher_init and run.init_weights are exclusive: choose one starting point")
    if run.teacher_init:
        _teacher_init(model, run.teacher_init, verbose)
    if run.init_weights:  # fine-tuning keeps the checkpoint's Tm statistics (its heads were trained with them)
        ckpt = load_checkpoint(run.init_weights, model=model, any_uv_size=True)
        if run.init_optimizer:  # the schedule sets every group's learning rate at each step
            state = (ckpt.get("train") or {}).get("optimizer")
            if state is None:
                raise ValueError(f"run.init_optimizer: {run.init_weights} holds no optimiser state (released weights?)")
            optimizer.load_state_dict(state)
        if verbose:
            was, now = ckpt["meta"].get("uv_size"), model.config.uv_size
            print(f"initialised from {run.init_weights}" + (f" (trained at UV {was}, now {now})" if was != now else ""),
                  file=sys.stderr)
    elif run.tm_stats == "data":
        from dsfnet.train.data import tm_statistics

        stats = tm_statistics(train_set)
        if stats is not None:
            model.set_tm_statistics(*stats)


def _teacher_init(model: TrainableNetwork, path: str, verbose: bool) -> None:
    """Copy 3DDFA_V2 MobileNet weights (``mb05_120x120.pth``) into the image stage's backbone."""
    from dsfnet.teacher.network import load_teacher_backbone, read_teacher_state_dict

    report = load_teacher_backbone(model.image_stage, read_teacher_state_dict(path))
    if verbose:
        print(f"teacher init: copied {len(report.get('copied', []))} tensors from {path}", file=sys.stderr)