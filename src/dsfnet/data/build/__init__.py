"""``dsfnet data build``: turn a photo set (ytf68 landmarks, or bare images with --pseudo) into 3DMM-labelled samples.

Two kinds of source folder:

* **ytf68 layout** (default): ``landmarks.jsonl`` with 68 2D landmarks per image; labels are a landmark fit
  started from the teacher (stages 1-2 below).
* **a folder of images** (``--pseudo``): every image below SRC (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``,
  recursively, sorted; any ``landmarks.jsonl`` is ignored) is one item labelled by the teacher alone
  (*pseudo-labels*, stages P1-P2 below). The identity of an item is a hash of its decoded pixels
  (``<source>/<16 hex digits>``), so pixel-identical duplicates share an identity and always land in the same
  split; the ``source`` tag of the samples is ``--source-name`` (default: SRC's folder name) and
  ``<source>/profiled`` for profiled views. The teacher is required.

Per face (an *item*) of a ytf68 source, a pipeline of pluggable stages (after the optional
``--annotation-correction``, :class:`dsfnet.data.convention.AnnotationCorrection`, has moved every annotation to
the teacher's placement):

1. **init**: the 3DDFA_V2 teacher (:mod:`dsfnet.teacher`, weights folder from ``--teacher-dir`` or
   ``$DSFNET_TEACHER_DIR``) predicts pose/shape/expression from the landmark crop; without a teacher the fit
   starts from its closed-form initialisation;
2. **fit**: landmark fitting (:func:`dsfnet.data.fitting.fit_landmarks`) in the landmarks' ``--convention``:
   ``2d`` (default; 300-W-style annotations: the jaw points slide along the silhouette) or ``3d`` (every point a
   fixed model vertex, as the teacher's or fused pseudo-labels, ``scripts/label_sources.py``); items whose fit is
   poor (NME > ``--max-nme``) fail;
3. **profile**: face profiling (:func:`dsfnet.data.profiling.profile_face`) adds ``--views`` rotated copies
   with |yaw| spread up to ``--max-yaw`` (90°) on the side the face already turns to;
4. **write**: images under ``OUT/images/``, one record per item ``OUT/items/<key>.json`` (written last,
   atomically: an item with a record is done, so a rerun resumes).

Per image of a ``--pseudo`` source, stages 1-2 are replaced by:

P1. **detect**: our face detector (:mod:`dsfnet.detect`, yuface) finds the faces; the largest box is kept (an
    image without a face is a recorded failure, ``"no face detected"``);
P2. **label**: the teacher runs on a crop from the detector box (the detector's :class:`~dsfnet.crop.BoxCalibration`
    crop widened by √2/1.5 to the teacher's landmark-crop size, :func:`dsfnet.teacher.roi_from_calibrated_detection`),
    then again on its own landmark crop (:func:`dsfnet.teacher.roi_from_landmarks` of its first-pass 68 landmarks: the
    3DDFA_V2 two-pass habit); the second pass's shape/exp/pose are the label. There is no landmark fit:
    the record has ``"label": "teacher"``, ``fit_nme`` and ``teacher_nme`` are ``null`` and ``--max-nme`` does
    not apply; ``teacher_pass_nme`` (first- vs second-pass landmarks over √(w·h) of the second-pass box) and
    the detection (``box``, ``score``) are recorded for inspection. The samples' landmarks are the 68 keypoint
    vertices projected with the label (convention ``"3d"``).

Stages 3-4 (profiling, writing) and ``--cache`` are the same for both sources.

At the end: ``OUT/train.jsonl`` and ``OUT/val.jsonl`` (:func:`dsfnet.data.sample.write_index`; raw
coefficients, ``Pose_Para`` in each image's pixels), an identity-disjoint validation split (a fixed fraction
of the identities chosen by a hash of the name: ytf68's own test split shares identities with training),
optionally precomputed crops (``--cache``: :class:`dsfnet.data.cache.CacheWriter` +
:class:`dsfnet.data.targets.TargetBuilder`, in ``OUT/cache_train`` / ``OUT/cache_val``), and a report
(counts, a yaw histogram table, failures) printed and saved as ``OUT/report.json``.

Source layout (ytf68): ``landmarks.jsonl`` with one ``{"image", "identity", "split", "pts68"}`` per line,
image paths relative to the source folder. Only the ``training`` split is used by default: ytf68's test
frames are near-duplicates of training frames of the same clips.

Item record (``OUT/items/<key>.json``, both sources): ``key``, ``identity``, ``split``, ``status`` (``"ok"`` /
``"failed"`` + ``error``), ``samples`` (the :class:`~dsfnet.data.sample.FaceSample` JSON of each view),
``fit_nme``, ``teacher_nme``, ``seconds``; pseudo-labelled items add ``label``, ``label_note``, ``detection``,
``teacher_pass_nme`` and ``teacher_roi``.

Modules: :mod:`~dsfnet.data.build.config` (:class:`BuildConfig`), :mod:`~dsfnet.data.build.stages` (the
:class:`Pipeline` and its default stages), :mod:`~dsfnet.data.build.process` (one item → images + record),
:mod:`~dsfnet.data.build.run` (:func:`build`: resume, workers, annotation correction),
:mod:`~dsfnet.data.build.report` (indexes, report, caches); the items come from :mod:`dsfnet.data.sources`. The
command line is :mod:`dsfnet.cli.data`. Public names are imported on first use (the CLI imports this package at
start-up for :class:`BuildConfig`).
"""
from __future__ import annotations

from dsfnet._lazy import lazy_getattr
from dsfnet.data.build.config import BuildConfig

_LAZY = {
    "build": "dsfnet.data.build.run",
    "CORRECTION_FILE": "dsfnet.data.build.run",
    "ItemWorker": "dsfnet.data.build.run",
    "Fit": "dsfnet.data.build.stages",
    "Pipeline": "dsfnet.data.build.stages",
    "build_pipeline": "dsfnet.data.build.stages",
    "make_detect_stage": "dsfnet.data.build.stages",
    "make_fit_stage": "dsfnet.data.build.stages",
    "make_profile_stage": "dsfnet.data.build.stages",
    "make_teacher_init": "dsfnet.data.build.stages",
    "make_teacher_label": "dsfnet.data.build.stages",
    "PSEUDO_NOTE": "dsfnet.data.build.process",
    "process_item": "dsfnet.data.build.process",
    "project_keypoints": "dsfnet.data.build.process",
    "YAW_BINS": "dsfnet.data.build.report",
    "build_caches": "dsfnet.data.build.report",
    "format_report": "dsfnet.data.build.report",
    "summarize": "dsfnet.data.build.report",
}

__all__ = ["BuildConfig", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)
