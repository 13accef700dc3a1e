"""Video: tracking by alignment plus One-Euro smoothing.

Each tracked face is re-cropped in the next frame from its previous landmarks (our landmark crop rule,
``crop.box_from_landmarks``), so the detector runs only when there is nothing to track, when a track is lost
(its landmarks collapse below ``min_face`` px or leave the frame), and every ``redetect_every`` frames to pick
up newcomers (detections overlapping a track, IoU > 0.3, are ignored). Tracks keep their order (oldest first).

Smoothing (per track): the 68 ``landmarks_3d`` through a One-Euro filter (pixels), the rotation's 9 entries
through another, projected back to the nearest rotation (SVD); the dense vertices are shifted by the mean
landmark correction. Tracking always uses the raw landmarks, so smoothing adds no drift.
On tracked frames ``Face.bbox`` is the bounding box of the 68 landmarks and ``score`` the last detection score.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from dsfnet.crop import box_from_detection, box_from_landmarks
from dsfnet.geometry.rotation import nearest_rotation
from dsfnet.inference.face import Face, pose_dict
from dsfnet.inference.smoothing import OneEuroFilter
from dsfnet.io import read_image

__all__ = ["FaceTracker"]


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _landmark_box(points: np.ndarray) -> np.ndarray:
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    return np.concatenate([lo, hi])


@dataclass
class _Track:
    landmarks: np.ndarray
    score: float
    lmk_filter: OneEuroFilter
    rot_filter: OneEuroFilter
    age: int = 0
    extra: dict = field(default_factory=dict)


class FaceTracker:
    """Track and align faces through a video with a :class:`~dsfnet.inference.FaceAligner`.

    Args:
        aligner: the aligner (needs a detector unless ``boxes`` are given to :meth:`update`).
        smooth: apply One-Euro smoothing.
        min_cutoff, beta: landmark filter parameters (Hz; per px/s). rot_min_cutoff, rot_beta: rotation filter.
        redetect_every: also run the detector every this many frames (0 = only when nothing is tracked).
        max_faces: keep at most this many tracks (None = all).
        min_face: a track whose landmark box side is below this (px) is lost.
    """

    def __init__(self, aligner, *, smooth: bool = True, min_cutoff: float = 1.0, beta: float = 0.05,
                 rot_min_cutoff: float = 1.0, rot_beta: float = 0.5, redetect_every: int = 0,
                 max_faces: int | None = None, min_face: float = 8.0) -> None:
        self.aligner = aligner
        self.smooth = smooth
        self._params = (min_cutoff, beta, rot_min_cutoff, rot_beta)
        self.redetect_every = int(redetect_every)
        self.max_faces = max_faces
        self.min_face = float(min_face)
        self.tracks: list[_Track] = []
        self.frame_index = 0
        self.detections_run = 0

    def reset(self) -> None:
        self.tracks = []
        self.frame_index = 0

    def _new_track(self, face: Face) -> _Track:
        mc, b, rmc, rb = self._params
        return _Track(face.landmarks_2d.copy(), face.score, OneEuroFilter(mc, b), OneEuroFilter(rmc, rb))

    def _lost(self, face: Face, width: int, height: int) -> bool:
        box = _landmark_box(face.landmarks_2d)
        side = min(box[2] - box[0], box[3] - box[1])
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return not np.isfinite(box).all() or side < self.min_face or not (0 <= cx < width and 0 <= cy < height)

    def update(self, frame, t: float, boxes=None) -> list[Face]:
        """Align the faces of one frame taken at time ``t`` (seconds); returns them in track order."""
        img = read_image(frame)
        h, w = img.shape[:2]
        pairs: list[tuple[_Track, Face]] = []
        if self.tracks:
            crops = [box_from_landmarks(tr.landmarks) for tr in self.tracks]
            faces = self.aligner.align_crops(img, crops, [_landmark_box(tr.landmarks) for tr in self.tracks],
                                             [tr.score for tr in self.tracks])
            for tr, f in zip(self.tracks, faces):
                if not self._lost(f, w, h):
                    pairs.append((tr, f))
        due = self.redetect_every > 0 and self.frame_index % self.redetect_every == 0
        if boxes is not None or not pairs or due:
            if boxes is not None:
                new = self.aligner.predict(img, boxes=boxes)
            elif self.aligner.detector is not None:
                self.detections_run += 1
                dets = self.aligner.detector.detect(img)
                tracked = [_landmark_box(f.landmarks_2d) for _, f in pairs]
                dets = [d for d in dets if all(_box_iou(d.box, t_) <= 0.3 for t_ in tracked)]
                cal = self.aligner.detector.calibration
                new = self.aligner.align_crops(img, [box_from_detection(d.box, cal) for d in dets],
                                               [d.box for d in dets], [d.score for d in dets])
            else:
                new = []
            if boxes is not None:
                pairs = []  # given boxes define the faces of this frame
            for f in new:
                pairs.append((self._new_track(f), f))
        if self.max_faces is not None:
            pairs = pairs[: self.max_faces]
        self.tracks = []
        out = []
        for tr, f in pairs:
            tr.landmarks = f.landmarks_2d.copy()
            tr.age += 1
            self.tracks.append(tr)
            out.append(self._smoothed(tr, f, t) if self.smooth else f)
        self.frame_index += 1
        return out

    def _smoothed(self, tr: _Track, f: Face, t: float) -> Face:
        lmk = tr.lmk_filter(f.landmarks_3d, t)
        rot = nearest_rotation(tr.rot_filter(f.rotation, t))
        shift = (lmk - f.landmarks_3d).mean(axis=0)
        return replace(f, landmarks_3d=lmk, landmarks_2d=lmk[:, :2].copy(), vertices=f.vertices + shift,
                       pose=pose_dict(rot))
