"""Data loading for the trainer: seeded samples, a resumable sharded sampler, and signal-safe worker start-up.

Every sample's augmentation depends only on ``(seed, epoch, index)`` (:class:`SeededSamples`) and the order only on
``(seed, epoch)`` (:class:`ResumableSampler`), so a resumed run sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import random
import signal
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def start_workers(loader: Iterable) -> Iterator:
    """``iter(loader)`` with SIGINT/SIGTERM held back while its worker processes fork and start.

    torch's worker start-up installs its own SIGTERM handler (which exits) before ``worker_init_fn`` runs; a
    signal sent to the process group in that window would kill a worker and abort the run before the main
    process could save. Forked workers inherit the blocked mask, so the signal stays pending in them until
    :func:`worker_init` ignores and unblocks it; the main process receives its own copy when the mask is lifted.
    """
    if not hasattr(signal, "pthread_sigmask"):
        return iter(loader)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def worker_init(worker_id: int) -> None:  # noqa: ARG001
    """DataLoader worker: one torch thread; python/numpy/torch seeded from the worker's torch seed.

    Workers ignore SIGINT/SIGTERM: Ctrl-C or a signal to the whole process group must reach only the main
    process, which saves ``last.pt`` and then shuts its workers down (a worker dying first would abort the run
    before the checkpoint).
    """
    for s in _STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # held since the fork by start_workers; pending copies are now dropped
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


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch on ``device``: numpy arrays become tensors, float64 tensors float32; other values pass."""
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


def train_loader(samples: SeededSamples, data: Any, world: int, rank: int, seed: int, epoch: int, start: int,
                 pin_memory: bool) -> DataLoader:
    """Epoch ``epoch`` of the training samples from sample ``start`` of this process's shard (``data``: the
    ``data`` section: batch size, workers)."""
    samples.set_epoch(epoch)
    sampler = ResumableSampler(samples, world, rank, seed, start)
    sampler.set_epoch(epoch)
    return DataLoader(samples, batch_size=data.batch_size, sampler=sampler, num_workers=data.num_workers,
                      worker_init_fn=worker_init if data.num_workers else None, drop_last=True,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(seed * 100003 + epoch))


def random_batches(samples: Dataset, data: Any, n_batches: int, seed: int) -> DataLoader:
    """``n_batches`` batches (at most the whole set) of samples drawn without replacement by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    n = min(n_batches * data.batch_size, len(samples))  # type: ignore[arg-type]
    subset = torch.utils.data.Subset(samples, torch.randperm(len(samples), generator=g)[:n].tolist())  # type: ignore[arg-type]
    return DataLoader(subset, batch_size=data.batch_size, num_workers=data.num_workers, drop_last=True,
                      worker_init_fn=worker_init if data.num_workers else None)


def validation_loader(samples: Dataset | None, data: Any) -> DataLoader | None:
    """The validation samples (at most ``data.val_max``, evenly spaced; augmentation seed 0), or None when empty."""
    if samples is None or len(samples) == 0:  # type: ignore[arg-type]
        return None
    ds = samples
    if data.val_max and len(ds) > data.val_max:  # type: ignore[arg-type]
        ds = torch.utils.data.Subset(ds, np.linspace(0, len(ds) - 1, data.val_max).astype(int).tolist())  # type: ignore[arg-type]
    return DataLoader(SeededSamples(ds, 0), batch_size=data.val_batch_size, shuffle=False, num_workers=data.num_workers,
                      worker_init_fn=worker_init if data.num_workers else None)
