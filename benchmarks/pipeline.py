"""Whole-pipeline time per photo, by stage, against the 3DDFA_V2 teacher network's ONNX time in the same run.

One thread (torch and ONNX Runtime), shipped weights, ``FaceAligner()`` on its defaults (``backend="auto"``: ONNX
Runtime on the CPU) and, for comparison, ``backend="torch"``; median over the photos of each set after a warm-up:
the bundled 512² sample and ``--wild`` photos of ``<shared>/data/wild`` (when present). Stages: reading the
file, detection, crop + network, decode (landmarks, visibility, pose; the dense mesh is lazy and not asked for),
``to_dict``. The teacher (random weights: its time does not depend on them) runs its 120² crop through ONNX
Runtime. Prints each median in ms and the ratio whole-predict / teacher (issue #18's target: <= 8x).
MediaPipe's face mesh is not timed here (it needs a separate environment with ``mediapipe==0.10.21``).

    python benchmarks/pipeline.py [--wild 50] [--shared ../shared]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wild", type=int, default=50, help="wild photos to time (0: only the sample)")
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from latency import build_teacher

    from dsfnet.assets import sample_image_path
    from dsfnet.crop import box_from_detection, crop_matrix, warp_image
    from dsfnet.inference import FaceAligner
    from dsfnet.inference.aligner import decode_face
    from dsfnet.inference.onnx import ort_session
    from dsfnet.io import image_suffixes, read_image

    paths = [Path(sample_image_path())]
    wild = args.shared / "data" / "wild"
    if args.wild and wild.is_dir():
        found = sorted(p for p in wild.rglob("*") if p.suffix.lower() in image_suffixes())
        paths += found[:: max(1, len(found) // args.wild)][: args.wild]
    teacher = build_teacher(None)
    with tempfile.TemporaryDirectory() as tmp:
        t_path = Path(tmp) / "teacher.onnx"
        torch.onnx.export(teacher, (torch.zeros(1, 3, 120, 120),), str(t_path), input_names=["image"],
                          output_names=["params"], opset_version=17, dynamo=False)
        t_sess = ort_session(t_path, 1)
    x_t = np.zeros((1, 3, 120, 120), np.float32)
    aligners = {"auto (onnx)": FaceAligner(), "torch": FaceAligner(backend="torch")}  # ONNX Runtime: 1 thread
    print(f"{len(paths)} photos (the sample first); one thread; aligners: "
          + ", ".join(f"{k} -> {a.backend}" for k, a in aligners.items()))
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    for p in paths:
        for _ in range(2):  # the first pass warms up; the second is timed
            timed = _ == 1
            add_ = add if timed else (lambda k, v: None)
            add_("teacher ONNX network (120² -> 62)", _ms(lambda: t_sess.run(None, {"image": x_t})))
            img = None

            def read():
                nonlocal img
                img = read_image(p)

            add_("read image", _ms(read))
            for name, al in aligners.items():
                dets = []
                add_(f"{name}: detect", _ms(lambda: dets.extend(al.detector.detect(img))))
                if not dets:
                    add_(f"{name}: whole predict", _ms(lambda: al.predict(img)))
                    continue
                box = box_from_detection(dets[0].box, al.detector.calibration)
                s = al.runner.input_size
                out = {}
                add_(f"{name}: crop + network", _ms(lambda: out.update(al.runner(warp_image(img, crop_matrix(box, s), s)[None]))))
                face = []
                add_(f"{name}: decode", _ms(lambda: face.append(decode_face(out, 0, box, al.codec, al.triangles,
                                                                          bbox=dets[0].box, score=dets[0].score))))
                add_(f"{name}: to_dict", _ms(lambda: face[0].to_dict()))
                add_(f"{name}: whole predict", _ms(lambda: al.predict(img)))
    teacher_ms = statistics.median(rows["teacher ONNX network (120² -> 62)"])
    print(f"{'stage':44s} {'median ms':>10s} {'x teacher':>10s}")
    for key, values in rows.items():
        med = statistics.median(values)
        print(f"{key:44s} {med:10.2f} {med / teacher_ms:10.1f}")
    whole = statistics.median(rows["auto (onnx): whole predict"])
    print(f"RATIO whole predict (default backend) / teacher ONNX network: {whole / teacher_ms:.1f}x (target <= 8x)")


if __name__ == "__main__":
    main()
