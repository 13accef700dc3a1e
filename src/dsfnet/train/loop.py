"""The trainer: seeded, resumable, staged, single-process or DistributedDataParallel (``torchrun``).

Run folder layout (``run_dir``)::

    config.yaml   the resolved TrainConfig (rebuild any run: ``TrainConfig.load(run_dir / "config.yaml")``)
    last.pt       latest checkpoint (every ``run.checkpoint_minutes``, each epoch end, and on stop)
    best.pt       best validation 68-point NME (of the current stage's forward branch; reset when it changes)
    epoch_NNN.pt  each epoch's end-of-epoch checkpoint, with ``run.keep_epochs`` (for checkpoint averaging)
    metrics.csv   one row per ``run.log_every`` steps and per validation

Resume is automatic: if ``last.pt`` exists, model, optimiser, epoch/step, RNG states and the best metric are
restored and training continues at the next step of the same epoch, on the same sample order (the order and
every sample's augmentation depend only on ``(seed, epoch, index)``), so an interrupted run ends with the
same parameters as an uninterrupted one (bit-equal on CPU with ``num_workers`` fixed).

Stopping: SIGTERM/SIGINT (or ``run.max_minutes``/``run.max_steps``) finish the current step, save ``last.pt``
and return :class:`TrainResult` with status ``"signal"``/``"time_limit"``/``"max_steps"``; ``dsfnet train``
then exits 0 (rerun the same command to resume).

Distributed: launched by ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the trainer joins the process
group (NCCL on GPU, gloo on CPU), shards batches with a :class:`DistributedSampler`, averages gradients with
DDP, logs/validates/checkpoints on rank 0 only and meets a barrier after each save. ``data.batch_size`` is per
process.
"""
from __future__ import annotations

import csv
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dsfnet.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from dsfnet.train.config import TrainConfig, save_config
from dsfnet.train.losses import TERMS, LossContext, active_weights, compute_losses, stage_at

LAST, BEST, CSV_NAME, CONFIG_NAME = "last.pt", "best.pt", "metrics.csv", "config.yaml"
CSV_FIELDS = ["time", "epoch", "step", "stage", "lr", "loss", *TERMS, "grad_norm", "samples_per_s", "skipped",
              "val_nme", "val_pose_mae"]


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint kept at the end of ``epoch`` (1-based) when ``run.keep_epochs`` is set."""
    return f"epoch_{epoch:03d}.pt"


@dataclass
class TrainResult:
    """How :meth:`Trainer.fit` ended: ``status`` ∈ {finished, signal, time_limit, max_steps}."""

    status: str
    step: int
    epoch: int
    best_metric: float
    run_dir: Path


# ---------------------------------------------------------------------------------------------- seeding / data

def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _start_workers(loader: Iterable) -> Iterator:
    """``iter(loader)`` with SIGINT/SIGTERM held back while its worker processes fork and start.

    torch's worker start-up installs its own SIGTERM handler (which exits) before ``worker_init_fn`` runs; a
    signal sent to the process group in that window would kill a worker and abort the run before the main
    process could save. Forked workers inherit the blocked mask, so the signal stays pending in them until
    :func:`_worker_init` ignores and unblocks it; the main process receives its own copy when the mask is lifted.
    """
    if not hasattr(signal, "pthread_sigmask"):
        return iter(loader)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _worker_init(worker_id: int) -> None:
    """DataLoader worker: one torch thread; python/numpy/torch seeded from the worker's torch seed.

    Workers ignore SIGINT/SIGTERM: Ctrl-C or a signal to the whole process group must reach only the main
    process, which saves ``last.pt`` and then shuts its workers down (a worker dying first would abort the run
    before the checkpoint).
    """
    for s in _STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # held since the fork by _start_workers; pending copies are now dropped
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    torch.set_num_threads(1)
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


class SeededSamples(Dataset):
    """Wraps a sample dataset so that item ``i`` of epoch ``e`` is reproducible from ``(seed, e, i)`` alone.

    If the base dataset has ``sample(index, rng)``, it gets ``rng = np.random.default_rng([seed, e, i])``;
    otherwise python/numpy/torch global RNGs are seeded from the same triple around ``base[i]`` (and restored).
    """

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base, self.seed, self.epoch = base, int(seed), 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> Any:
        key = [self.seed, self.epoch, int(index)]
        if hasattr(self.base, "sample"):
            return self.base.sample(index, np.random.default_rng(key))
        seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        py, npy = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            try:
                return self.base[index]
            finally:
                random.setstate(py)
                np.random.set_state(npy)


class ResumableSampler(DistributedSampler):
    """A :class:`DistributedSampler` (shuffled by ``seed + epoch``, drop_last) that can start mid-epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, start_index: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start_index = int(start_index)

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start_index:])

    def __len__(self) -> int:
        return max(self.num_samples - self.start_index, 0)


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in batch.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if v.dtype == torch.float64:
                v = v.float()
        out[k] = v
    return out


