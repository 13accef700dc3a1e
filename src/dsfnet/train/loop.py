"""The trainer: seeded, resumable, staged, single-process or DistributedDataParallel (``torchrun``).

Run folder layout (``run_dir``; names in :mod:`dsfnet.train.state`)::

    config.yaml   the resolved TrainConfig (rebuild any run: ``TrainConfig.load(run_dir / "config.yaml")``)
    last.pt       latest checkpoint (every ``run.checkpoint_minutes``, each epoch end, and on stop)
    best.pt       best validation 68-point NME (of the current stage's forward branch; reset when it changes)
    epoch_NNN.pt  each epoch's end-of-epoch checkpoint, with ``run.keep_epochs`` (for checkpoint averaging)
    metrics.csv   one row per ``run.log_every`` steps and per validation (:mod:`dsfnet.train.log`)

Resume is automatic: if ``last.pt`` exists, model, optimiser, epoch/step, RNG states and the best metric are
restored (:mod:`dsfnet.train.state`) and training continues at the next step of the same epoch, on the same
sample order (:mod:`dsfnet.train.loaders`), so an interrupted run ends with the same parameters as an
uninterrupted one (bit-equal on CPU with ``num_workers`` fixed).

Stopping: SIGTERM/SIGINT (or ``run.max_minutes``/``run.max_steps``) finish the current step, save ``last.pt``
and return :class:`TrainResult` with status ``"signal"``/``"time_limit"``/``"max_steps"``; ``dsfnet train``
then exits 0 (rerun the same command to resume).

Distributed: launched by ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the trainer joins the process
group (:mod:`dsfnet.train.distributed`), shards batches with a ``DistributedSampler``, averages gradients with
DDP, logs/validates/checkpoints on rank 0 only and meets a barrier after each save. ``data.batch_size`` is per
process.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import Dataset

from dsfnet.model import create_model, images_to_input
from dsfnet.model.checkpoint import save_checkpoint
from dsfnet.model.interface import TrainableNetwork
from dsfnet.train.config import TrainConfig, save_config
from dsfnet.train.distributed import join_processes
from dsfnet.train.forward import TrainForward
from dsfnet.train.loaders import SeededSamples, random_batches, start_workers, to_device, train_loader, validation_loader
from dsfnet.train.log import CsvLog
from dsfnet.train.losses import LossContext, compute_losses
from dsfnet.train.schedule import make_optimizer, plan_step, validation_branch, validation_due
from dsfnet.train.state import (
    BEST,
    CONFIG_NAME,
    CSV_NAME,
    LAST,
    config_diff,
    epoch_checkpoint_name,
    fresh_start,
    restore_rng,
    resume,
    rng_state,
    seed_everything,
    train_state,
)
from dsfnet.train.run_folder import checksum_ok, drop_rows_after, remove_stale_temp_files, resume_candidates, write_checksum
from dsfnet.train.validation import evaluate


@dataclass
class TrainResult:
    """How :meth:`Trainer.fit` ended: ``status`` ∈ {finished, signal, time_limit, max_steps}."""

    status: str
    step: int
    epoch: int
    best_metric: float
    run_dir: Path


def build_model(config: TrainConfig) -> TrainableNetwork:
    """The network of ``config.model`` (any variant of the model registry, ``dsfnet.model.register_model``)."""
    return create_model(config.model.variant, **config.model.overrides)


class _StepAborted(Exception):
    """A stop request arrived in the middle of a training step (see ``Trainer._install_step_abort``)."""


class Trainer:
    """Train ``model`` per ``config`` in ``run_dir`` (see the module docstring).

    Args:
        config: resolved :class:`TrainConfig`.
        run_dir: run folder (created); resumed from ``last.pt`` when present.
        model: the bare network; None builds ``config.model``.
        train_set, val_set: datasets of training-sample dicts; None builds both from ``config.data``
            (:func:`dsfnet.train.data.make_datasets`).
    """

    def __init__(self, config: TrainConfig, run_dir: str | os.PathLike, model: TrainableNetwork | None = None,
                 train_set: Dataset | None = None, val_set: Dataset | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.procs = join_processes(config.run.device)
        self.rank, self.world, self.device, self.is_main = (self.procs.rank, self.procs.world, self.procs.device,
                                                            self.procs.is_main)
        r = config.run
        self._threads_before = torch.get_num_threads()
        if r.threads:
            torch.set_num_threads(int(r.threads))
        seed_everything(r.seed + self.rank)
        self.model = (model if model is not None else build_model(config)).to(self.device)
        if train_set is None:
            from dsfnet.train.data import make_datasets

            train_set, val_set = make_datasets(config, self.model)
        if len(train_set) < config.data.batch_size * self.world:  # type: ignore[arg-type]
            raise ValueError(f"the training set has {len(train_set)} samples; need at least batch_size × processes = "
                             f"{config.data.batch_size * self.world}")
        self.train_set = SeededSamples(train_set, r.seed)
        self.val_set = val_set
        if (val_set is None or len(val_set) == 0) and self.is_main:  # type: ignore[arg-type]
            print("warning: no validation data (no --val and no val split in the data): the run is never scored on "
                  "held-out faces and best.pt is not chosen on them", file=sys.stderr)
        self.steps_per_epoch = len(train_set) // (config.data.batch_size * self.world)  # type: ignore[arg-type]
        self.total_steps = max(1, int(round(config.optim.epochs * self.steps_per_epoch)))
        self.optimizer = make_optimizer(self.model.parameters(), config.optim)
        self.step, self.best_metric, self.best_branch = 0, math.inf, ""
        self._stop_reason: str | None = None
        self._in_step = False
        self._last_stage = ""
        self._lock = None
        if self.is_main:
            from dsfnet.io.output_folder import FolderLock

            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._lock = FolderLock(self.run_dir, what="run folder").acquire()  # one training per folder
            stale = remove_stale_temp_files(self.run_dir)
            if stale:
                print(f"removed {len(stale)} temporary file(s) of an interrupted save: {', '.join(stale)}",
                      file=sys.stderr)
        self.procs.barrier()
        candidates = resume_candidates(self.run_dir, LAST)
        if candidates:
            self._resume_first_usable(candidates)
        else:
            fresh_start(self.model, self.optimizer, r, train_set, verbose=self.is_main)
            # every replica starts from rank 0's parameters and buffers
            self.procs.broadcast_from_main(list(self.model.parameters()) + list(self.model.buffers()))
        self._install_step_abort()
        self.loss_ctx = LossContext.from_model(self.model)
        self.forward: torch.nn.Module = TrainForward(self.model)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.forward, device_ids=ids, find_unused_parameters=True)
        if self.is_main:
            save_config(config, self.run_dir / CONFIG_NAME)

    def _resume_first_usable(self, candidates: list[Path]) -> None:
        """Resume from the first candidate that matches its checksum and loads (``last.pt``, then the newest
        epoch files); say which were skipped and why. ValueError when none is usable."""
        skipped = []
        for path in candidates:
            if checksum_ok(path) is False:
                skipped.append(f"{path.name}: does not match its .sha256 (corrupt)")
                continue
            try:
                self._resume(path)
            except (ValueError, RuntimeError, OSError, EOFError) as exc:
                skipped.append(f"{path.name}: {type(exc).__name__}: {exc}")
                continue
            if skipped and self.is_main:
                print("skipped unusable checkpoint(s): " + "; ".join(skipped), file=sys.stderr)
            if self.is_main:
                dropped = drop_rows_after(self.run_dir / CSV_NAME, self.step)
                if dropped:
                    print(f"{CSV_NAME}: dropped {dropped} row(s) logged after step {self.step} (redone now)",
                          file=sys.stderr)
            return
        self.close()
        raise ValueError(f"{self.run_dir} holds checkpoints but none can be resumed ({'; '.join(skipped)}); move them "
                         "away to start again, or choose another run folder")

    def close(self) -> None:
        """Release the run folder's lock (``fit`` does it when it ends)."""
        if getattr(self, "_lock", None) is not None:
            self._lock.release()
            self._lock = None

    def _resume(self, path: Path) -> None:
        got = resume(path, self.model, self.optimizer, restore_generators=self.rank == 0)
        self.step, self.best_metric, self.best_branch = got.step, got.best_metric, got.best_branch
        if got.config and self.is_main:
            diff = config_diff(got.config, self.config.to_dict())
            if diff:
                print(f"resuming {path} with changed config keys: {', '.join(diff[:10])}", file=sys.stderr)
        if self.is_main:
            print(f"resumed from {path} at step {self.step}", file=sys.stderr)

    # ------------------------------------------------------------------ checkpoints
    def save(self, name: str = LAST) -> None:
        """Rank 0 writes ``run_dir/name`` atomically; every rank then meets at a barrier."""
        self._sync_buffers()
        if self.is_main:
            self._write_checkpoint(name)
        self.procs.barrier()

    def _write_checkpoint(self, name: str) -> None:
        save_checkpoint(self.run_dir / name, self.model, config=self.config.to_dict(),
                        train_state=train_state(self.step, self.steps_per_epoch, self.best_metric, self.best_branch,
                                                self.optimizer))
        write_checksum(self.run_dir / name)  # verified on resume: a corrupted checkpoint is never resumed silently

    def _sync_buffers(self) -> None:
        """Give every replica rank 0's buffers (BN running statistics drift per rank after the last forward)."""
        self.procs.broadcast_from_main(self.model.buffers())

    # ------------------------------------------------------------------ stopping
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_reason = "signal"

    def _install_step_abort(self) -> None:
        """One process: a stop request also ends the step in flight, at the next layer of its forward or backward
        pass (the paper network's CPU step takes minutes), instead of at the step's end. The step is then undone
        (RNG states and buffers restored, no optimiser step), so the resumed run redoes it exactly. With several
        processes every rank must finish the step (DDP's all-reduce), so the stop waits for its end."""
        if self.world > 1:
            return

        def check(*_args) -> None:
            if self._stop_reason == "signal" and self._in_step:
                raise _StepAborted()

        for module in self.model.modules():
            module.register_forward_pre_hook(lambda m, a: check())
        for p in self.model.parameters():
            if p.requires_grad:
                p.register_hook(lambda g: (check(), g)[1])

    def _should_stop(self, t_start: float) -> str | None:
        r = self.config.run
        reason = self._stop_reason
        if reason is None and r.max_minutes and (time.monotonic() - t_start) > r.max_minutes * 60:
            reason = "time_limit"
        if reason is None and r.max_steps and self.step >= r.max_steps:
            reason = "max_steps"
        return self.procs.agree_on_stop(reason)

    # ------------------------------------------------------------------ main loop
    def fit(self) -> TrainResult:
        """Train until the configured epochs are done or a stop condition; always leaves a current ``last.pt``."""
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        in_main_thread = threading.current_thread() is threading.main_thread()
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
            self.close()

    def _fit(self) -> TrainResult:
        cfg, r = self.config, self.config.run
        t_start = time.monotonic()
        last_ckpt = time.monotonic()
        log = CsvLog(self.run_dir / CSV_NAME) if self.is_main else None
        bar = None
        if self.is_main and r.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
        status = "finished"
        acc: dict[str, float] = {}
        n_acc, skipped, t_log = 0, 0, time.monotonic()
        self._write_missing_epoch_file()
        self.model.train()
        try:
            reason = self._should_stop(t_start)
            while reason is None and self.step < self.total_steps:
                epoch = self.step // self.steps_per_epoch
                start = (self.step % self.steps_per_epoch) * cfg.data.batch_size
                loader = train_loader(self.train_set, cfg.data, self.world, self.rank, r.seed, epoch, start,
                                      pin_memory=self.device.type == "cuda")
                for batch in start_workers(loader):
                    info = self._abortable_step(batch)
                    if info is None:  # stopped in the middle of the step, which was undone
                        reason = "signal"
                        break
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
                    break
            if reason is not None:
                status = reason
                self.save(LAST)
            self._sync_buffers()
        finally:
            if bar is not None:
                bar.close()
        return TrainResult(status, self.step, self.step // self.steps_per_epoch, self.best_metric, self.run_dir)

    def _abortable_step(self, batch: Mapping[str, Any]) -> dict[str, float] | None:
        """:meth:`_train_step`, or None when a stop request ended it midway (everything it changed is restored)."""
        if self.world > 1:
            return self._train_step(batch)
        rng, buffers = rng_state(), [b.detach().clone() for b in self.model.buffers()]
        self._in_step = True
        try:
            return self._train_step(batch)
        except _StepAborted:
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), buffers):
                    b.copy_(saved)
            restore_rng(rng)
            self.optimizer.zero_grad(set_to_none=True)
            return None
        finally:
            self._in_step = False

    def _train_step(self, batch: Mapping[str, Any]) -> dict[str, float]:
        cfg = self.config
        plan = plan_step(cfg, self.step, self.total_steps, self.steps_per_epoch)
        self._last_stage = plan.stage.name
        for g in self.optimizer.param_groups:
            g["lr"] = plan.lr
        batch = to_device(batch, self.device)
        x = images_to_input(batch["image"])
        self.model.detach_alignment = plan.detach_alignment
        tf_mask = None
        if plan.teacher_forcing > 0 and plan.stage.branch != "model":
            tf_mask = torch.rand(x.shape[0], device=self.device) < plan.teacher_forcing
        out = self.forward(x, plan.stage.branch, tf_mask, batch["seg"], batch["grid"])
        total, terms = compute_losses(out, batch, self.loss_ctx, plan.weights, cfg.loss.conf_alpha)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, clip) if params else torch.tensor(0.0)
        ok = bool(torch.isfinite(norm)) and bool(torch.isfinite(total.detach()))
        if ok:  # grads are identical on every replica after DDP's all-reduce, so all ranks agree
            self.optimizer.step()
        info = {"loss": float(total.detach()), "lr": plan.lr, "grad_norm": float(norm), "skipped": float(not ok)}
        info.update({k: float(v.detach()) for k, v in terms.items()})
        return info

    def _precise_batchnorm(self, n_batches: int) -> None:
        """BatchNorm running statistics from ``n_batches`` random training batches of the current epoch's augmentation."""
        from dsfnet.train.batchnorm import batchnorm_layers, recompute_batchnorm_statistics

        if not batchnorm_layers(self.model):
            return
        loader = random_batches(self.train_set, self.config.data, n_batches, self.config.run.seed * 100003 + self.step)
        recompute_batchnorm_statistics(self.model, start_workers(loader),
                                       lambda m, b: m(images_to_input(to_device(b, self.device)["image"])))

    def _write_missing_epoch_file(self) -> None:
        """A run killed during its end-of-epoch save resumes at the epoch boundary: write the epoch file it lacks."""
        if self.config.run.keep_epochs and self.step > 0 and self.step % self.steps_per_epoch == 0:
            name = epoch_checkpoint_name(self.step // self.steps_per_epoch)
            if not (self.run_dir / name).is_file():
                self.save(name)

    def _end_of_epoch(self, log: CsvLog | None, bar: Any) -> None:
        r = self.config.run
        epoch_done = self.step / self.steps_per_epoch
        if self.is_main and r.precise_bn_batches > 0:  # other ranks get these statistics from save()'s broadcast
            self._precise_batchnorm(r.precise_bn_batches)
        if self.is_main and validation_due(r, self.step, self.steps_per_epoch, self.total_steps):
            loader = validation_loader(self.val_set, self.config.data)
            if loader is not None:
                self._validate(loader, epoch_done, log, bar)
        self.save(LAST)
        if r.keep_epochs and abs(epoch_done - round(epoch_done)) < 1e-9:
            self.save(epoch_checkpoint_name(round(epoch_done)))

    def _validate(self, loader: Any, epoch_done: float, log: CsvLog | None, bar: Any) -> None:
        """Score the validation set, log it, and write ``best.pt`` on a new best NME of the validated branch."""
        branch = validation_branch(self.config, self.step, self.total_steps)
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
            self._write_checkpoint(BEST)


def train(config: TrainConfig, run_dir: str | os.PathLike, **kwargs: Any) -> TrainResult:
    """Build a :class:`Trainer` and run it (``kwargs``: ``model``, ``train_set``, ``val_set``)."""
    return Trainer(config, run_dir, **kwargs).fit()


__all__ = ["CONFIG_NAME", "TrainResult", "Trainer", "build_model", "epoch_checkpoint_name", "train"]
