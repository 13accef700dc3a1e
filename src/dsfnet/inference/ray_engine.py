"""``dsfnet predict --engine ray``: the same per-input work (:func:`dsfnet.inference.batch.process_input`) on a Ray
actor pool, for jobs bigger than one process (the optional extra ``pip install "dsfnet[ray]"``).

Each actor builds its :class:`~dsfnet.inference.FaceAligner` once and processes whole inputs (an image, or a video
with its tracking state); it writes meshes and overlays into the output folder itself (a shared file system on a
cluster) and returns the input's records, which the driver writes to ``results.jsonl`` in input order
(``ActorPool.map`` is ordered), so a Ray run gives the local engine's file. ``address``: None starts a local Ray
instance (``workers`` CPUs), ``"auto"`` or ``"ray://host:10001"`` joins a cluster.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

from dsfnet.inference.batch import BatchOptions, InputResult, process_input

__all__ = ["RAY_MISSING", "ray_available", "run_on_ray"]

RAY_MISSING = 'the Ray engine needs the optional extra: pip install "dsfnet[ray]" (the ray package from PyPI)'


def ray_available() -> bool:
    """Whether ``ray`` can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class _Worker:
    """One actor: a FaceAligner built once, then :func:`process_input` per task."""

    def __init__(self, aligner_kwargs: dict, boxes_file: str | None, options: BatchOptions, out: str) -> None:
        from dsfnet.detect import BoxesDetector
        from dsfnet.inference import FaceAligner

        self.aligner = FaceAligner(**aligner_kwargs)
        self.boxes_db = BoxesDetector.from_file(boxes_file) if boxes_file else None
        self.options, self.out = options, out

    def run(self, kind: str, given: str, stem: str) -> tuple[list[dict], InputResult]:
        records: list[dict] = []
        result = process_input(self.options, self.aligner, self.boxes_db, kind, given, self.out, stem, records.append)
        return records, result


def run_on_ray(tasks: Iterable[tuple[str, str, str]], *, aligner_kwargs: dict, boxes_file: str | None,
               options: BatchOptions, out: str | os.PathLike, workers: int = 2,
               address: str | None = None) -> Iterator[tuple[list[dict], InputResult]]:
    """Process ``(kind, path, stem)`` tasks on ``workers`` actors; yields ``(records, result)`` per task, in order.

    Raises:
        ImportError: ``ray`` is not installed (:data:`RAY_MISSING`).
    """
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise ImportError(RAY_MISSING) from exc
    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=max(1, int(workers)), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        actor = ray.remote(num_cpus=1)(_Worker)
        pool = ActorPool([actor.remote(aligner_kwargs, boxes_file, options, os.fspath(out))
                          for _ in range(max(1, int(workers)))])
        yield from pool.map(lambda a, t: a.run.remote(*t), list(tasks))
    finally:
        if started:
            ray.shutdown()
