"""One item through the stages: images under ``OUT/images/``, its record ``OUT/items/<key>.json`` (written last,
atomically: an item with a record is done, so a rerun resumes). The record's fields are listed in
:mod:`dsfnet.data.build`."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from dsfnet.data.build.stages import Fit, Pipeline
from dsfnet.data.sources import Item
from dsfnet.io.writers import atomic_write_bytes


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
            landmarks, convention = project_keypoints(pipeline.face_model, fit.shape, fit.exp, fit.pose_para, h), "3d"
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
                lm = project_keypoints(pipeline.face_model, fit.shape, fit.exp, pose, h)
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


def project_keypoints(fm, shape, exp, pose, height) -> np.ndarray:
    """``(68, 3)`` image px: the face model's keypoint vertices of raw ``shape``/``exp`` under ``Pose_Para`` ``pose``
    in an image of height ``height`` (the samples' 3D-convention landmarks)."""
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
