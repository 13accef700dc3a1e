"""68-point landmarks from dlib's shape predictor, for pseudo-label fusion (``docs/training.md``, fused labels).

Runs in its own environment, never in dsfnet's (dlib's predictor is a separate labelling tool, not a dependency)::

    python -m venv .venv-label
    .venv-label/bin/pip install dlib-bin==20.0.1.post1 face-recognition-models==0.3.0 numpy pillow
    .venv-label/bin/python scripts/label_dlib.py requests.jsonl --out dlib.jsonl

``requests.jsonl``: one ``{"image": PATH, "hint": [x0, y0, x1, y1]}`` per face, ``hint`` the box of that face's 68
landmarks from another source (image px), used to pick the detection and, where dlib's HOG detector finds no face,
to place a box of dlib's convention (the median detection-vs-hint relation of the faces it did find).
Output: one ``{"image", "pts68" (68 x [x, y] image px, x right, y down, 2D/300-W convention), "box", "detected"}``
per request, in order. The predictor (``face-recognition-models``) was trained on iBUG 300-W: research use only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = np.maximum(a[:2], b[:2])
    x1, y1 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / union) if union > 0 else 0.0


def _relation(det: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """(dx, dy, scale): detection centre offset in hint sides and side ratio."""
    side = np.sqrt(np.prod(hint[2:] - hint[:2]))
    c_det, c_hint = (det[:2] + det[2:]) / 2, (hint[:2] + hint[2:]) / 2
    return np.array([*(c_det - c_hint) / side, np.sqrt(np.prod(det[2:] - det[:2])) / side])


def _box_from(hint: np.ndarray, rel: np.ndarray) -> np.ndarray:
    side = np.sqrt(np.prod(hint[2:] - hint[:2]))
    c = (hint[:2] + hint[2:]) / 2 + rel[:2] * side
    half = rel[2] * side / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def main(argv: list[str] | None = None) -> int:
    import dlib
    import face_recognition_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("requests", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--min-iou", type=float, default=0.3, help="a detection belongs to the hint above this IoU")
    args = ap.parse_args(argv)
    reqs = [json.loads(line) for line in args.requests.read_text().splitlines() if line.strip()]
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    images, boxes, rels = [], [], []
    for r in reqs:  # pass 1: detections of dlib's own convention where the HOG detector finds the face
        img = np.asarray(Image.open(r["image"]).convert("RGB"))
        hint = np.asarray(r["hint"], dtype=np.float64)
        up = 2 if max(img.shape[:2]) < 300 else 1
        best, best_iou = None, args.min_iou
        for d in detector(img, up):
            det = np.array([d.left(), d.top(), d.right(), d.bottom()], dtype=np.float64)
            iou = _iou(det, hint)
            if iou > best_iou:
                best, best_iou = det, iou
        if best is not None:
            rels.append(_relation(best, hint))
        images.append(img)
        boxes.append(best)
    rel = np.median(np.array(rels), axis=0) if rels else np.array([0.0, 0.0, 1.0])
    print(f"dlib: {len(rels)}/{len(reqs)} faces detected; fallback relation {np.round(rel, 4).tolist()}", file=sys.stderr)
    tmp = args.out.with_name(args.out.name + ".part")
    with tmp.open("w") as f:
        for r, img, det in zip(reqs, images, boxes):
            box = det if det is not None else _box_from(np.asarray(r["hint"], dtype=np.float64), rel)
            k = max(1, int(np.ceil(400 / max(img.shape[:2]))))  # dlib returns integer px: predict on an upscaled copy
            big = np.asarray(Image.fromarray(img).resize((img.shape[1] * k, img.shape[0] * k), Image.BICUBIC)) if k > 1 else img
            rect = dlib.rectangle(*[int(round(v * k + (k - 1) / 2)) for v in box])
            shape = predictor(big, rect)
            pts = [[(shape.part(i).x - (k - 1) / 2) / k, (shape.part(i).y - (k - 1) / 2) / k] for i in range(68)]
            f.write(json.dumps({"image": r["image"], "pts68": pts, "box": np.round(box, 2).tolist(),
                                "detected": det is not None}) + "\n")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
