"""User-supplied boxes instead of a detector (``--boxes BOXES.json`` or ``predict(image, boxes=...)``).

``BOXES.json`` maps an image (the path as given on the command line, or its file name) to a list of boxes
``[x0, y0, x1, y1]`` in image pixels, or to objects ``{"box": [x0, y0, x1, y1], "score": s}``::

    {"photos/a.jpg": [[10, 20, 110, 140]], "b.png": [{"box": [5, 5, 60, 70], "score": 0.9}]}

Faces keep the order of the given boxes (all scores default to 1.0 and the sort is stable).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from dsfnet.crop import BoxCalibration
from dsfnet.detect.base import Detection, FaceDetector

__all__ = ["BoxesDetector", "check_boxes_in_image", "load_boxes_file", "parse_boxes"]

#: smallest box side and largest |coordinate| accepted, image px (smaller or larger boxes are input errors)
MIN_BOX_SIDE = 2.0
MAX_BOX_COORD = 1e6


def parse_boxes(boxes: Any, where: str = "boxes") -> list[Detection]:
    """Turn a list of boxes (``[x0, y0, x1, y1]`` or ``{"box": [...], "score": s}``) or an ``(N, 4)`` array into detections."""
    if isinstance(boxes, np.ndarray):
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{where}: expected an (N, 4) array of [x0, y0, x1, y1], got shape {boxes.shape}")
        boxes = boxes.tolist()
    if not isinstance(boxes, (list, tuple)):
        raise ValueError(f"{where}: expected a list of boxes [x0, y0, x1, y1], got {type(boxes).__name__}")
    out = []
    for i, item in enumerate(boxes):
        score = 1.0
        if isinstance(item, Mapping):
            if "box" not in item:
                raise ValueError(f"{where}[{i}]: an object needs a 'box' key, got keys {sorted(item)}")
            score = item.get("score", 1.0)
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not np.isfinite(score):
                raise ValueError(f"{where}[{i}]: 'score' must be a finite number, got {score!r}")
            score = float(score)
            item = item["box"]
        if isinstance(item, Detection):
            out.append(item)
            continue
        try:
            b = np.asarray(item, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"{where}[{i}]: expected 4 numbers [x0, y0, x1, y1], got {str(item)[:80]}") from exc
        if b.shape != (4,) or not np.isfinite(b).all():
            raise ValueError(f"{where}[{i}]: expected 4 finite numbers [x0, y0, x1, y1], got {item!r}")
        if not (b[2] > b[0] and b[3] > b[1]):
            raise ValueError(f"{where}[{i}]: a box needs x1 > x0 and y1 > y0, got {b.tolist()}")
        if min(b[2] - b[0], b[3] - b[1]) < MIN_BOX_SIDE or np.abs(b).max() > MAX_BOX_COORD:
            raise ValueError(f"{where}[{i}]: a face box needs sides >= {MIN_BOX_SIDE:g} px and coordinates within "
                             f"±{MAX_BOX_COORD:g} px, got {b.tolist()}")
        out.append(Detection(b, score))
    return out


def check_boxes_in_image(detections: Sequence[Detection], width: int, height: int, where: str = "boxes") -> None:
    """Raise ValueError naming the first box that does not overlap the ``width`` × ``height`` image at all."""
    for i, d in enumerate(detections):
        x0, y0, x1, y1 = (float(v) for v in d.box[:4])
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise ValueError(f"{where}[{i}]: box {[x0, y0, x1, y1]} lies wholly outside the {width}x{height} image")


def load_boxes_file(path: str | os.PathLike) -> dict[str, list[Detection]]:
    """Read ``BOXES.json`` (see the module docstring) into ``{image key: [Detection, ...]}``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"boxes file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"boxes file {p} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise ValueError(f"boxes file {p} is nested too deeply to be a boxes file") from None
    if not isinstance(data, dict):
        raise ValueError(f"boxes file {p} must hold an object {{image: [[x0, y0, x1, y1], ...]}}, got {type(data).__name__}")
    return {str(k): parse_boxes(v, f"{p.name}[{k!r}]") for k, v in data.items()}


class BoxesDetector(FaceDetector):
    """A "detector" that returns given boxes.

    Args:
        boxes: either a list of boxes used for every image, or a mapping ``{image key: boxes}`` (then call
            :meth:`lookup` with the image's key, or :meth:`detect` returns nothing).
        calibration: how these boxes relate to our crop; the default (side 1.5x, no shift) is right for
            boxes that are the bounding box of the 68 landmarks.
    """

    name = "boxes"

    def __init__(self, boxes: Sequence | Mapping | None = None, calibration: BoxCalibration = BoxCalibration()) -> None:
        self.calibration = calibration
        self._fixed: list[Detection] = []
        self._by_key: dict[str, list[Detection]] = {}
        if isinstance(boxes, Mapping):
            self._by_key = {str(k): parse_boxes(v, f"boxes[{k!r}]") for k, v in boxes.items()}
        elif boxes is not None:
            self._fixed = parse_boxes(boxes)

    @classmethod
    def from_file(cls, path: str | os.PathLike, calibration: BoxCalibration = BoxCalibration()) -> "BoxesDetector":
        det = cls(None, calibration)
        det._by_key = load_boxes_file(path)
        return det

    def lookup(self, key: str | os.PathLike) -> list[Detection] | None:
        """Boxes for an image key: exact string, then normalised path, then file name; ``None`` if absent."""
        k = str(key)
        if k in self._by_key:
            return self._by_key[k]
        norm = os.path.normpath(k)
        for cand, dets in self._by_key.items():
            if os.path.normpath(cand) == norm:
                return dets
        name = os.path.basename(k)
        matches = [d for c, d in self._by_key.items() if os.path.basename(c) == name]
        return matches[0] if len(matches) == 1 else None

    def _detect(self, image_rgb: np.ndarray) -> list[Detection]:
        return list(self._fixed)