def images_to_input(images: torch.Tensor) -> torch.Tensor:
    """``(B, S, S, 3)`` uint8 RGB → ``(B, 3, S, S)`` standardised float (spec §1.3)."""
    from dsfnet.model import standardize

    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"batch['image'] must be (B, S, S, 3) uint8 RGB, got {tuple(images.shape)}")
    return standardize(images.permute(0, 3, 1, 2).float() / 255.0)


# ---------------------------------------------------------------------------------------------- forward wrapper

def make_optimizer(params, optim: Any) -> torch.optim.Optimizer:
    """Adam over ``params`` with the config's ``lr_base``, ``betas`` and ``weight_decay`` (``optim``: the ``optim``
    section), as the fused single-kernel implementation (on CPU too: fewer passes over the parameters)."""
    return torch.optim.Adam(params, lr=optim.lr_base, betas=tuple(optim.betas), weight_decay=optim.weight_decay,
                            fused=True)


class TrainForward(nn.Module):
    """What DDP wraps: the training forward of a DSFNet, with optional teacher forcing of the lifting.

    ``forward(x, branch, tf_mask=None, seg_gt=None, grid_gt=None)``: samples with ``tf_mask`` True are lifted into
    UV with the GT ``seg (B,S,S)``/``grid (B,2,S,S)`` instead of the predictions (spec §6.3 stage B); the returned
    ``grid``/``seg``/``seg_logit`` are always the predictions (they are what the image-space losses train).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, branch: str = "fused", tf_mask: torch.Tensor | None = None,
                seg_gt: torch.Tensor | None = None, grid_gt: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        m = self.model
        if tf_mask is None or not (hasattr(m, "image_stage") and hasattr(m, "forward_from_heads")):
            return m(x, branch=branch, return_all=True)
        heads = m.image_stage(x)
        sub = dict(heads)
        sel = tf_mask[:, None, None, None]
        sub["seg"] = torch.where(sel, seg_gt[:, None].to(heads["seg"].dtype), heads["seg"])
        sub["grid"] = torch.where(sel, grid_gt.to(heads["grid"].dtype), heads["grid"])
        out = m.forward_from_heads(sub, branch=branch, return_all=True)
        out.update(grid=heads["grid"], seg=heads["seg"], seg_logit=heads["seg_logit"])
        return out


# ---------------------------------------------------------------------------------------------- validation

def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, branch: str = "fused") -> dict[str, float]:
    """68-point NME (fraction, x-y, over ``sqrt(w·h)`` of the GT box) and pose MAE (degrees) on crops.

    Landmarks come from ``model.landmarks(face_uvm)`` × ``pos_scale`` (crop px; bilinear at the landmark
    vertices, as in inference), compared with
    ``batch["landmarks"]`` (crop px); angles from ``rotation`` vs ``batch["pose"]`` (radians → degrees).
    """
    from dsfnet.eval.metrics import nme_2d, pose_mae
    from dsfnet.geometry import matrix_to_pose_para

    was_training = model.training
    model.eval()
    nmes, pred_deg, gt_deg = [], [], []
    with torch.no_grad():
        for batch in _start_workers(loader):
            batch = _to_device(batch, device)
            out = model(images_to_input(batch["image"]), branch=branch)
            kpts = (model.landmarks(out["face_uvm"]) * model.config.pos_scale).cpu().numpy()
            gt = batch["landmarks"].cpu().numpy()
            for p, g in zip(kpts, gt):
                nmes.append(nme_2d(p[:, :2], g[:, :2]) if np.isfinite(p).all() else float("nan"))
            pred_deg.append(np.degrees(matrix_to_pose_para(out["rotation"].double().cpu().numpy())))
            gt_deg.append(np.degrees(batch["pose"].double().cpu().numpy()))
    model.train(was_training)
    if not nmes:
        return {"val_nme": float("nan"), "val_pose_mae": float("nan")}
    mae = pose_mae(np.concatenate(pred_deg), np.concatenate(gt_deg)).mean
    return {"val_nme": float(np.mean(nmes)), "val_pose_mae": float(mae)}


# ---------------------------------------------------------------------------------------------- builders

def build_model(config: TrainConfig) -> nn.Module:
    """The network of ``config.model`` (``"toy"`` = the private tiny test network)."""
    if config.model.variant == "toy":
        from dsfnet.train._toy import ToyNet

        return ToyNet(**config.model.overrides)
    from dsfnet.model import create_model

    return create_model(config.model.variant, **config.model.overrides)


def build_datasets(config: TrainConfig, model: nn.Module) -> tuple[Dataset, Dataset | None]:
    """Training and validation datasets of ``config.data`` for ``model`` (see :mod:`dsfnet.train.data`)."""
    from dsfnet.train.data import make_datasets

    return make_datasets(config, model)


def _schedule_lr(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up ``lr_base → lr_peak`` over ``warmup_epochs``, then ``lr_peak · decay^(epochs after warm-up)``."""
    o = config.optim
    e = step / max(steps_per_epoch, 1)
    if e < o.warmup_epochs:
        return o.lr_base + (o.lr_peak - o.lr_base) * e / o.warmup_epochs
    return o.lr_peak * o.decay ** (e - o.warmup_epochs)


