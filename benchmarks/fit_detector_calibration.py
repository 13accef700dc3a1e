"""Fit a detector's box-to-crop calibration on faces with 68 landmarks (a script, not a test).

For each ytf68 face with landmarks (``<shared>/data/ytf68/landmarks.jsonl``) the detector runs on the
frame; the detection overlapping the landmark box most (IoU > 0.3) is matched. The target is our crop
rule ``crop.box_from_landmarks(pts68, 1.5)``: centre ``c*``, side ``S*``. With the detection's centre
``c`` and size ``s = (w + h)/2`` the calibration is

    side_scale = median(S* / s),  center_shift = median((c* − c) / s)   (x and y separately)

fitted on the ``training`` split and evaluated (IoU of the calibrated crop with the landmark crop, centre
error and side ratio) on the ``test`` split, against the uncalibrated default (1.5, 0, 0).

    python benchmarks/fit_detector_calibration.py [--shared ../shared] [--detector yuface] [--stride 1]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from dsfnet.crop import BoxCalibration, box_from_detection, box_from_landmarks
from dsfnet.detect import create_detector
from dsfnet.io import read_image


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def collect(shared: Path, detector_name: str, stride: int) -> list[dict]:
    det = create_detector(detector_name)
    root = shared / "data" / "ytf68"
    recs = [json.loads(line) for line in open(root / "landmarks.jsonl")][::stride]
    rows, missed, t0 = [], 0, time.time()
    for r in recs:
        img = read_image(root / r["image"])
        pts = np.asarray(r["pts68"], dtype=np.float64)
        lo, hi = pts.min(0), pts.max(0)
        lbox = np.array([lo[0], lo[1], hi[0], hi[1]])
        dets = det.detect(img)
        best = max(dets, key=lambda d: iou(d.box, lbox), default=None)
        if best is None or iou(best.box, lbox) < 0.3:
            missed += 1
            continue
        b = best.box
        s = ((b[2] - b[0]) + (b[3] - b[1])) / 2
        target = box_from_landmarks(pts, 1.5)
        rows.append({
            "split": r["split"], "box": b, "target": target,
            "ratio": (target[2] - target[0]) / s,
            "dx": ((target[0] + target[2]) / 2 - (b[0] + b[2]) / 2) / s,
            "dy": ((target[1] + target[3]) / 2 - (b[1] + b[3]) / 2) / s,
        })
    print(f"{len(recs)} faces, {len(rows)} matched, {missed} missed, {time.time() - t0:.0f} s")
    return rows


def evaluate(rows: list[dict], cal: BoxCalibration) -> dict:
    ious, cerr, sratio = [], [], []
    for r in rows:
        c = box_from_detection(r["box"], cal)
        t = r["target"]
        side = t[2] - t[0]
        ious.append(iou(c, t))
        cerr.append(np.hypot((c[0] + c[2] - t[0] - t[2]) / 2, (c[1] + c[3] - t[1] - t[3]) / 2) / side)
        sratio.append((c[2] - c[0]) / side)
    ious, cerr, sratio = map(np.asarray, (ious, cerr, sratio))
    return {
        "iou_mean": ious.mean(), "iou_p10": np.percentile(ious, 10),
        "centre_err_median_of_side": np.median(cerr), "centre_err_p90_of_side": np.percentile(cerr, 90),
        "side_ratio_median": np.median(sratio), "side_ratio_iqr": np.subtract(*np.percentile(sratio, [75, 25])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--detector", default="yuface")
    ap.add_argument("--stride", type=int, default=1, help="use every n-th face (speed)")
    args = ap.parse_args()
    rows = collect(args.shared, args.detector, args.stride)
    train = [r for r in rows if r["split"] == "training"]
    test = [r for r in rows if r["split"] == "test"]
    fit = {k: float(np.median([r[k] for r in train])) for k in ("ratio", "dx", "dy")}
    spread = {k: float(np.subtract(*np.percentile([r[k] for r in train], [75, 25]))) for k in ("ratio", "dx", "dy")}
    cal = BoxCalibration(side_scale=round(fit["ratio"], 3), center_shift_x=round(fit["dx"], 3), center_shift_y=round(fit["dy"], 3))
    print(f"fitted on {len(train)} training faces: {cal}  (IQR ratio {spread['ratio']:.3f}, dx {spread['dx']:.3f}, dy {spread['dy']:.3f})")
    for name, c in (("default 1.5/0/0", BoxCalibration()), ("fitted", cal)):
        for split, rs in (("training", train), ("test", test)):
            m = evaluate(rs, c)
            print(f"  {name:16s} {split:8s} n={len(rs):4d} " + " ".join(f"{k}={v:.3f}" for k, v in m.items()))


if __name__ == "__main__":
    main()
