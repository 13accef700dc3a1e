"""Run predictors over an AFLW2000-3D-style folder, collect per-image errors, summarise, print, save, plot.

Protocol (per image, per occlusion coverage, per predictor):

1. Optionally paste synthetic occluders over ``coverage`` of the GT landmarks' box (:mod:`dsfnet.eval.occlusion`;
   seed ``seed·100003 + image index``: the same occluders for every predictor, nested across coverages).
2. ``predictor.predict_from_landmarks(image, gt_landmarks[:, :2])`` (each predictor applies its own crop rule).
3. Errors: 68-point 2D NME vs ``pt3d_68`` (and vs the re-annotated points when present); dense 3D / 2D NME and
   ``rec`` over the face-region vertices when the predictor returns a mesh in our face model's vertex order;
   head-pose errors when it returns a rotation.

Summary numbers are **percent** for NME / rec (keys end in ``_pct``) and **degrees** for pose. Yaw bins use
|GT yaw|: [0,30], (30,60], (60,90] (the last also holds |yaw| > 90); empty bins are ``null`` in JSON, ``-`` in
tables, and excluded from the balanced mean (listed in ``empty_bins``). Pose MAE excludes images with any
|GT angle| > 99°, with no wrap-around.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dsfnet.eval import metrics
from dsfnet.eval.occlusion import occlude
from dsfnet.geometry import matrix_to_pose_para
from dsfnet.geometry.boxes import box_coverage
from dsfnet.io.writers import atomic_write_bytes

SWEEP_COVERAGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
_SEED_STRIDE = 100003


def _pct(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else 100.0 * x


def _mean_or_none(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def evaluate_image(predictor, sample, image: np.ndarray, region: np.ndarray | None, keypoints: np.ndarray | None) -> dict:
    """Errors of one prediction (fractions and degrees; ``None`` where not applicable)."""
    if hasattr(predictor, "set_ground_truth"):
        predictor.set_ground_truth(sample)
    t0 = time.perf_counter()
    pred = predictor.predict_from_landmarks(image, sample.landmarks[:, :2])
    seconds = time.perf_counter() - t0
    rec: dict = {"name": sample.name, "yaw_gt": float(sample.pose_deg[1]), "seconds": seconds,
                 "nme_2d": metrics.nme_2d(pred.landmarks, sample.landmarks)}
    rec["nme_2d_reannotated"] = (metrics.nme_2d(pred.landmarks, sample.landmarks_reannotated)
                                 if sample.landmarks_reannotated is not None else None)
    rec["dense_nme_3d"] = rec["dense_nme_2d"] = rec["rec"] = None
    if (pred.vertices is not None and sample.vertices is not None and region is not None
            and len(pred.vertices) == len(sample.vertices)):
        pv, gv = np.asarray(pred.vertices, dtype=np.float64), sample.vertices
        rec["dense_nme_3d"], rec["dense_nme_2d"] = metrics.dense_nme(pv[region], gv[region])
        rec["rec"] = metrics.reconstruction_nme(pv[region], gv[region], gv[keypoints])
    if pred.rotation is not None:
        angles = np.degrees(matrix_to_pose_para(pred.rotation))
        rec["pose_pred_deg"] = angles.tolist()
        rec["pose_err_deg"] = metrics.pose_errors(angles, sample.pose_deg)[0].tolist()
    else:
        rec["pose_pred_deg"] = rec["pose_err_deg"] = None
    rec["pose_gt_deg"] = sample.pose_deg.tolist()
    return rec


def summarise(records: list[dict]) -> dict:
    """Aggregate per-image records of one (predictor, coverage) run (percent and degrees)."""
    yaw = np.array([r["yaw_gt"] for r in records])
    out: dict = {"n_images": len(records)}
    for key in ("nme_2d", "nme_2d_reannotated"):
        vals = [r[key] for r in records]
        if any(v is None for v in vals):
            out[key] = None
            continue
        b = metrics.binned_mean(vals, yaw)
        out[key] = {"bins_pct": {n: _pct(m) for n, m in zip(metrics.YAW_BIN_NAMES, b.bins)},
                    "counts": dict(zip(metrics.YAW_BIN_NAMES, b.counts)),
                    "balanced_pct": _pct(b.balanced), "mean_pct": _pct(b.overall),
                    "empty_bins": list(b.empty_bins)}
    for key in ("dense_nme_3d", "dense_nme_2d", "rec"):
        out[key + "_pct"] = _pct(_mean_or_none([r[key] for r in records]))
    with_pose = [r for r in records if r["pose_pred_deg"] is not None]
    if with_pose:
        m = metrics.pose_mae([r["pose_pred_deg"] for r in with_pose], [r["pose_gt_deg"] for r in with_pose])
        out["pose_mae_deg"] = {"pitch": m.pitch, "yaw": m.yaw, "roll": m.roll, "mean": m.mean,
                               "n_used": m.n_used, "n_excluded": m.n_excluded,
                               "bias": {"pitch": m.bias[0], "yaw": m.bias[1], "roll": m.bias[2]}}
    else:
        out["pose_mae_deg"] = None
    out["seconds_per_image"] = float(np.mean([r["seconds"] for r in records])) if records else None
    return out


def run(predictors: Sequence, dataset, coverages: Sequence[float] = (0.0,), seed: int = 0,
        log: Callable[[str], None] | None = None) -> dict:
    """Evaluate every predictor at every occlusion coverage on ``dataset`` (an ``AFLW2000Folder``).

    Returns:
        A JSON-ready dict: ``runs`` (one per predictor × coverage, each with ``summary`` and ``per_image``),
        plus the protocol notes.
    """
    names = [p.name for p in predictors]
    if len(set(names)) != len(names):
        raise ValueError(f"predictor names must be unique, got {names}")
    region = dataset.region
    keypoints = np.asarray(dataset.face_model.keypoints) if dataset.face_model is not None else None
    per: dict[tuple[str, float], list[dict]] = {(n, c): [] for n in names for c in coverages}
    sources = set()
    for i, sample in enumerate(dataset):
        sources.add(sample.landmark_source)
        for cov in coverages:
            if cov > 0:
                image, mask = occlude(sample.image, sample.face_box, cov, seed * _SEED_STRIDE + i)
                measured = box_coverage(mask, sample.face_box)
            else:
                image, measured = sample.image, 0.0
            for p in predictors:
                rec = evaluate_image(p, sample, image, region, keypoints)
                rec["coverage_measured"] = measured
                per[(p.name, cov)].append(rec)
        if log:
            log(f"[{i + 1}/{len(dataset)}] {sample.name}")
    runs = [{"predictor": n, "coverage": float(c), "summary": summarise(per[(n, c)]), "per_image": per[(n, c)]}
            for n in names for c in coverages]
    return {
        "dataset": str(dataset.folder), "n_images": len(dataset), "coverages": [float(c) for c in coverages],
        "seed": seed, "landmark_source": sorted(sources),
        "notes": {
            "nme_2d": "68-point mean x-y error / sqrt(w*h) of the GT landmark box, percent; GT = pt3d_68",
            "yaw_bins": "|GT yaw| in [0,30], (30,60], (60,90] (last bin also holds |yaw|>90); empty bins are null "
                        "and excluded from balanced_pct",
            "dense": dataset.dense_note or "no face model: dense metrics not computed",
            "dense_nme": "as DSFNet's evaluation code: own mean z removed, mean distance / sqrt(x-y box area of the GT face region)",
            "rec": "as DSFNet's evaluation code: similarity-aligned (scale from summed distances to the first point, no reflection "
                   "check), mean 3-D distance / GT outer-eye-corner distance (36-45), percent",
            "pose": "Pose_Para pitch/yaw/roll degrees; images with any |GT angle| > 99 excluded; no wrap-around",
            "occlusion": "synthetic occluders over the given fraction of the GT landmark box, seed*100003+index",
        },
        "runs": runs,
    }


# ------------------------------------------------------------------------------------------------ output

def _fmt(x, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def format_table(results: dict) -> str:
    """A plain-text table of every run (NME and rec in percent, pose in degrees)."""
    head = ["predictor", "occl%", "NME[0,30]", "(30,60]", "(60,90]", "balanced", "mean", "reannot",
            "dense3D", "dense2D", "rec", "yaw", "pitch", "roll", "MAE"]
    rows = [head]
    empty = set()
    for r in results["runs"]:
        s = r["summary"]
        n = s["nme_2d"]
        b = n["bins_pct"]
        empty.update(n["empty_bins"])
        ra = s["nme_2d_reannotated"]
        pm = s["pose_mae_deg"] or {}
        rows.append([r["predictor"], f"{100 * r['coverage']:.0f}", *(_fmt(b[k]) for k in metrics.YAW_BIN_NAMES),
                     _fmt(n["balanced_pct"]), _fmt(n["mean_pct"]), _fmt(ra["mean_pct"] if ra else None),
                     _fmt(s["dense_nme_3d_pct"]), _fmt(s["dense_nme_2d_pct"]), _fmt(s["rec_pct"]),
                     _fmt(pm.get("yaw")), _fmt(pm.get("pitch")), _fmt(pm.get("roll")), _fmt(pm.get("mean"))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    first = results["runs"][0]["summary"] if results["runs"] else None
    counts = first["nme_2d"]["counts"] if first else {}
    foot = [f"{results['n_images']} images; yaw-bin counts {counts}; NME/rec in %, pose MAE in degrees "
            f"(used {first['pose_mae_deg']['n_used'] if first and first['pose_mae_deg'] else 0}, |angle|>99 excluded)."]
    bias = [(r["predictor"], 100 * r["coverage"], (r["summary"]["pose_mae_deg"] or {}).get("bias")) for r in results["runs"]]
    bias = [f"{p} {c:.0f}%: " + "/".join(_fmt(b[k]) for k in ("pitch", "yaw", "roll")) for p, c, b in bias if b and c == 0]
    if bias:
        foot.append("pose bias (mean signed pred - GT, pitch/yaw/roll, degrees): " + "; ".join(bias) + ".")
    if empty:
        foot.append(f"empty yaw bins {sorted(empty)}: shown as '-' and excluded from 'balanced'.")
    foot.append("dense: " + results["notes"]["dense"])
    return "\n".join(lines + foot)


def to_jsonable(obj):
    """Replace non-finite floats by ``None`` and numpy types by Python ones (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(results: dict, path: str | Path) -> None:
    """Write ``results`` as strict JSON (NaN → null), atomically."""
    atomic_write_bytes(Path(path), json.dumps(to_jsonable(results), indent=1, allow_nan=False).encode())


def plot_results(results: dict, path: str | Path) -> None:
    """PNG: CED curves of the 68-point NME (one occlusion level) or mean NME vs coverage (a sweep). cv2 only."""
    from dsfnet.eval.plot import LinePlot

    runs = results["runs"]
    coverages = results["coverages"]
    if len(coverages) > 1:
        plot = LinePlot("68-point NME under synthetic occlusion", "occluded fraction of the face box (%)",
                        "NME (%)")
        for name in dict.fromkeys(r["predictor"] for r in runs):
            mine = [r for r in runs if r["predictor"] == name]
            xs = [100 * r["coverage"] for r in mine]
            plot.add(f"{name} 2D NME", xs, [r["summary"]["nme_2d"]["mean_pct"] for r in mine], markers=True)
            dense = [r["summary"]["dense_nme_3d_pct"] for r in mine]
            if all(d is not None for d in dense):
                plot.add(f"{name} dense 3D NME", xs, dense, markers=True, dashed=True)
    else:
        errs = [100 * e["nme_2d"] for r in runs for e in r["per_image"]]
        top = max(10.0, math.ceil(max(errs, default=1.0) * 1.05)) if errs else 10.0
        plot = LinePlot("Cumulative error distribution, 68 points (AFLW2000-3D protocol)", "NME (%)",
                        "fraction of images", y_range=(0.0, 1.0), legend="bottom-right")
        for r in runs:
            x, y = metrics.ced_curve([100 * e["nme_2d"] for e in r["per_image"]], top, 300)
            label = r["predictor"] + (f" (occl. {100 * r['coverage']:.0f}%)" if r["coverage"] else "")
            plot.add(f"{label}: mean {r['summary']['nme_2d']['mean_pct']:.2f}%", x, y)
    ok, buf = plot.encode_png()
    if not ok:
        raise RuntimeError("could not encode the plot as PNG")
    atomic_write_bytes(Path(path), buf)
