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

1. **init**: the 3DDFA_V2 teacher (:mod:`dsfnet.data.teacher`, weights folder from ``--teacher-dir`` or
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
    crop widened by √2/1.5 to the teacher's landmark-crop size, :func:`teacher_roi_from_detection`), then again on
    its own landmark crop (:func:`dsfnet.data.teacher.roi_from_landmarks` of its first-pass 68 landmarks: the
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
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dsfnet.io.writers import atomic_write_bytes

ENV_TEACHER = "DSFNET_TEACHER_DIR"
TEACHER_WEIGHTS = "mb05_120x120.pth"
TEACHER_STATS = "param_mean_std_62d_120x120.pkl"
#: yaw histogram bin edges (degrees) of the report
YAW_BINS = (-90, -75, -60, -45, -30, -15, 0, 15, 30, 45, 60, 75, 90)


# --------------------------------------------------------------------------------------------- items

@dataclass(frozen=True)
class Item:
    """One annotated face of the source set.

    Attributes:
        key: unique file-name-safe id (the image path without suffix, ``/`` → ``__``).
        image: absolute image path.
        identity: person id (``--pseudo``: a hash of the decoded pixels, :func:`pixel_identity`).
        split: ``"train"`` or ``"val"`` (ours, identity-disjoint).
        landmarks: ``(68, 2)`` image pixels (2D convention); ``None`` for a ``--pseudo`` image (labelled by the
            detect + label stages).
        source: the samples' ``source`` tag (``"ytf68"``; ``--pseudo``: ``--source-name`` or the folder name).
    """

    key: str
    image: str
    identity: str
    split: str
    landmarks: np.ndarray | None = field(default=None, repr=False)
    source: str = "ytf68"


def identity_split(identity: str, val_fraction: float) -> str:
    """``"val"`` for a deterministic ``val_fraction`` of identities (SHA-1 of the name), else ``"train"``."""
    h = int.from_bytes(hashlib.sha1(identity.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64
    return "val" if h < val_fraction else "train"


def read_items(source: str | os.PathLike, splits: tuple[str, ...] = ("training",), val_fraction: float = 0.1,
               limit: int | None = None) -> list[Item]:
    """Read ``landmarks.jsonl`` of a ytf68-style folder (module docstring) into :class:`Item` s.

    Raises:
        FileNotFoundError: no ``landmarks.jsonl``; ValueError: a malformed line (its number is given).
    """
    src = Path(source)
    index = src / "landmarks.jsonl"
    if not index.is_file():
        raise FileNotFoundError(f"{index} not found: expected a ytf68-style folder with landmarks.jsonl")
    items = []
    with open(index, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                pts = np.asarray(obj["pts68"], dtype=np.float64)
                rel, identity, split = str(obj["image"]), str(obj["identity"]), str(obj.get("split", "training"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{index}:{no}: expected {{image, identity, split, pts68}}, got an error: {exc}") from None
            if pts.shape != (68, 2):
                raise ValueError(f"{index}:{no}: pts68 must be (68, 2), got {pts.shape}")
            if split not in splits:
                continue
            key = str(Path(rel).with_suffix("")).replace("/", "__").replace("\\", "__")
            items.append(Item(key, str((src / rel).resolve()), identity, identity_split(identity, val_fraction), pts))
    items.sort(key=lambda it: it.key)
    return items[:limit] if limit else items


def pixel_identity(image: np.ndarray, prefix: str = "") -> str:
    """``"<prefix>/<16 hex>"``: SHA-1 of a decoded image's shape and pixels (pixel-identical images share it)."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha1(f"{a.shape}|{a.dtype}|".encode())
    h.update(a.tobytes())
    return f"{prefix}/{h.hexdigest()[:16]}" if prefix else h.hexdigest()[:16]


def list_images(source: str | os.PathLike, exclude: tuple[str | os.PathLike, ...] = ()) -> list[Path]:
    """Image files below ``source`` (recursive, sorted; suffixes :data:`dsfnet.data.readers.IMAGE_SUFFIXES`),
    skipping anything under the ``exclude`` folders (e.g. ``--out`` inside the source)."""
    from dsfnet.data.readers import IMAGE_SUFFIXES

    src = Path(source)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder of images")
    skip = [Path(e).resolve() for e in exclude]
    out = []
    for p in sorted(src.rglob("*")):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        rp = p.resolve()
        if any(rp == e or e in rp.parents for e in skip):
            continue
        out.append(p)
    return out


def read_image_items(source: str | os.PathLike, val_fraction: float = 0.1, limit: int | None = None,
                     source_name: str | None = None,
                     exclude: tuple[str | os.PathLike, ...] = ()) -> list[Item]:
    """Every image below ``source`` as an unlabelled :class:`Item` (``--pseudo``, module docstring).

    Keys are the relative path without suffix (``/`` → ``__``; the suffix is kept, ``.`` → ``_``, where two
    files would clash). Identities hash the decoded pixels (:func:`pixel_identity`); an unreadable image gets
    the identity ``<source>/unreadable/<key>`` and fails when it is processed.
    """
    from dsfnet.io.image import read_image

    src = Path(source)
    name = source_name or src.resolve().name
    paths = list_images(src, exclude)
    rels = [p.relative_to(src) for p in paths]
    stems = [str(r.with_suffix("")).replace("/", "__").replace("\\", "__") for r in rels]
    clash = {k for k, n in Counter(stems).items() if n > 1}
    keyed = []
    for p, r, k in zip(paths, rels, stems):
        if k in clash:
            k = str(r).replace(".", "_").replace("/", "__").replace("\\", "__")
        keyed.append((k, p))
    keyed.sort()
    if limit:
        keyed = keyed[:limit]
    items = []
    for key, p in keyed:
        try:
            identity = pixel_identity(read_image(p), name)
        except Exception:  # noqa: BLE001 - the failure is recorded when the item is processed
            identity = f"{name}/unreadable/{key}"
        items.append(Item(key, str(p.resolve()), identity, identity_split(identity, val_fraction), None, name))
    return items


# ---------------------------------------------------------------------------------------------- stages

@dataclass
class Fit:
    """Output of the init + fit stages: raw coefficients and ``Pose_Para`` in the photo's pixels."""

    pose_para: np.ndarray
    shape: np.ndarray          # raw (Ks,)
    exp: np.ndarray            # raw (Ke,)
    nme: float | None          # fitted vs given landmarks, over √(w·h) of their box (None: no fit, pseudo-labels)
    teacher_nme: float | None  # the teacher's 68 points vs the given ones (None without a teacher / landmarks)
    extra: dict = field(default_factory=dict)  # more JSON-ready fields for the item record


@dataclass
class Pipeline:
    """The stages; each is a plain callable so tests and future stages can swap them.

    Attributes:
        face_model: the 3DMM.
        init: ``(image_rgb, landmarks (68, 2)) -> (pose_para (7,), shape_n, exp_n) | None``.
        fit: ``(image_rgb, landmarks, init) -> Fit``.
        profile: ``(image_rgb, Fit, rng) -> list of (image_rgb, pose_para)`` extra views (may be empty).
        detect: ``--pseudo`` items: ``image_rgb -> Detection | box (4,) | None`` (None: no face, a failure).
        label: ``--pseudo`` items: ``(image_rgb, box (4,)) -> Fit`` (``nme`` None: no landmark fit).
        convention: the given landmarks' convention, ``"2d"`` or ``"3d"`` (recorded with each sample).
    """

    face_model: Any
    init: Callable[[np.ndarray, np.ndarray], Any] | None = None
    fit: Callable[..., Fit] | None = None
    profile: Callable[..., list] | None = None
    detect: Callable[[np.ndarray], Any] | None = None
    label: Callable[[np.ndarray, np.ndarray], Fit] | None = None
    convention: str = "2d"


def load_teacher(face_model, teacher_dir: str | os.PathLike):
    """The :class:`dsfnet.data.teacher.Teacher` in ``teacher_dir`` (FileNotFoundError naming a missing file)."""
    from dsfnet.data.teacher import Teacher

    d = Path(teacher_dir)
    for name in (TEACHER_WEIGHTS, TEACHER_STATS):
        if not (d / name).is_file():
            raise FileNotFoundError(f"teacher file {d / name} not found (--teacher-dir / ${ENV_TEACHER} must hold "
                                    f"{TEACHER_WEIGHTS} and {TEACHER_STATS})")
    return Teacher(d / TEACHER_WEIGHTS, d / TEACHER_STATS, face_model)


def make_teacher_init(face_model, teacher_dir: str | os.PathLike | None = None, teacher=None) -> Callable:
    """An init stage running the 3DDFA_V2 teacher (``teacher``, or loaded from ``teacher_dir``) on the 3DDFA
    landmark crop."""
    from dsfnet.data.teacher import roi_from_landmarks

    teacher = teacher if teacher is not None else load_teacher(face_model, teacher_dir)

    def init(image: np.ndarray, landmarks: np.ndarray):
        out = teacher.predict(image, roi_from_landmarks(landmarks))
        return (out.pose_para, out.shape / face_model.shape_std, out.exp / face_model.exp_std,
                out.landmarks[:, :2])

    return init


def teacher_roi_from_detection(box, calibration=None) -> np.ndarray:
    """The teacher's first-pass crop ``[x0, y0, x1, y1]`` from a detector box ``[l, t, r, b]``.

    With the detector's ``calibration`` (:class:`dsfnet.crop.BoxCalibration`, which maps its boxes to our crop of
    side 1.5 × the landmark box): that crop, widened by √2/1.5 around its centre to the size of the teacher's
    landmark crop (√2 × the landmark box, :func:`~dsfnet.data.teacher.roi_from_landmarks`). Without one:
    3DDFA_V2's rule for FaceBoxes boxes (:func:`~dsfnet.data.teacher.roi_from_detection`).
    """
    if calibration is None:
        from dsfnet.data.teacher import roi_from_detection

        return roi_from_detection(box)
    from dsfnet.crop import LANDMARK_BOX_SCALE, box_from_detection, square_box

    c = box_from_detection(np.asarray(box, dtype=np.float64)[:4], calibration)
    side = (c[2] - c[0]) * np.sqrt(2.0) / LANDMARK_BOX_SCALE
    return square_box((c[0] + c[2]) / 2, (c[1] + c[3]) / 2, side)


def make_detect_stage(detector: Any = "yuface") -> Callable:
    """A detect stage: the largest face (box area; ties: higher score) of ``detector`` (a registry name or a
    :class:`dsfnet.detect.FaceDetector`), or None when it finds none."""
    from dsfnet.detect import create_detector

    det = create_detector(detector)

    def detect(image: np.ndarray):
        faces = det.detect(image)
        if not faces:
            return None
        return max(faces, key=lambda d: ((d.box[2] - d.box[0]) * (d.box[3] - d.box[1]), d.score))

    return detect


def make_teacher_label(face_model, teacher_dir: str | os.PathLike | None = None, teacher=None,
                       calibration=None) -> Callable:
    """A label stage (``--pseudo``): the teacher from the detector box (:func:`teacher_roi_from_detection` with
    the detector's ``calibration``), then again from its own first-pass landmarks
    (:func:`~dsfnet.data.teacher.roi_from_landmarks`); the second pass is the label (``Fit.nme`` None)."""
    from dsfnet.data.fitting import landmark_nme
    from dsfnet.data.teacher import roi_from_landmarks

    teacher = teacher if teacher is not None else load_teacher(face_model, teacher_dir)

    def label(image: np.ndarray, box) -> Fit:
        first = teacher.predict(image, teacher_roi_from_detection(box, calibration))
        out = teacher.predict(image, roi_from_landmarks(first.landmarks[:, :2]))
        extra = {"teacher_pass_nme": landmark_nme(first.landmarks, out.landmarks),
                 "teacher_roi": [round(float(v), 2) for v in out.roi_box]}
        return Fit(out.pose_para, out.shape, out.exp, None, None, extra)

    return label


def make_fit_stage(face_model, convention: str = "2d") -> Callable:
    """A fit stage: :func:`fit_landmarks` from the init (if any)."""
    from dsfnet.data.fitting import fit_landmarks, landmark_nme

    def fit(image: np.ndarray, landmarks: np.ndarray, init) -> Fit:
        kw = {}
        teacher_nme = None
        if init is not None:
            kw = {"init_pose": init[0], "init_shape": init[1], "init_exp": init[2]}
            if len(init) > 3 and init[3] is not None:
                teacher_nme = landmark_nme(init[3], landmarks)
        r = fit_landmarks(face_model, landmarks, image.shape[0], convention=convention, **kw)
        return Fit(r.pose_para, r.shape * face_model.shape_std, r.exp * face_model.exp_std,
                   landmark_nme(r.landmarks, landmarks), teacher_nme)

    return fit


def make_profile_stage(face_model, views: int, max_yaw_deg: float = 90.0, min_step_deg: float = 10.0,
                       max_pitch_deg: float = 0.0) -> Callable:
    """A profiling stage: ``views`` new images, target |yaw| drawn uniformly in ``[|yaw| + min_step, max_yaw]``
    on the side the face turns to (a frontal face picks a side at random), and, when ``max_pitch_deg > 0``,
    target pitch drawn uniformly in ``[-max_pitch, max_pitch]``."""
    from dsfnet.data.profiling import profile_face

    max_yaw = np.radians(max_yaw_deg)
    max_pitch = np.radians(max_pitch_deg)
    step = np.radians(min_step_deg)

    def profile(image: np.ndarray, fit: Fit, rng: np.random.Generator) -> list:
        yaw = float(fit.pose_para[1])
        side = np.sign(yaw) if abs(yaw) > np.radians(3) else rng.choice([-1.0, 1.0])
        lo = min(abs(yaw) + step, max_yaw)
        out = []
        for target in np.sort(rng.uniform(lo, max_yaw, size=views)):
            delta_pitch = float(rng.uniform(-max_pitch, max_pitch) - fit.pose_para[0]) if max_pitch > 0 else 0.0
            view = profile_face(image, face_model, fit.shape, fit.exp, fit.pose_para,
                                delta_yaw=float(side * target - yaw), delta_pitch=delta_pitch)
            out.append((view.image, view.pose_para))
        return out

    return profile


# --------------------------------------------------------------------------------------------- worker

_CTX: dict[str, Any] = {}


def _worker_init(config: dict) -> None:
    """Per-process setup: one torch thread, the face model and the stages."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    _CTX.clear()
    _CTX.update(config)
    _CTX["pipeline"] = build_pipeline(config)


def build_pipeline(config: dict) -> Pipeline:
    """The default :class:`Pipeline` for a build configuration (see :func:`add_build_arguments`)."""
    if config.get("face_model_obj") is not None:
        fm = config["face_model_obj"]
    else:
        from dsfnet.facemodel.model import load_face_model

        fm = load_face_model(config.get("face_model"))
    prof = (make_profile_stage(fm, config["views"], config["max_yaw"], max_pitch_deg=config.get("max_pitch", 0.0))
            if config.get("views", 0) > 0 else None)
    if config.get("pseudo"):
        if not config.get("teacher_dir"):
            raise ValueError(f"--pseudo labels with the teacher alone: give --teacher-dir or ${ENV_TEACHER}")
        from dsfnet.detect import create_detector

        det = create_detector(config.get("detector", "yuface"))
        label = make_teacher_label(fm, config["teacher_dir"], calibration=det.calibration)
        return Pipeline(face_model=fm, profile=prof, detect=make_detect_stage(det), label=label)
    init = make_teacher_init(fm, config["teacher_dir"]) if config.get("teacher_dir") else None
    conv = config.get("convention", "2d")
    return Pipeline(face_model=fm, init=init, fit=make_fit_stage(fm, conv), profile=prof, convention=conv)


def process_item(item: Item, pipeline: Pipeline, out_dir: Path, seed: int = 0, max_nme: float = 0.08) -> dict:
    """Run the stages on one item and write its images and record; returns the record.

    Failures (unreadable image, bad fit, no face found, a stage raising) are recorded (``status: "failed"``,
    ``error``) and written too, so a rerun skips them; delete ``items/<key>.json`` to retry one.
    An item without landmarks (``--pseudo``) goes through ``pipeline.detect`` and ``pipeline.label`` instead of
    ``init`` and ``fit``.
    """
    from dsfnet.io.image import read_image
    from dsfnet.io.writers import atomic_write_text, write_image

    record: dict[str, Any] = {"key": item.key, "identity": item.identity, "split": item.split, "status": "ok",
                              "samples": []}
    t0 = time.perf_counter()
    try:
        image = read_image(item.image)
        h = int(image.shape[0])
        if item.landmarks is None:
            fit = _pseudo_label(image, pipeline, record)
            landmarks, convention = _project_keypoints(pipeline.face_model, fit.shape, fit.exp, fit.pose_para, h), "3d"
        else:
            init = pipeline.init(image, item.landmarks) if pipeline.init is not None else None
            fit = pipeline.fit(image, item.landmarks, init)
            landmarks, convention = item.landmarks, pipeline.convention
        record["fit_nme"] = fit.nme
        record["teacher_nme"] = fit.teacher_nme
        record.update(fit.extra)
        if fit.nme is not None and not fit.nme <= max_nme:
            raise ValueError(f"landmark fit NME {100 * fit.nme:.2f}% > {100 * max_nme:.1f}%")
        img_dir = out_dir / "images"
        img_dir.mkdir(parents=True, exist_ok=True)
        first = img_dir / f"{item.key}_v0{Path(item.image).suffix.lower()}"
        _atomic_copy(item.image, first)
        record["samples"].append(_sample_json(first, out_dir, fit.shape, fit.exp, fit.pose_para, h,
                                              landmarks, convention, item.identity, item.source))
        if pipeline.profile is not None:
            rng = np.random.default_rng([seed, int(hashlib.sha1(item.key.encode()).hexdigest()[:8], 16)])
            for k, (view, pose) in enumerate(pipeline.profile(image, fit, rng), start=1):
                path = img_dir / f"{item.key}_v{k}.jpg"
                write_image(path, view, quality=95)
                lm = _project_keypoints(pipeline.face_model, fit.shape, fit.exp, pose, h)
                record["samples"].append(_sample_json(path, out_dir, fit.shape, fit.exp, pose, h, lm, "3d",
                                                      item.identity, f"{item.source}/profiled"))
    except Exception as exc:  # noqa: BLE001 - any stage failure becomes a recorded failure
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", samples=[])
    record["seconds"] = round(time.perf_counter() - t0, 3)
    items_dir = out_dir / "items"
    items_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(items_dir / f"{item.key}.json", json.dumps(record))
    return record


#: note stored in the record of a pseudo-labelled item
PSEUDO_NOTE = ("pseudo-label: the 3DDFA_V2 teacher alone, two passes (detector box, then its own 68-landmark crop); "
               "no landmark fit, so fit_nme and teacher_nme are null")


def _pseudo_label(image: np.ndarray, pipeline: Pipeline, record: dict) -> Fit:
    """Detect + label one ``--pseudo`` image; fills the record's ``label``/``label_note``/``detection``."""
    if pipeline.detect is None or pipeline.label is None:
        raise ValueError("an image without landmarks needs the detect and label stages (--pseudo)")
    record.update(label="teacher", label_note=PSEUDO_NOTE)
    det = pipeline.detect(image)
    if det is None:
        raise ValueError("no face detected")
    box = np.asarray(getattr(det, "box", det), dtype=np.float64).reshape(-1)[:4]
    score = getattr(det, "score", None)
    record["detection"] = {"box": [round(float(v), 2) for v in box],
                           "score": None if score is None else round(float(score), 4)}
    return pipeline.label(image, box)


def _worker_run(item: Item) -> dict:
    return process_item(item, _CTX["pipeline"], Path(_CTX["out"]), _CTX.get("seed", 0), _CTX.get("max_nme", 0.08))


def _project_keypoints(fm, shape, exp, pose, height) -> np.ndarray:
    from dsfnet.geometry import decode_vertices, pose_para_to_image

    kp = np.asarray(fm.keypoints)
    v = decode_vertices(fm.mean[kp], fm.shape_basis[kp], fm.exp_basis[kp], shape, exp).astype(np.float64)
    return pose_para_to_image(v, pose, height)


def _sample_json(path: Path, out_dir: Path, shape, exp, pose, height, landmarks, convention, identity, source) -> dict:
    return {
        "image": os.path.relpath(path, out_dir), "image_height": int(height),
        "shape": [float(v) for v in shape], "exp": [float(v) for v in exp],
        "pose_para": [float(v) for v in pose], "identity": identity, "source": source,
        "landmarks": np.asarray(landmarks, dtype=np.float64).round(4).tolist(), "landmark_convention": convention,
    }


def _atomic_copy(src: str | os.PathLike, dst: Path) -> None:
    atomic_write_bytes(dst, Path(src).read_bytes())


# ------------------------------------------------------------------------------------------ arguments

def add_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register the options of ``dsfnet data build`` on ``parser``."""
    parser.add_argument("source", type=Path,
                        help="ytf68-style folder (landmarks.jsonl + images), or with --pseudo any folder of images")
    parser.add_argument("--pseudo", action="store_true",
                        help="label every image below SOURCE (recursively) with the teacher alone: yuface detection, "
                             "two teacher passes, no landmark fit; identity = hash of the pixels (needs the teacher; "
                             "--splits and --max-nme do not apply)")
    parser.add_argument("--source-name", default=None,
                        help="--pseudo: the samples' source tag and identity prefix (default: SOURCE's folder name)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; reruns resume)")
    parser.add_argument("--teacher-dir", type=Path, default=None,
                        help=f"3DDFA_V2 folder with {TEACHER_WEIGHTS} and {TEACHER_STATS} (default: ${ENV_TEACHER}; "
                             "without one the fit starts from its closed-form initialisation)")
    parser.add_argument("--no-teacher", action="store_true", help="do not use the teacher even if one is set")
    parser.add_argument("--views", type=int, default=1, help="profiled views per face (0 = none; default 1)")
    parser.add_argument("--max-yaw", type=float, default=90.0, help="largest |yaw| of profiled views, degrees")
    parser.add_argument("--max-pitch", type=float, default=0.0,
                        help="profiled views also get a pitch drawn in [-MAX, MAX] degrees (0 = keep the photo's)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="fraction of identities held out (0.1)")
    parser.add_argument("--splits", default="training", help="source splits to use, comma-separated (training)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N faces (sorted by name)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2; 0 = in-process)")
    parser.add_argument("--max-nme", type=float, default=0.08, help="fail items whose fit NME exceeds this (0.08)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the profiled yaws")
    parser.add_argument("--cache", action="store_true", help="also precompute crops and GT maps into OUT/cache_*")
    parser.add_argument("--crop-size", type=int, default=128, help="crop size S of the cache (128)")
    parser.add_argument("--uv-size", type=int, default=None, help="UV size U of the cache (default: the lite model's)")
    parser.add_argument("--face-model", type=Path, default=None, help="face model file (default: built-in)")
    parser.add_argument("--annotation-correction", type=Path, default=None, metavar="JSON",
                        help="move every annotation by this similarity before the fit (`dsfnet data convention`: "
                             "the annotations' average offset from the teacher's placement); kept in "
                             "OUT/annotation_correction.json, and a rerun must give the same file")
    parser.add_argument("--convention", choices=("2d", "3d"), default="2d",
                        help="the landmarks' convention: 2d (jaw on the visible outline, 300-W/ytf68; default) or 3d "
                             "(fixed model vertices, AFLW2000-3D / teacher-style pseudo-labels)")
    return parser


# --------------------------------------------------------------------------------------------- main

def main(args: argparse.Namespace, pipeline: Pipeline | None = None) -> int:
    """Run the build (module docstring). ``pipeline`` overrides the stages (runs in-process). Returns 0, or 1
    when nothing could be built."""
    out = Path(args.out)
    if not 0.0 <= args.val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    if args.views < 0:
        raise ValueError(f"--views must be >= 0, got {args.views}")
    pseudo = bool(getattr(args, "pseudo", False))
    teacher_dir = None if args.no_teacher else (args.teacher_dir or os.environ.get(ENV_TEACHER) or None)
    if pseudo and pipeline is None and not teacher_dir:
        raise ValueError(f"--pseudo labels with the teacher alone: give --teacher-dir or ${ENV_TEACHER} "
                         "(and not --no-teacher)")
    if pseudo:
        items = read_image_items(args.source, args.val_fraction, args.limit,
                                 source_name=getattr(args, "source_name", None), exclude=(out,))
        what = f"images in {args.source}"
    else:
        splits = tuple(s.strip() for s in str(args.splits).split(",") if s.strip())
        if not (Path(args.source) / "landmarks.jsonl").is_file() and Path(args.source).is_dir():
            raise FileNotFoundError(f"{Path(args.source) / 'landmarks.jsonl'} not found: expected a ytf68-style "
                                    "folder (for a folder of images without landmarks use --pseudo)")
        items = read_items(args.source, splits, args.val_fraction, args.limit)
        what = f"faces in {args.source} for splits {splits}"
    correction = _annotation_correction(out, getattr(args, "annotation_correction", None), pseudo)
    if correction is not None:
        items = [replace(it, landmarks=correction.apply(it.landmarks)) for it in items]
    if not items:
        print(f"dsfnet data build: no {what}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    if correction is not None:
        correction.save(out / CORRECTION_FILE)  # the same file a resume has just been checked against
    done = {p.stem for p in (out / "items").glob("*.json")} if (out / "items").is_dir() else set()
    todo = [it for it in items if it.key not in done]
    distinct = f", {len({it.identity for it in items})} distinct by pixels" if pseudo else ""
    print(f"{len(items)} {'images' if pseudo else 'faces'} ({sum(it.split == 'val' for it in items)} held out for "
          f"validation{distinct}), {len(items) - len(todo)} already built; teacher: {teacher_dir or 'none'}"
          f"{' (pseudo-labels)' if pseudo else ''}; views per face: {args.views}")
    config = {"out": str(out), "seed": args.seed, "max_nme": args.max_nme, "teacher_dir": teacher_dir,
              "views": args.views, "max_yaw": args.max_yaw, "max_pitch": args.max_pitch,
              "convention": getattr(args, "convention", "2d"),
              "face_model": None if args.face_model is None else str(args.face_model), "pseudo": pseudo}
    t0 = time.perf_counter()
    if todo:
        _run(todo, config, args.workers, pipeline)
    elapsed = time.perf_counter() - t0
    records = _load_records(out, items)
    report = summarize(records, elapsed=elapsed, n_built_now=len(todo))
    if correction is not None:
        report["annotation_correction"] = correction.to_json()
    _write_indexes(out, records)
    if args.cache:
        fm = pipeline.face_model if pipeline is not None else None
        report["cache"] = build_caches(out, args.crop_size, args.uv_size, fm, args.face_model)
    from dsfnet.io.writers import atomic_write_text

    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    print(format_report(report))
    return 0 if report["samples"] > 0 else 1


#: where a build records its annotation correction (``--annotation-correction``)
CORRECTION_FILE = "annotation_correction.json"


def _annotation_correction(out: Path, path: Path | None, pseudo: bool):
    """The build's :class:`~dsfnet.data.convention.AnnotationCorrection` (or None): ``path``'s, checked against the
    one recorded in ``OUT/`` :data:`CORRECTION_FILE` by an earlier run (a rerun must not change or drop it: the built
    items carry it). Writes nothing; :func:`main` records it once the build starts."""
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


def _run(todo: list[Item], config: dict, workers: int, pipeline: Pipeline | None) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="face", desc="build", dynamic_ncols=True)
    if pipeline is not None or workers <= 0:
        pipe = pipeline if pipeline is not None else build_pipeline(config)
        for it in todo:
            process_item(it, pipe, Path(config["out"]), config["seed"], config["max_nme"])
            bar.update(1)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_worker_init, initargs=(config,)) as pool:
            for _ in pool.imap_unordered(_worker_run, todo, chunksize=1):
                bar.update(1)
    bar.close()


def _load_records(out: Path, items: list[Item]) -> list[dict]:
    records = []
    for it in items:
        p = out / "items" / f"{it.key}.json"
        if p.is_file():
            records.append(json.loads(p.read_text(encoding="utf-8")))
    return records


def _write_indexes(out: Path, records: list[dict]) -> None:
    from dsfnet.data.sample import FaceSample, write_index

    for split in ("train", "val"):
        samples = [FaceSample.from_json(s, base=out) for r in records if r["split"] == split for s in r["samples"]]
        write_index(samples, out / f"{split}.jsonl")


def summarize(records: list[dict], elapsed: float = 0.0, n_built_now: int = 0) -> dict:
    """Counts, yaw histogram (degrees, :data:`YAW_BINS`), fit quality and failures of a build."""
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] != "ok"]
    yaws = {"original": [], "profiled": []}
    for r in ok:
        for s in r["samples"]:
            yaws["profiled" if s["source"].endswith("profiled") else "original"].append(np.degrees(s["pose_para"][1]))
    hist = {k: np.histogram(np.clip(v, -90, 90), bins=YAW_BINS)[0].tolist() for k, v in yaws.items()}
    nmes = [r["fit_nme"] for r in ok if r.get("fit_nme") is not None]
    tnmes = [r["teacher_nme"] for r in ok if r.get("teacher_nme") is not None]
    pnmes = [r["teacher_pass_nme"] for r in ok if r.get("teacher_pass_nme") is not None]
    pseudo = [r for r in ok if r.get("label") == "teacher"]
    return {
        "faces": len(records), "ok": len(ok), "failed": len(failed),
        "samples": sum(len(r["samples"]) for r in ok),
        "train_samples": sum(len(r["samples"]) for r in ok if r["split"] == "train"),
        "val_samples": sum(len(r["samples"]) for r in ok if r["split"] == "val"),
        "train_identities": len({r["identity"] for r in ok if r["split"] == "train"}),
        "val_identities": len({r["identity"] for r in ok if r["split"] == "val"}),
        "fit_nme_mean": float(np.mean(nmes)) if nmes else None,
        "teacher_nme_mean": float(np.mean(tnmes)) if tnmes else None,
        "pseudo_labelled": len(pseudo),
        "teacher_pass_nme_mean": float(np.mean(pnmes)) if pnmes else None,
        "teacher_pass_nme_p95": float(np.percentile(pnmes, 95)) if pnmes else None,
        "yaw_bins": list(YAW_BINS), "yaw_hist": hist,
        "failures": [{"key": r["key"], "error": r.get("error", "")} for r in failed],
        "seconds": round(elapsed, 1), "built_now": n_built_now,
        "seconds_per_face": round(elapsed / n_built_now, 3) if n_built_now else None,
    }


def format_report(report: dict) -> str:
    """The report as text: counts, a yaw histogram table, the first failures."""
    lines = [
        f"faces: {report['faces']} (ok {report['ok']}, failed {report['failed']}); samples: {report['samples']} "
        f"(train {report['train_samples']} from {report['train_identities']} identities, "
        f"val {report['val_samples']} from {report['val_identities']})",
    ]
    if report.get("fit_nme_mean") is not None:
        t = report.get("teacher_nme_mean")
        lines.append(f"fit NME mean {100 * report['fit_nme_mean']:.2f}%"
                     + (f" (teacher alone {100 * t:.2f}%)" if t is not None else ""))
    if report.get("pseudo_labelled"):
        p, q = report.get("teacher_pass_nme_mean"), report.get("teacher_pass_nme_p95")
        lines.append(f"pseudo-labelled by the teacher alone (no landmark fit): {report['pseudo_labelled']} images"
                     + (f"; first- vs second-pass landmarks NME mean {100 * p:.2f}%, p95 {100 * q:.2f}%"
                        if p is not None else ""))
    if report.get("seconds_per_face"):
        lines.append(f"time: {report['seconds']} s for {report['built_now']} faces "
                     f"({report['seconds_per_face']} s per face)")
    bins = report["yaw_bins"]
    lines.append(f"{'yaw (deg)':>12} | {'original':>8} | {'profiled':>8}")
    lines.append("-" * 36)
    for i in range(len(bins) - 1):
        o, p = report["yaw_hist"]["original"][i], report["yaw_hist"]["profiled"][i]
        lines.append(f"{f'[{bins[i]}, {bins[i + 1]})':>12} | {o:>8} | {p:>8}")
    for f in report["failures"][:10]:
        lines.append(f"failed: {f['key']}: {f['error']}")
    if len(report["failures"]) > 10:
        lines.append(f"... and {len(report['failures']) - 10} more failures (report.json)")
    return "\n".join(lines)


def build_caches(out: Path, crop_size: int, uv_size: int | None = None, face_model=None, face_model_path=None) -> dict:
    """Precompute training crops + GT maps of ``OUT/{train,val}.jsonl`` into ``OUT/cache_{train,val}`` (other
    sizes than 128/128: ``OUT/cache_{train,val}_s{S}_u{U}``, see :func:`dsfnet.data.cache.cache_folder_name`)."""
    from dsfnet.data.cache import CacheWriter, cache_folder_name, default_fields, lite_uv_size
    from dsfnet.data.sample import read_index
    from dsfnet.data.targets import TargetBuilder
    from dsfnet.facemodel.uv import get_uv_layout

    if face_model is None:
        from dsfnet.facemodel.model import load_face_model

        face_model = load_face_model(face_model_path)
    uv_size = uv_size or lite_uv_size()
    builder = TargetBuilder(face_model, get_uv_layout(face_model, uv_size), crop_size)
    counts = {}
    for split in ("train", "val"):
        samples = read_index(out / f"{split}.jsonl")
        counts[split] = len(samples)
        if not samples:
            continue
        fields = default_fields(crop_size, uv_size, face_model.n_shape, face_model.n_exp)
        attrs = {"crop_size": crop_size, "uv_size": uv_size, "face_model": face_model.fingerprint,
                 "source": str(out / f"{split}.jsonl")}
        with CacheWriter(out / cache_folder_name(split, crop_size, uv_size), fields, len(samples), attrs=attrs) as writer:
            for i, s in enumerate(samples):
                writer[i] = builder.build_sample(s)
    return counts