def _tm_statistics(dataset: Dataset, limit: int = 512) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean/std ``(12,)`` of ``tm`` over the dataset (a cache's ``arrays['tm']`` when available)."""
    arrays = getattr(dataset, "arrays", None) or getattr(getattr(dataset, "base", None), "arrays", None)
    if isinstance(arrays, Mapping) and "tm" in arrays:
        tm = np.asarray(arrays["tm"], dtype=np.float64).reshape(-1, 12)
    elif hasattr(dataset, "tm_statistics"):
        return dataset.tm_statistics()
    else:
        n = min(len(dataset), limit)  # type: ignore[arg-type]
        if n < 2:
            return None
        idx = np.linspace(0, len(dataset) - 1, n).astype(int)  # type: ignore[arg-type]
        tm = np.stack([np.asarray(dataset[int(i)]["tm"], dtype=np.float64).reshape(12) for i in idx])
    mean, std = tm.mean(0), tm.std(0)
    if not np.isfinite(mean).all() or not np.isfinite(std).all():
        return None
    floor = np.maximum(np.abs(mean) * 1e-3, 1e-9)
    return mean, np.maximum(std, floor)


# ---------------------------------------------------------------------------------------------- trainer

class Trainer:
    """Train ``model`` per ``config`` in ``run_dir`` (see the module docstring).

    Args:
        config: resolved :class:`TrainConfig`.
        run_dir: run folder (created); resumed from ``last.pt`` when present.
        model: the bare network; None builds ``config.model``.
        train_set, val_set: datasets of training-sample dicts; None builds them from ``config.data``.
    """

    def __init__(self, config: TrainConfig, run_dir: str | os.PathLike, model: nn.Module | None = None,
                 train_set: Dataset | None = None, val_set: Dataset | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self._init_distributed()
        r = config.run
        self._threads_before = torch.get_num_threads()
        if r.threads:
            torch.set_num_threads(int(r.threads))
        seed_everything(r.seed + self.rank)
        self.model = (model if model is not None else build_model(config)).to(self.device)
        if train_set is None:
            train_set, val_set = build_datasets(config, self.model)
        if len(train_set) < config.data.batch_size * self.world:  # type: ignore[arg-type]
            raise ValueError(f"the training set has {len(train_set)} samples; need at least batch_size × processes = "
                             f"{config.data.batch_size * self.world}")
        self.train_set = SeededSamples(train_set, r.seed)
        self.val_set = val_set
        if (val_set is None or len(val_set) == 0) and self.rank == 0:  # type: ignore[arg-type]
            print("warning: no validation data (no --val and no val split in the data): the run is never scored on "
                  "held-out faces and best.pt is not chosen on them", file=sys.stderr)
        self.steps_per_epoch = len(train_set) // (config.data.batch_size * self.world)  # type: ignore[arg-type]
        self.total_steps = max(1, int(round(config.optim.epochs * self.steps_per_epoch)))
        self.optimizer = make_optimizer(self.model.parameters(), config.optim)
        self.step, self.best_metric, self.best_branch = 0, math.inf, ""
        self._stop_reason: str | None = None
        self._last_stage = ""
        self.is_main = self.rank == 0
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._barrier()
        if (self.run_dir / LAST).is_file():
            self._resume(self.run_dir / LAST)
        else:
            self._fresh_start(train_set)
        self.loss_ctx = LossContext.from_model(self.model, getattr(self.model, "grid_triangles", None))
        self.forward = TrainForward(self.model)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.forward, device_ids=ids, find_unused_parameters=True)
        if self.is_main:
            save_config(config, self.run_dir / CONFIG_NAME)

    # ------------------------------------------------------------------ setup
    def _init_distributed(self) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        want = self.config.run.device
        if world > 1:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            use_cuda = want.startswith("cuda") and torch.cuda.is_available()
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if use_cuda else "gloo")
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            self.device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
            if use_cuda:
                torch.cuda.set_device(self.device)
        else:
            self.rank, self.world = 0, 1
            if want.startswith("cuda") and not torch.cuda.is_available():
                raise ValueError(f"run.device={want!r} but CUDA is not available")
            self.device = torch.device(want)

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _fresh_start(self, train_set: Dataset) -> None:
        r = self.config.run
        if r.teacher_init and r.init_weights:
            raise ValueError("run.teacher_init and run.init_weights are exclusive: choose one starting point")
        if r.teacher_init:
            self._teacher_init(r.teacher_init)
        if r.init_weights:  # fine-tuning keeps the checkpoint's Tm statistics (its heads were trained with them)
            ckpt = load_checkpoint(r.init_weights, model=self.model, any_uv_size=True)
            if r.init_optimizer:  # the schedule sets every group's learning rate at each step
                state = (ckpt.get("train") or {}).get("optimizer")
                if state is None:
                    raise ValueError(f"run.init_optimizer: {r.init_weights} holds no optimiser state (released weights?)")
                self.optimizer.load_state_dict(state)
            if self.is_main:
                was, now = ckpt["meta"].get("uv_size"), getattr(self.model.config, "uv_size", None)
                print(f"initialised from {r.init_weights}" + (f" (trained at UV {was}, now {now})" if was != now else ""),
                      file=sys.stderr)
        elif r.tm_stats == "data" and hasattr(self.model, "set_tm_statistics"):
            stats = _tm_statistics(train_set)
            if stats is not None:
                self.model.set_tm_statistics(*stats)
        if self.world > 1:  # every replica starts from rank 0's parameters and buffers
            for t in list(self.model.parameters()) + list(self.model.buffers()):
                dist.broadcast(t.data, src=0)

    def _teacher_init(self, path: str) -> None:
        from dsfnet.teacher.network import load_teacher_backbone as loader

        if not Path(path).is_file():
            raise FileNotFoundError(f"teacher weights not found: {path}")
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, Mapping) and "state_dict" in sd:
            sd = sd["state_dict"]
        target = getattr(self.model, "image_stage", self.model)
        report = loader(target, sd)
        if self.is_main:
            print(f"teacher init: copied {len(report.get('copied', []))} tensors from {path}", file=sys.stderr)

    def _resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path, model=self.model)
        st = ckpt.get("train")
        if not st:
            raise ValueError(f"{path} has no training state; it cannot be resumed (use it with --teacher-init or inference)")
        self.optimizer.load_state_dict(st["optimizer"])
        self.step = int(st["step"])
        self.best_metric = float(st.get("best_metric", math.inf))
        self.best_branch = str(st.get("best_branch", ""))
        rng = st.get("rng")
        if rng and self.rank == 0:
            random.setstate(_py_state_from(rng["python"]))
            np.random.set_state(_np_state_from(rng["numpy"]))
            torch.set_rng_state(rng["torch"])
        saved = ckpt.get("config")
        if saved and self.is_main:
            diff = _config_diff(saved, self.config.to_dict())
            if diff:
                print(f"resuming {path} with changed config keys: {', '.join(diff[:10])}", file=sys.stderr)
        if self.is_main:
            print(f"resumed from {path} at step {self.step}", file=sys.stderr)

    # ------------------------------------------------------------------ checkpoints
    def _train_state(self) -> dict:
        return {"step": self.step, "epoch": self.step // self.steps_per_epoch, "best_metric": self.best_metric,
                "best_branch": self.best_branch, "optimizer": self.optimizer.state_dict(),
                "scheduler": {"kind": "warmup_exp", "step": self.step, "steps_per_epoch": self.steps_per_epoch},
                "rng": {"python": _py_state_to(random.getstate()), "numpy": _np_state_to(np.random.get_state()),
                        "torch": torch.get_rng_state()}}

    def save(self, name: str = LAST) -> None:
        """Rank 0 writes ``run_dir/name`` atomically; every rank then meets at a barrier."""
        self._sync_buffers()
        if self.is_main:
            save_checkpoint(self.run_dir / name, self.model, config=self.config.to_dict(), train_state=self._train_state())
        self._barrier()

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_reason = "signal"

    def _should_stop(self, t_start: float) -> str | None:
        r = self.config.run
        reason = self._stop_reason
        if reason is None and r.max_minutes and (time.monotonic() - t_start) > r.max_minutes * 60:
            reason = "time_limit"
        if reason is None and r.max_steps and self.step >= r.max_steps:
            reason = "max_steps"
        if self.world > 1:  # all replicas stop at the same step
            code = {None: 0, "max_steps": 1, "time_limit": 2, "signal": 3}[reason]
            t = torch.tensor([code], dtype=torch.int64, device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            reason = {0: None, 1: "max_steps", 2: "time_limit", 3: "signal"}[int(t.item())]
        return reason

    # ------------------------------------------------------------------ main loop
    def fit(self) -> TrainResult:
        """Train until the configured epochs are done or a stop condition; always leaves a current ``last.pt``."""
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        in_main_thread = _is_main_thread()
        if in_main_thread:
            for s in old:
                signal.signal(s, self._on_signal)
        try:
            return self._fit()
        finally:
            if in_main_thread:
                for s, h in old.items():
                    signal.signal(s, h)
            torch.set_num_threads(self._threads_before)

    def _fit(self) -> TrainResult:
        cfg, r = self.config, self.config.run
        t_start = time.monotonic()
        last_ckpt = time.monotonic()
        log = _CsvLog(self.run_dir / CSV_NAME) if self.is_main else None
        bar = None
        if self.is_main and r.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
        status = "finished"
        acc: dict[str, float] = {}
        n_acc, skipped, t_log = 0, 0, time.monotonic()
        self.model.train()
        try:
            reason = self._should_stop(t_start)
            while reason is None and self.step < self.total_steps:
                epoch = self.step // self.steps_per_epoch
                start = (self.step % self.steps_per_epoch) * cfg.data.batch_size
                loader = self._train_loader(epoch, start)
                for batch in _start_workers(loader):
                    info = self._train_step(batch, epoch)
                    skipped += int(info.pop("skipped"))
                    for k, v in info.items():
                        acc[k] = acc.get(k, 0.0) + v
                    n_acc += 1
                    self.step += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{info['loss']:.4g}", stage=self._last_stage, refresh=False)
                    if log is not None and (self.step % r.log_every == 0 or self.step == self.total_steps):
                        dt = max(time.monotonic() - t_log, 1e-9)
                        row = {k: v / n_acc for k, v in acc.items()}
                        row.update(epoch=epoch, step=self.step, stage=self._last_stage, skipped=skipped,
                                   samples_per_s=n_acc * cfg.data.batch_size * self.world / dt)
                        log.write(row)
                        acc, n_acc, skipped, t_log = {}, 0, 0, time.monotonic()
                    end_of_epoch = self.step % self.steps_per_epoch == 0 or self.step == self.total_steps
                    if end_of_epoch:
                        self._end_of_epoch(log, bar)
                        last_ckpt = time.monotonic()
                    elif r.checkpoint_minutes and time.monotonic() - last_ckpt > r.checkpoint_minutes * 60:
                        self.save(LAST)
                        last_ckpt = time.monotonic()
                    reason = self._should_stop(t_start)
                    if reason is not None or self.step >= self.total_steps:
                        break
            if reason is not None:
                status = reason
                self.save(LAST)
            self._sync_buffers()
        finally:
            if bar is not None:
                bar.close()
        return TrainResult(status, self.step, self.step // self.steps_per_epoch, self.best_metric, self.run_dir)

    def _sync_buffers(self) -> None:
        """Give every replica rank 0's buffers (BN running statistics drift per rank after the last forward)."""
        if self.world > 1:
            for b in self.model.buffers():
                dist.broadcast(b.data, src=0)

    def _stage(self):
        return stage_at(self.config.loss, self.step / self.total_steps)

    def _train_loader(self, epoch: int, start: int) -> DataLoader:
        d = self.config.data
        self.train_set.set_epoch(epoch)
        sampler = ResumableSampler(self.train_set, self.world, self.rank, self.config.run.seed, start)
        sampler.set_epoch(epoch)
        return DataLoader(self.train_set, batch_size=d.batch_size, sampler=sampler, num_workers=d.num_workers,
                          worker_init_fn=_worker_init if d.num_workers else None, drop_last=True,
                          pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(
                              self.config.run.seed * 100003 + epoch))

    def _precise_batchnorm(self, n_batches: int) -> None:
        """BatchNorm running statistics from ``n_batches`` random training batches of the current epoch's augmentation."""
        from dsfnet.train.batchnorm import batchnorm_layers, recompute_batchnorm_statistics

        if not batchnorm_layers(self.model):
            return
        d = self.config.data
        g = torch.Generator().manual_seed(self.config.run.seed * 100003 + self.step)
        n = min(n_batches * d.batch_size, len(self.train_set))
        subset = torch.utils.data.Subset(self.train_set, torch.randperm(len(self.train_set), generator=g)[:n].tolist())
        loader = DataLoader(subset, batch_size=d.batch_size, num_workers=d.num_workers, drop_last=True,
                            worker_init_fn=_worker_init if d.num_workers else None)
        recompute_batchnorm_statistics(self.model, _start_workers(loader),
                                       lambda m, b: m(images_to_input(_to_device(b, self.device)["image"])))

    def _val_loader(self) -> DataLoader | None:
        if self.val_set is None or len(self.val_set) == 0:  # type: ignore[arg-type]
            return None
        d = self.config.data
        ds = self.val_set
        if d.val_max and len(ds) > d.val_max:  # type: ignore[arg-type]
            ds = torch.utils.data.Subset(ds, np.linspace(0, len(ds) - 1, d.val_max).astype(int).tolist())  # type: ignore[arg-type]
        return DataLoader(SeededSamples(ds, 0), batch_size=d.val_batch_size, shuffle=False, num_workers=d.num_workers,
                          worker_init_fn=_worker_init if d.num_workers else None)

    def _train_step(self, batch: Mapping[str, Any], epoch: int) -> dict[str, float]:
        cfg = self.config
        progress = self.step / self.total_steps
        idx, stage = self._stage()
        self._last_stage = stage.name
        weights = active_weights(cfg.loss, progress)
        lr = _schedule_lr(cfg, self.step, self.steps_per_epoch) * stage.lr_scale
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        batch = _to_device(batch, self.device)
        x = images_to_input(batch["image"])
        # position inside the stage (for teacher forcing and the detached-alignment warm-up)
        begin = 0.0 if idx == 0 else cfg.loss.stages[idx - 1].until
        frac = (progress - begin) / max(stage.until - begin, 1e-12)
        p0, p1 = stage.teacher_forcing
        p_tf = p0 + (p1 - p0) * frac
        if hasattr(self.model, "detach_alignment"):
            epochs_in = (progress - begin) * self.total_steps / self.steps_per_epoch
            self.model.detach_alignment = epochs_in < stage.detach_alignment_epochs
        tf_mask = None
        if p_tf > 0 and stage.branch != "model":
            tf_mask = torch.rand(x.shape[0], device=self.device) < p_tf
        out = self.forward(x, stage.branch, tf_mask, batch["seg"], batch["grid"])
        total, terms = compute_losses(out, batch, self.loss_ctx, weights, cfg.loss.conf_alpha)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, clip) if params else torch.tensor(0.0)
        ok = bool(torch.isfinite(norm)) and bool(torch.isfinite(total.detach()))
        if ok:  # grads are identical on every replica after DDP's all-reduce, so all ranks agree
            self.optimizer.step()
        info = {"loss": float(total.detach()), "lr": lr, "grad_norm": float(norm), "skipped": float(not ok)}
        info.update({k: float(v.detach()) for k, v in terms.items()})
        return info

    def _end_of_epoch(self, log: "_CsvLog | None", bar) -> None:
        r = self.config.run
        epoch_done = self.step / self.steps_per_epoch
        val_due = r.val_every > 0 and (abs(epoch_done / r.val_every - round(epoch_done / r.val_every)) < 1e-9
                                       or self.step == self.total_steps)
        metrics = None
        if self.is_main and r.precise_bn_batches > 0:  # other ranks get these statistics from save()'s broadcast
            self._precise_batchnorm(r.precise_bn_batches)
        if self.is_main and val_due:
            loader = self._val_loader()
            if loader is not None:
                branch = self._stage()[1].branch if self.step < self.total_steps else self.config.loss.stages[-1].branch
                metrics = evaluate(self.model, loader, self.device, branch=branch)
                if log is not None:
                    log.write({"epoch": int(epoch_done), "step": self.step, "stage": f"val:{branch}", **metrics})
                if bar is not None:
                    bar.write(f"epoch {epoch_done:.2f} step {self.step}: val NME {100 * metrics['val_nme']:.2f}% "
                              f"pose MAE {metrics['val_pose_mae']:.2f} deg ({branch})")
                if branch != self.best_branch:
                    self.best_metric, self.best_branch = math.inf, branch
                if math.isfinite(metrics["val_nme"]) and metrics["val_nme"] < self.best_metric:
                    self.best_metric = metrics["val_nme"]
                    save_checkpoint(self.run_dir / BEST, self.model, config=self.config.to_dict(),
                                    train_state=self._train_state())
        self.save(LAST)
        if r.keep_epochs and abs(epoch_done - round(epoch_done)) < 1e-9:
            self.save(epoch_checkpoint_name(round(epoch_done)))


# ---------------------------------------------------------------------------------------------- small helpers

def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _py_state_to(state: tuple) -> list:
    version, internal, gauss = state
    return [int(version), torch.tensor(internal, dtype=torch.int64), gauss]


def _py_state_from(obj: list) -> tuple:
    version, internal, gauss = obj
    return (int(version), tuple(int(v) for v in internal.tolist()), gauss)


def _np_state_to(state: tuple) -> list:
    name, keys, pos, has_gauss, cached = state
    return [str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)]


def _np_state_from(obj: list) -> tuple:
    name, keys, pos, has_gauss, cached = obj
    return (name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached))


def _config_diff(a: Mapping, b: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += _config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


class _CsvLog:
    """Append rows to ``metrics.csv`` (header written once; flushed per row)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._new = not path.exists() or path.stat().st_size == 0

    def write(self, row: Mapping[str, Any]) -> None:
        row = dict(row)
        row.setdefault("time", f"{time.time():.1f}")
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            if self._new:
                w.writeheader()
                self._new = False
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def train(config: TrainConfig, run_dir: str | os.PathLike, **kwargs: Any) -> TrainResult:
    """Build a :class:`Trainer` and run it (``kwargs``: ``model``, ``train_set``, ``val_set``)."""
    return Trainer(config, run_dir, **kwargs).fit()


__all__ = ["Trainer", "TrainResult", "TrainForward", "SeededSamples", "ResumableSampler", "evaluate",
           "images_to_input", "seed_everything", "train", "build_model", "build_datasets", "read_checkpoint"]
