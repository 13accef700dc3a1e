"""Per-stage latency of the product pipeline on CPU (a script, not a test).

Stages: read_image (bundled sample), yuface detection (512² sample and a 1536² upscale, which the detector
downscales to ``max_side``), crop warp, the network (a randomly initialised variant — latency does not depend
on the weights; the product itself refuses to run without weights), decode (UV map → vertices and landmarks),
z-buffer visibility, back-projection to image pixels, and the ``to_dict`` JSON line.

    python benchmarks/latency.py [--config lite] [--threads 1] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def timeit(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="lite")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from dsfnet.assets import sample_image_path
    from dsfnet.crop import box_from_detection, crop_matrix, warp_image
    from dsfnet.decode import UVCodec
    from dsfnet.detect import YuFaceDetector
    from dsfnet.facemodel.model import load_face_model
    from dsfnet.facemodel.uv import get_uv_layout
    from dsfnet.inference.aligner import decode_face
    from dsfnet.inference.runner import TorchRunner
    from dsfnet.io import read_image
    from dsfnet.model import create_model, get_config

    rows = []
    ms, img = timeit(lambda: read_image(sample_image_path()), args.repeats)
    rows.append(("read_image 512x512 JPEG", ms))
    det = YuFaceDetector()
    ms, dets = timeit(lambda: det.detect(img), args.repeats)
    rows.append(("yuface detect 512x512", ms))
    big = np.ascontiguousarray(np.repeat(np.repeat(img, 3, 0), 3, 1))
    ms, _ = timeit(lambda: det.detect(big), args.repeats)
    rows.append(("yuface detect 1536x1536 (downscaled to 800)", ms))

    fm = load_face_model()
    cfg = get_config(args.config)
    layout = get_uv_layout(fm, cfg.uv_size)
    codec = UVCodec(layout, cfg.input_size)
    runner = TorchRunner(create_model(args.config, fm, layout=layout), with_seg=True)
    crop_box = box_from_detection(dets[0].box, det.calibration)
    ms, crop = timeit(lambda: warp_image(img, crop_matrix(crop_box, cfg.input_size), cfg.input_size), args.repeats)
    rows.append((f"crop warp to {cfg.input_size}x{cfg.input_size}", ms))
    ms, out = timeit(lambda: runner(crop[None]), args.repeats)
    rows.append((f"network {args.config} (1 crop, {args.threads} thread(s))", ms))
    # a plausible map instead of the random network's output: the mean face posed in the crop
    verts = np.asarray(fm.mean, np.float64) * (0.55 * cfg.input_size / np.ptp(fm.mean[:, 0]))
    verts[:, 1] *= -1
    verts += [cfg.input_size / 2, cfg.input_size / 2, 0]
    out = {"face_uvm": codec.encode(verts)[None], "rotation": np.eye(3)[None], "seg": out.get("seg")}
    if out["seg"] is None:
        del out["seg"]
    ms, _ = timeit(lambda: codec.decode(out["face_uvm"][0].astype(np.float64)), args.repeats)
    rows.append((f"decode UV {cfg.uv_size}² -> {fm.mean.shape[0]} vertices", ms))
    ms, face = timeit(lambda: decode_face(out, 0, crop_box, codec, fm.triangles, bbox=dets[0].box, score=1.0), args.repeats)
    rows.append(("decode_face total (decode + z-buffer visibility + back-projection)", ms))
    ms, _ = timeit(lambda: json.dumps(face.to_dict()), args.repeats)
    rows.append(("to_dict + json.dumps", ms))
    width = max(len(r[0]) for r in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.1f} ms")


if __name__ == "__main__":
    main()
