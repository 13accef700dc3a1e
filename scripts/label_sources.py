"""Landmark label sources and their fusion, measured (``docs/training.md``, "Fused labels").

    python scripts/label_sources.py predict --out runs/labels          # teacher (1 pass, TTA) + dlib, all faces
    python scripts/label_sources.py score --labels runs/labels --build runs/ytf68c_pitch
    python scripts/label_sources.py unlabelled --out runs/labels_extra --fusion runs/labels/fusion.json \
        --images ../shared/data/ytf68/test ../shared/data/facemask/without_mask \
        --exclude-annotated ../shared/data/ytf68/landmarks.jsonl

``predict`` runs the 3DDFA_V2 teacher (one pass on the landmark crop; and with test-time augmentation,
:func:`dsfnet.teacher.teacher_tta_landmarks`) on every annotated ytf68 face and the dev images, then dlib's
68-point predictor (``scripts/label_dlib.py`` in ``.venv-label``; boxes hinted by the teacher's landmarks) and writes
``sources.jsonl`` (one line per face: ``group, image, key, identity, annotation, teacher1, teacher_tta, dlib``).

``score`` fits the fusion (the teacher's jaw; on the 51 inner points ``teacher_tta + a_r·(dlib − teacher_tta)`` with
one weight ``a_r`` per region: brows, nose, eyes, mouth, on faces dlib's own detector finds) on ytf68 *training* identities of ``--build`` (its
``items/*.json`` give the identity split), against the annotations moved to the teacher's placement
(``--correction``), and prints every source's NME on: those training faces, the held-out identities' faces, and
the dev images' original and re-annotated landmarks. Weights go to ``fusion.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from dsfnet.geometry import landmarks

ROOT = Path(__file__).resolve().parents[1]
REGIONS = {name: range(68)[part] for name, part in landmarks.REGIONS.items()}
SOURCES = ("teacher1", "teacher_tta", "dlib", "fused")


def _faces(shared: Path) -> list[dict]:
    """Every face with a reference: ytf68 annotated frames (both splits) and the dev images."""
    faces = []
    for line in (shared / "ytf68" / "landmarks.jsonl").read_text().splitlines():
        r = json.loads(line)
        faces.append({"group": f"ytf68_{r['split']}", "image": str(shared / "ytf68" / r["image"]),
                      "key": r["split"] + "__" + Path(r["image"]).stem, "identity": r["identity"],
                      "annotation": r["pts68"]})
    dev = np.load(shared / "aflw2000_dev" / "gt.npz")
    for i, name in enumerate(dev["names"]):
        faces.append({"group": "dev", "image": str(shared / "aflw2000_dev" / str(name)), "key": str(name),
                      "identity": str(name), "annotation": dev["pts68"][i][:2].T.tolist(),
                      "reannotated": dev["pts68_reannotated"][i].T.tolist()})
    return faces


def _run_dlib(faces: list[dict], out: Path, label_python: str) -> None:
    """Run ``scripts/label_dlib.py`` in the labelling environment on ``faces`` (boxes hinted by each face's
    ``teacher_tta`` landmarks); adds ``dlib`` (68 x [x, y]) and ``dlib_detected`` to every face dict."""
    req = out / "dlib_requests.jsonl"
    with req.open("w") as fh:
        for f in faces:
            t = np.asarray(f["teacher_tta"])
            fh.write(json.dumps({"image": f["image"], "hint": [*t.min(0).tolist(), *t.max(0).tolist()]}) + "\n")
    subprocess.run([str(Path(label_python)), str(ROOT / "scripts" / "label_dlib.py"), str(req),
                    "--out", str(out / "dlib.jsonl")], check=True)
    for f, line in zip(faces, (out / "dlib.jsonl").read_text().splitlines()):
        d = json.loads(line)
        f["dlib"], f["dlib_detected"] = d["pts68"], d["detected"]


def predict(args: argparse.Namespace) -> None:
    import torch
    from tqdm import tqdm

    from dsfnet.facemodel.model import load_face_model
    from dsfnet.io.image import read_image
    from dsfnet.teacher import load_teacher, roi_from_landmarks, teacher_tta_landmarks

    torch.set_num_threads(1)  # small batches: more threads only contend with other jobs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    faces = _faces(Path(args.shared))
    teacher = load_teacher(load_face_model(), args.teacher_dir)
    for f in tqdm(faces, desc="teacher"):
        img = read_image(f["image"])
        roi = roi_from_landmarks(np.asarray(f["annotation"]))
        f["teacher1"] = teacher.predict(img, roi).landmarks[:, :2].tolist()
        f["teacher_tta"] = teacher_tta_landmarks(teacher, img, roi)[:, :2].tolist()
    _run_dlib(faces, out, args.label_python)
    with (out / "sources.jsonl").open("w") as fh:
        for f in faces:
            fh.write(json.dumps(f) + "\n")
    print(f"{len(faces)} faces -> {out / 'sources.jsonl'}")


def unlabelled(args: argparse.Namespace) -> None:
    """Fused labels for faces without annotations: a ytf68-style ``landmarks.jsonl`` (absolute image paths, 3D
    convention: build it with ``dsfnet data build OUT --convention 3d``)."""
    import re

    import torch
    from tqdm import tqdm

    from dsfnet.data.build import make_detect_stage
    from dsfnet.data.sources import list_images, pixel_identity
    from dsfnet.detect import create_detector
    from dsfnet.facemodel.model import load_face_model
    from dsfnet.io.image import read_image
    from dsfnet.teacher import load_teacher, roi_from_calibrated_detection, teacher_tta_landmarks

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = json.loads(Path(args.fusion).read_text())["weights"]
    skip = set()
    for path in args.exclude_annotated or []:
        root = Path(path).parent
        skip |= {str((root / json.loads(line)["image"]).resolve()) for line in Path(path).read_text().splitlines() if line.strip()}
    teacher = load_teacher(load_face_model(), args.teacher_dir)
    det = create_detector("yuface")
    detect = make_detect_stage(det)
    faces, failed = [], 0
    files = [(folder, p) for folder in args.images for p in list_images(folder) if str(p.resolve()) not in skip]
    for folder, p in tqdm(files, desc="teacher"):
        try:
            img = read_image(p)
        except Exception:  # noqa: BLE001 - an unreadable file is skipped and counted
            failed += 1
            continue
        d = detect(img)
        if d is None:
            failed += 1
            continue
        box = d.box if hasattr(d, "box") else d
        tta = teacher_tta_landmarks(teacher, img, roi_from_calibrated_detection(box, det.calibration))[:, :2]
        if Path(folder).resolve().name == "test" and Path(folder).resolve().parent.name == "ytf68":
            identity = re.sub(r"_\d+$", "", p.stem)  # ytf68's rule: the file name without its frame number
        else:
            identity = pixel_identity(img, Path(folder).resolve().name)
        faces.append({"image": str(p.resolve()), "identity": identity, "teacher_tta": tta.tolist()})
    if not faces:
        raise SystemExit(f"no face found in {len(files)} images of {args.images}")
    _run_dlib(faces, out, args.label_python)
    fused = fuse(np.array([f["teacher_tta"] for f in faces]), np.array([f["dlib"] for f in faces]), weights,
                 [f["dlib_detected"] for f in faces])
    with (out / "landmarks.jsonl").open("w") as fh:
        for f, pts in zip(faces, fused):
            fh.write(json.dumps({"image": f["image"], "identity": f["identity"], "split": "training",
                                 "pts68": np.round(pts, 3).tolist()}) + "\n")
    print(f"{len(faces)} faces labelled, {failed} images without a face or unreadable -> {out / 'landmarks.jsonl'}")


def fuse(teacher: np.ndarray, dlib: np.ndarray, weights: dict[str, float], use: np.ndarray | None = None) -> np.ndarray:
    """``(N, 68, 2)``: the teacher's jaw; inner points moved toward dlib by each region's weight, on the faces of
    ``use`` ``(N,)`` bool only (dlib's own detector found them; elsewhere its landmarks are far off: the teacher
    alone)."""
    out = np.array(teacher, dtype=np.float64)
    sel = np.ones(len(out), bool) if use is None else np.asarray(use, dtype=bool)
    for name, idx in REGIONS.items():
        i = list(idx)
        out[np.ix_(sel, i)] += weights[name] * (dlib[sel][:, i] - teacher[sel][:, i])
    return out


def nme(pred: np.ndarray, ref: np.ndarray, inner: bool = False) -> float:
    """Mean NME (%) over faces of ``(N, 68, 2)`` against ``ref``, over √(w·h) of the reference's 68-point box: all
    68 points (:func:`dsfnet.eval.metrics.nme_2d`) or the 51 inner ones (:func:`dsfnet.data.convention.inner_nme`)."""
    from dsfnet.data.convention import inner_nme
    from dsfnet.eval.metrics import nme_2d

    if inner:
        return 100 * inner_nme(pred, ref)
    return float(100 * np.mean([nme_2d(p, r) for p, r in zip(pred, ref)]))


def score(args: argparse.Namespace) -> None:
    from dsfnet.data.convention import AnnotationCorrection

    faces = [json.loads(line) for line in (Path(args.labels) / "sources.jsonl").read_text().splitlines()]
    split = {}
    for p in (Path(args.build) / "items").glob("*.json"):
        it = json.loads(p.read_text())
        split[it["identity"]] = it["split"]
    corr = AnnotationCorrection.load(args.correction)

    def arrays(sel):
        a = {k: np.array([f[k] for f in sel], dtype=np.float64) for k in ("annotation", "teacher1", "teacher_tta", "dlib")}
        return a

    groups = {
        "ytf68 training identities": [f for f in faces if f["group"] != "dev" and split.get(f["identity"]) == "train"],
        "ytf68 held-out identities": [f for f in faces if f["group"] != "dev" and split.get(f["identity"]) == "val"],
        "dev": [f for f in faces if f["group"] == "dev"],
    }
    train = [f for f in groups["ytf68 training identities"] if f["dlib_detected"]]
    fit = arrays(train)
    ref = corr.apply(fit["annotation"])
    t, d = fit["teacher_tta"], fit["dlib"]
    weights = {}
    for name, idx in REGIONS.items():
        i = list(idx)
        diff, resid = (d[:, i] - t[:, i]).reshape(-1), (ref[:, i] - t[:, i]).reshape(-1)
        weights[name] = float(np.clip(diff @ resid / (diff @ diff), 0.0, 1.0))
    print("fusion weights toward dlib (fitted on", len(t), "training-identity faces):",
          {k: round(v, 3) for k, v in weights.items()})
    (Path(args.labels) / "fusion.json").write_text(json.dumps({"weights": weights, "faces": len(t)}, indent=1) + "\n")
    for gname, sel in groups.items():
        if not sel:
            continue
        a = arrays(sel)
        a["fused"] = fuse(a["teacher_tta"], a["dlib"], weights, [f["dlib_detected"] for f in sel])
        refs = {"annotations": a["annotation"]}
        if gname == "dev":
            refs["re-annotated"] = np.array([f["reannotated"] for f in sel], dtype=np.float64)
        else:
            refs["annotations moved to the teacher's placement"] = corr.apply(a["annotation"])
        det = np.mean([f["dlib_detected"] for f in sel])
        for rname, r in refs.items():
            cells = "  ".join(f"{s} {nme(a[s], r):.2f}/{nme(a[s], r, inner=True):.2f}" for s in SOURCES)
            print(f"{gname} (n={len(sel)}, dlib detected {100 * det:.0f}%) vs {rname}: 68/inner51 NME %  {cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict")
    p.add_argument("--out", required=True)
    p.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--teacher-dir", default=str(ROOT.parent / "shared" / "data" / "teacher_3ddfa_v2"))
    p.add_argument("--label-python", default=str(ROOT / ".venv-label" / "bin" / "python"))
    s = sub.add_parser("score")
    s.add_argument("--labels", required=True)
    s.add_argument("--build", required=True, help="a ytf68 data build whose items give the identity split")
    s.add_argument("--correction", default="runs/conv/ytf68_correction.json")
    u = sub.add_parser("unlabelled")
    u.add_argument("--out", required=True)
    u.add_argument("--images", nargs="+", required=True, help="folders of images (the largest face of each)")
    u.add_argument("--exclude-annotated", nargs="*", help="landmarks.jsonl files whose images to leave out")
    u.add_argument("--fusion", required=True, help="fusion.json written by score")
    u.add_argument("--teacher-dir", default=str(ROOT.parent / "shared" / "data" / "teacher_3ddfa_v2"))
    u.add_argument("--label-python", default=str(ROOT / ".venv-label" / "bin" / "python"))
    args = ap.parse_args()
    {"predict": predict, "score": score, "unlabelled": unlabelled}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
