"""The configuration of one ``dsfnet data build`` run (:class:`BuildConfig`; the CLI builds it from its options)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BuildConfig:
    """Every option of a build (``dsfnet data build --help`` describes each; defaults are the CLI's).

    Attributes:
        source: ytf68-style folder (``landmarks.jsonl`` + images), or with ``pseudo`` any folder of images.
        out: output folder (created; reruns resume).
        pseudo: label every image below ``source`` with the teacher alone (detect + two teacher passes, no fit).
        source_name: ``pseudo``: the samples' source tag and identity prefix (None: ``source``'s folder name).
        teacher_dir: 3DDFA_V2 folder (:mod:`dsfnet.teacher`), already resolved (the CLI applies
            ``--no-teacher`` and ``$DSFNET_TEACHER_DIR``); None: no teacher.
        views: profiled views per face (0 = none).
        max_yaw: largest |yaw| of profiled views, degrees.
        max_pitch: profiled views also get a pitch drawn in ``[-max_pitch, max_pitch]`` degrees (0 = keep).
        val_fraction: fraction of identities held out for validation, in [0, 1).
        splits: source splits to use (ytf68 ``split`` field).
        limit: only the first N items (sorted by key); None = all.
        workers: worker processes (0 = in-process).
        max_nme: items whose fit NME (fraction of √(w·h)) exceeds this fail.
        seed: seed of the profiled views.
        cache: also precompute crops and GT maps into ``OUT/cache_*``.
        crop_size: crop size S of the cache, px.
        uv_size: UV size U of the cache (None: the lite model's).
        face_model: face model file (None: built-in).
        annotation_correction: JSON of a :class:`~dsfnet.data.convention.AnnotationCorrection` applied to every
            annotation before the fit (None: none).
        convention: the landmarks' convention, ``"2d"`` (jaw on the visible outline) or ``"3d"`` (fixed vertices).
        detector: ``pseudo``: the face detector's registry name (:func:`dsfnet.detect.create_detector`).
    """

    source: Path
    out: Path
    pseudo: bool = False
    source_name: str | None = None
    teacher_dir: Path | None = None
    views: int = 1
    max_yaw: float = 90.0
    max_pitch: float = 0.0
    val_fraction: float = 0.1
    splits: tuple[str, ...] = ("training",)
    limit: int | None = None
    workers: int = 2
    max_nme: float = 0.08
    seed: int = 0
    cache: bool = False
    crop_size: int = 128
    uv_size: int | None = None
    face_model: Path | None = None
    annotation_correction: Path | None = None
    convention: str = "2d"
    detector: str = "yuface"

    def __post_init__(self) -> None:
        for name in ("source", "out", "teacher_dir", "face_model", "annotation_correction"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "splits", tuple(self.splits))
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.views < 0:
            raise ValueError(f"--views must be >= 0, got {self.views}")
        if self.convention not in ("2d", "3d"):
            raise ValueError(f"--convention must be 2d or 3d, got {self.convention!r}")


def default(name: str) -> Any:
    """The default of :class:`BuildConfig` field ``name`` (the CLI's option defaults)."""
    for f in fields(BuildConfig):
        if f.name == name:
            return f.default
    raise KeyError(name)
