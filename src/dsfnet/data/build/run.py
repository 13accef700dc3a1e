"""Running a build: the items to do, the annotation-correction guard, the worker pool, the report at the end."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from dsfnet.data.build.config import BuildConfig
from dsfnet.data.build.process import process_item
from dsfnet.data.build.report import build_caches, format_report, load_records, summarize, write_indexes
from dsfnet.data.build.stages import Pipeline, build_pipeline
from dsfnet.data.sources import Item, read_image_items, read_items

#: where a build records its annotation correction (``--annotation-correction``)
CORRECTION_FILE = "annotation_correction.json"


def build(config: BuildConfig, pipeline: Pipeline | None = None) -> dict:
    """Run the build (:mod:`dsfnet.data.build`): items not yet done go through the stages (``pipeline``, which
    then runs in-process; default: :func:`build_pipeline` in ``config.workers`` processes), then the indexes, the
    caches and the report are written and printed. Returns the report (``OUT/report.json``).

    Raises:
        ValueError: ``--pseudo`` without a teacher, no items, or an annotation correction that differs from the
            one the folder was built with; FileNotFoundError: no ``landmarks.jsonl`` in a ytf68 source.
    """
    from dsfnet.io.writers import atomic_write_text
    from dsfnet.teacher import ENV_TEACHER_DIR

    out = config.out
    if config.pseudo and pipeline is None and not config.teacher_dir:
        raise ValueError(f"--pseudo labels with the teacher alone: give --teacher-dir or ${ENV_TEACHER_DIR} "
                         "(and not --no-teacher)")
    items, what = _read_items(config)
    correction = _annotation_correction(out, config.annotation_correction, config.pseudo)
    if correction is not None:
        items = [replace(it, landmarks=correction.apply(it.landmarks)) for it in items]
    if not items:
        raise ValueError(f"no {what}")
    out.mkdir(parents=True, exist_ok=True)
    if correction is not None:
        correction.save(out / CORRECTION_FILE)  # the same file a resume has just been checked against
    done = {p.stem for p in (out / "items").glob("*.json")} if (out / "items").is_dir() else set()
    todo = [it for it in items if it.key not in done]
    distinct = f", {len({it.identity for it in items})} distinct by pixels" if config.pseudo else ""
    print(f"{len(items)} {'images' if config.pseudo else 'faces'} ({sum(it.split == 'val' for it in items)} held out "
          f"for validation{distinct}), {len(items) - len(todo)} already built; teacher: {config.teacher_dir or 'none'}"
          f"{' (pseudo-labels)' if config.pseudo else ''}; views per face: {config.views}")
    t0 = time.perf_counter()
    if todo:
        _process(todo, config, pipeline)
    elapsed = time.perf_counter() - t0
    records = load_records(out, items)
    report = summarize(records, elapsed=elapsed, n_built_now=len(todo))
    if correction is not None:
        report["annotation_correction"] = correction.to_json()
    write_indexes(out, records)
    if config.cache:
        fm = pipeline.face_model if pipeline is not None else None
        report["cache"] = build_caches(out, config.crop_size, config.uv_size, fm, config.face_model)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    print(format_report(report))
    return report


def _read_items(config: BuildConfig) -> tuple[list[Item], str]:
    """The source's items and how to name them in a message."""
    if config.pseudo:
        items = read_image_items(config.source, config.val_fraction, config.limit, source_name=config.source_name,
                                 exclude=(config.out,))
        return items, f"images in {config.source}"
    index = config.source / "landmarks.jsonl"
    if not index.is_file() and config.source.is_dir():
        raise FileNotFoundError(f"{index} not found: expected a ytf68-style folder (for a folder of images without "
                                "landmarks use --pseudo)")
    items = read_items(config.source, config.splits, config.val_fraction, config.limit)
    return items, f"faces in {config.source} for splits {config.splits}"


def _annotation_correction(out: Path, path: Path | None, pseudo: bool):
    """The build's :class:`~dsfnet.data.convention.AnnotationCorrection` (or None): ``path``'s, checked against the
    one recorded in ``OUT/`` :data:`CORRECTION_FILE` by an earlier run (a rerun must not change or drop it: the built
    items carry it). Writes nothing; :func:`build` records it once the build starts."""
    from dsfnet.data.convention import AnnotationCorrection

    recorded = out / CORRECTION_FILE
    previous = AnnotationCorrection.load(recorded) if recorded.is_file() else None
    if path is None:
        if previous is not None:
            raise ValueError(f"{out} was built with an annotation correction ({recorded}); "
                             "give the same --annotation-correction to resume")
        return None
    if pseudo:
        raise ValueError("--annotation-correction applies to annotated landmarks, not to --pseudo builds")
    correction = AnnotationCorrection.load(path)
    if previous is not None and previous != correction:
        raise ValueError(f"{out} was built with another annotation correction ({recorded}): "
                         f"{previous.to_json()} vs {correction.to_json()}")
    return correction


# ------------------------------------------------------------------------------------------- processing

class ItemWorker:
    """Processes items (:func:`~dsfnet.data.build.process.process_item`) with one pipeline and the output options
    of ``config`` (``out``, ``seed``, ``max_nme``)."""

    def __init__(self, config: BuildConfig, pipeline: Pipeline) -> None:
        self.config = config
        self.pipeline = pipeline

    def __call__(self, item: Item) -> dict:
        return process_item(item, self.pipeline, self.config.out, self.config.seed, self.config.max_nme)


def _process(todo: list[Item], config: BuildConfig, pipeline: Pipeline | None) -> None:
    """Every item of ``todo``: in-process with ``pipeline`` (or ``config.workers == 0``), else in a pool of
    ``config.workers`` spawned processes, each with its own :class:`ItemWorker`."""
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="face", desc="build", dynamic_ncols=True)
    if pipeline is not None or config.workers <= 0:
        worker = ItemWorker(config, pipeline if pipeline is not None else build_pipeline(config))
        for it in todo:
            worker(it)
            bar.update(1)
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(config.workers, initializer=_start_worker, initargs=(config,)) as pool:
            for _ in pool.imap_unordered(_run_in_worker, todo, chunksize=1):
                bar.update(1)
    bar.close()


#: the :class:`ItemWorker` of this pool process (set once by the pool's initializer, :func:`_start_worker`; a pool
#: task can only reach per-process state through the module)
_worker: ItemWorker | None = None


def _start_worker(config: BuildConfig) -> None:
    """Pool initializer: one torch thread, this process's face model and stages."""
    global _worker
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    _worker = ItemWorker(config, build_pipeline(config))


def _run_in_worker(item: Item) -> dict:
    assert _worker is not None, "_start_worker has not run in this process"
    return _worker(item)
