"""The teacher with test-time augmentation: a mean over jittered crops (fused labels, ``docs/training.md``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dsfnet.teacher.roi import jitter_roi, roi_from_landmarks

#: (scale, dx, dy) of the jittered crops of :func:`teacher_tta_landmarks`: side ×scale, centre moved by (dx, dy) × side
TTA_JITTER: tuple[tuple[float, float, float], ...] = tuple(
    (s, dx, dy) for s in (0.95, 1.0, 1.05) for dx, dy in ((0.0, 0.0), (-0.03, 0.02), (0.03, -0.02)))


def teacher_tta_landmarks(teacher, image_rgb: np.ndarray, roi_box: Sequence[float],
                          jitter: Sequence[tuple[float, float, float]] = TTA_JITTER) -> np.ndarray:
    """The teacher's 68 landmarks ``(68, 3)`` image px with test-time augmentation: a first pass on ``roi_box``, then
    the mean over ``jitter`` crops (:func:`~dsfnet.teacher.roi.jitter_roi`) around the crop of its own landmarks
    (:func:`~dsfnet.teacher.roi.roi_from_landmarks`). Averaging crops removes most of the teacher's crop-placement
    noise. ``teacher``: a :class:`~dsfnet.teacher.predictor.Teacher` (or anything with its ``predict`` and
    ``predict_batch``)."""
    first = teacher.predict(image_rgb, roi_box)
    base = roi_from_landmarks(first.landmarks)
    outs = teacher.predict_batch([image_rgb] * len(jitter), [jitter_roi(base, *j) for j in jitter])
    return np.mean([o.landmarks for o in outs], axis=0)
