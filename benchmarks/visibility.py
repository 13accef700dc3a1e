"""Landmark visibility on real and synthetic occlusion (a script, not a test; needs ``../shared``).

Three measurements, each for the current definition (:mod:`dsfnet.inference.visibility`: z-buffer self-visibility ×
external visibility read in a neighbourhood, the jaw inside the outline) and, from the same network outputs in the
same run, the previous read-out (the same self-visibility × ``seg`` bilinearly read at the point itself), so the ratio
is like for like:

1. ``facemask/with_mask`` (real masks; every ``--stride``-th image, largest detected face): share of mouth points
   48–67 reported hidden (visibility < 0.5). Target ≥ 90%.
2. ``facemask/without_mask`` (every ``--stride``-th image, faces with |yaw| < 30°): share of mouth points 48–67 and
   of jaw points 3–13 reported visible. Targets ≥ 95% each.
3. Synthetic occlusion of faces of people the model never saw: the annotated ``ytf68/test`` frames of the held-out
   identities (:func:`dsfnet.data.sources.identity_split`), crops from the annotations, the evaluation occluders
   (:func:`dsfnet.eval.occlusion.occlude`, a family the training never uses) at 20/30/40% of the landmark box; a
   landmark is occluded when its annotated pixel is under the occluder. ROC AUC of ``1 − visibility``. Target ≥ 0.95.

``facemask/with_mask`` is a check, never a tuning set: nothing in the decoder or the occluder generator is chosen on it.

    python benchmarks/visibility.py [--weights FILE] [--stride 10] [--shared ../shared] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

MOUTH = np.arange(48, 68)
JAW = np.arange(3, 14)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann–Whitney U with mid-ranks for ties)."""
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # mid-ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _both_visibilities(aligner, image: np.ndarray, crop_box: np.ndarray, bbox) -> tuple:
    """(face, new visibility, previous visibility) of one crop, from one network call."""
    from dsfnet.crop import crop_matrix, transform_points, warp_image
    from dsfnet.inference.aligner import decode_face
    from dsfnet.inference.visibility import sample_bilinear

    size = int(aligner.runner.input_size)
    out = aligner.runner(warp_image(image, crop_matrix(crop_box, size), size)[None])
    face = decode_face(out, 0, crop_box, aligner.codec, aligner.triangles, bbox=bbox, score=1.0,
                       visibility_tolerance=aligner.visibility_tolerance)
    lmk_crop = transform_points(face.landmarks_2d, crop_matrix(crop_box, size))
    seg = np.asarray(out["seg"][0], dtype=np.float64).reshape(size, size)
    previous = face.self_visibility * np.clip(sample_bilinear(seg, lmk_crop), 0.0, 1.0)
    return face, face.visibility, previous


def _detect_largest(aligner, image):
    from dsfnet.crop import box_from_detection

    dets = aligner.detector.detect(image)
    if not dets:
        return None
    d = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
    return box_from_detection(d.box, aligner.detector.calibration), d.box


def real_masks(aligner, root: Path, stride: int) -> dict:
    from dsfnet.io import read_image

    res = {}
    for cls in ("with_mask", "without_mask"):
        files = sorted((root / cls).glob("*.jpg"))[::stride]
        rows = {"new": [], "previous": []}
        yaws, n_faces = [], 0
        for f in files:
            img = read_image(f)
            found = _detect_largest(aligner, img)
            if found is None:
                continue
            face, new, prev = _both_visibilities(aligner, img, *found)
            n_faces += 1
            yaws.append(face.pose["yaw"])
            rows["new"].append(new)
            rows["previous"].append(prev)
        yaw = np.abs(np.array(yaws))
        entry = {"images": len(files), "faces": n_faces}
        for k, v in rows.items():
            v = np.array(v).reshape(-1, 68)
            if cls == "with_mask":
                entry[k] = {"mouth_hidden": float((v[:, MOUTH] < 0.5).mean())}
            else:
                frontal = v[yaw < 30]
                entry[k] = {"frontal_faces": int(len(frontal)),
                            "mouth_visible": float((frontal[:, MOUTH] >= 0.5).mean()),
                            "jaw_visible": float((frontal[:, JAW] >= 0.5).mean()),
                            "max_visibility": float(v.max())}
        res[cls] = entry
    return res


def synthetic(aligner, ytf68: Path, coverages=(0.2, 0.3, 0.4)) -> dict:
    from dsfnet.crop import box_from_landmarks
    from dsfnet.data.sources import identity_split
    from dsfnet.eval.occlusion import occlude
    from dsfnet.io import read_image

    recs = [json.loads(line) for line in (ytf68 / "landmarks.jsonl").read_text().splitlines() if line.strip()]
    recs = [r for r in recs if r["split"] == "test" and identity_split(r["identity"], 0.1) == "val"]
    out = {"faces": len(recs)}
    for cov in coverages:
        scores = {"new": [], "previous": []}
        labels = []
        for i, r in enumerate(recs):
            img = read_image(ytf68 / r["image"])
            pts = np.asarray(r["pts68"], dtype=np.float64)
            box = [pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()]
            occ_img, mask = occlude(img, box, cov, seed=1000 + i)
            ij = np.clip(np.round(pts).astype(int), 0, [img.shape[1] - 1, img.shape[0] - 1])
            labels.append(mask[ij[:, 1], ij[:, 0]])
            _, new, prev = _both_visibilities(aligner, occ_img, box_from_landmarks(pts), box)
            scores["new"].append(1 - new)
            scores["previous"].append(1 - prev)
        y = np.concatenate(labels)
        out[f"{cov:.0%}"] = {"occluded_share": float(y.mean()),
                             **{k: {"auc": roc_auc(np.concatenate(v), y),
                                    "accuracy": float(((np.concatenate(v) > 0.5) == y).mean())}
                                for k, v in scores.items()}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default=None, help="lite checkpoint (default: the packaged weights)")
    ap.add_argument("--stride", type=int, default=10, help="every N-th facemask image")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from dsfnet import FaceAligner

    shared = Path(args.shared) / "data"
    if not (shared / "facemask").is_dir():
        print(f"no {shared / 'facemask'}: this benchmark needs ../shared", file=sys.stderr)
        return 2
    aligner = FaceAligner(weights=args.weights)
    res = {"real": real_masks(aligner, shared / "facemask", args.stride)}
    if not args.skip_synthetic:
        res["synthetic"] = synthetic(aligner, shared / "ytf68")
    w, wo = res["real"]["with_mask"], res["real"]["without_mask"]
    print(f"with_mask ({w['faces']} faces): mouth hidden  new {w['new']['mouth_hidden']:.1%}  "
          f"previous {w['previous']['mouth_hidden']:.1%}   (target >= 90%)")
    for k in ("new", "previous"):
        e = wo[k]
        print(f"without_mask |yaw|<30 ({e['frontal_faces']} faces), {k:8s}: mouth visible {e['mouth_visible']:.1%}, "
              f"jaw 3-13 visible {e['jaw_visible']:.1%}, max visibility {e['max_visibility']:.2f}   (targets >= 95%)")
    for cov, e in res.get("synthetic", {}).items():
        if cov == "faces":
            continue
        print(f"synthetic {cov} ({res['synthetic']['faces']} held-out faces, {e['occluded_share']:.1%} of points "
              f"occluded): AUC new {e['new']['auc']:.3f} previous {e['previous']['auc']:.3f}  ratio "
              f"{e['new']['auc'] / e['previous']['auc']:.3f}   (target >= 0.95)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
