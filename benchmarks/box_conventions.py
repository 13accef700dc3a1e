"""Does the result depend on where the box came from? NME per box convention and number of passes (a script).

Faces of people the model never saw: the annotated ``ytf68/test`` frames of the held-out identities
(:func:`dsfnet.data.sources.identity_split`; not the dev set). Reference: the crop cut from the annotation with the
training rule (``FaceAligner.predict_from_landmarks``, the AFLW2000-3D protocol). Boxes, each passed as a user would
(``predict(boxes=...)``, the detector's calibration): yuface's own detection (best IoU with the annotation), the
annotation's tight extent ("landmark extents"), a dlib-style tight box (eyebrows to chin, 0.9x width), and a
COCO-style loose box (extent grown 20%, more upward). Each with 1, 2 and 3 passes (``FaceAligner(passes=...)``).
NME: mean 68-point error / sqrt(w·h) of the annotation's box, in percent (ytf68's 2-D annotations; the ratio to the
reference is the number to read). Prints NME and the ratio to the reference per (convention, passes).

    python benchmarks/box_conventions.py [--shared ../shared] [--limit 150]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def conventions(pts: np.ndarray) -> dict[str, np.ndarray]:
    """Boxes ``[x0, y0, x1, y1]`` of the annotated 68 points in the tested conventions."""
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    w, h = x1 - x0, y1 - y0
    brow = pts[17:27, 1].min()
    return {
        "landmark extents": np.array([x0, y0, x1, y1]),
        "dlib-style tight": np.array([x0 + 0.05 * w, brow, x1 - 0.05 * w, y1]),
        "COCO-style loose": np.array([x0 - 0.1 * w, y0 - 0.3 * h, x1 + 0.1 * w, y1 + 0.1 * h]),
    }


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def nme(pred: np.ndarray, pts: np.ndarray) -> float:
    w, h = pts.max(0) - pts.min(0)
    return float(np.linalg.norm(pred - pts, axis=1).mean() / np.sqrt(w * h))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--limit", type=int, default=150)
    args = ap.parse_args()
    from dsfnet.data.sources import identity_split
    from dsfnet.inference import FaceAligner
    from dsfnet.io import read_image

    ytf68 = args.shared / "data" / "ytf68"
    recs = [json.loads(line) for line in (ytf68 / "landmarks.jsonl").read_text().splitlines() if line.strip()]
    recs = [r for r in recs if r["split"] == "test" and identity_split(r["identity"], 0.1) == "val"]
    recs = recs[:: max(1, len(recs) // args.limit)][: args.limit]
    aligners = {p: FaceAligner(passes=p) for p in (1, 2, 3)}
    errs: dict[str, list[float]] = {}
    for r in recs:
        img = read_image(ytf68 / r["image"])
        pts = np.asarray(r["pts68"], dtype=np.float64)
        errs.setdefault("reference (annotation crop)", []).append(
            nme(aligners[1].predict_from_landmarks(img, pts).landmarks_2d, pts))
        boxes = conventions(pts)
        dets = aligners[1].detect(img)
        if dets:  # yuface's own box for this face: the best IoU with the annotation's extent
            boxes = {"yuface detection": max((d.box for d in dets), key=lambda b: _iou(b, boxes["landmark extents"])),
                     **boxes}
        for name, box in boxes.items():
            for p, al in aligners.items():
                errs.setdefault(f"{name}, {p} pass(es)", []).append(nme(al.predict(img, boxes=[box])[0].landmarks_2d, pts))
    ref = float(np.mean(errs["reference (annotation crop)"]))
    print(f"{len(recs)} held-out faces; NME % (ratio to the annotation crop)")
    for k, v in errs.items():
        print(f"  {k:40s} {100 * np.mean(v):6.3f}  {np.mean(v) / ref:6.3f}")


if __name__ == "__main__":
    main()
