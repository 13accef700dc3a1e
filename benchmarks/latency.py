"""Per-face latency on CPU: PyTorch vs ONNX Runtime backends and the 3DDFA_V2 teacher (a script, not a test).

Part 1, side by side in one process at one thread count (torch ``set_num_threads`` = ONNX Runtime
``intra_op_num_threads`` = ``--threads``), calls interleaved so that every candidate sees the same background load,
median of ``--repeats`` rounds, one face (batch 1):

* network alone:

  - the lite ONNX network as ONE graph (``network.onnx`` of ``dsfnet export-onnx``: image stage, scatter, the four
    similarity fits with the SVD-free solver, PointNet, fusion), ONNX Runtime session only, on the standardised
    crop: the number to hold against the teacher's ONNX network (target: at most 4×);
  - the lite ONNX runner ``crop (128², uint8) → UV map + rotation`` on that graph (plus standardisation);
  - the lite torch runner, the lite image stage alone (the convolutional part, ONNX and torch; the ONNX image stage
    is exported here for the comparison);
  - the teacher's network (3DDFA_V2 MobileNetV1-0.5, ``dsfnet.teacher.network.TeacherNet``, 120² crop → 62
    parameters, with its (x−127.5)/128 input scaling) in PyTorch and exported to ONNX;
* whole pipeline: ``FaceAligner.predict`` on the bundled 512² sample photo (yuface detection, crop, network,
  decode to the dense mesh and 68 landmarks, z-buffer visibility, back to image px) per backend;
* the ratios lite / teacher. Wall-clock medians, and thread-CPU-time medians (``time.thread_time``: with one
  intra-op thread ONNX Runtime and torch compute on the calling thread, so this leaves out the time the process
  waits while other processes run; the fairer ratio on a loaded machine). The load average is printed.

Weights: random (seeded) unless ``--weights`` (a lite ``.pt`` checkpoint) / ``--teacher-weights``
(``mb05_120x120.pth``) are given; latency does not depend on them.

Part 2 (``--stages``): the per-stage table of the torch pipeline. Stages: read_image (bundled sample), yuface detection (512² sample and a 1536² upscale, which the detector
downscales to ``max_side``), crop warp, the network (a randomly initialised variant — latency does not depend
on the weights; the product itself refuses to run without weights), decode (UV map → vertices and landmarks),
z-buffer visibility, back-projection to image pixels, and the ``to_dict`` JSON line.

    python benchmarks/latency.py [--threads 1] [--repeats 30] [--weights lite.pt] [--teacher-weights mb05_120x120.pth]
                                 [--stages]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def timeit(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3, out


def paired_median_ms(fns: dict, repeats: int, warmup: int = 2) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms per call of each callable, called round-robin so that all see the same machine load:
    ``(wall-clock, thread-CPU time)``."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            fn()
            c1, t1 = time.thread_time(), time.perf_counter()
            wall[k].append((t1 - t0) * 1e3)
            cpu[k].append((c1 - c0) * 1e3)
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()})


def build_teacher(weights: str | None):
    """:class:`dsfnet.teacher.network.TeacherNet` in eval mode: random (seeded) or loaded from 3DDFA_V2's
    ``mb05_120x120.pth``."""
    from dsfnet.teacher.network import TeacherNet, load_teacher_network

    return load_teacher_network(weights) if weights else TeacherNet().eval()


def compare_backends(args) -> None:
    """Part 1: lite torch vs lite ONNX vs teacher torch vs teacher ONNX, network alone and whole pipeline."""
    import torch

    from dsfnet.assets import sample_image_path
    from dsfnet.cli.export_onnx import export_folder
    from dsfnet.crop import crop_matrix, warp_image
    from dsfnet.decode import UVCodec
    from dsfnet.facemodel.model import load_face_model
    from dsfnet.facemodel.uv import get_uv_layout
    from dsfnet.inference import FaceAligner, OnnxRunner, TorchRunner
    from dsfnet.inference.onnx import ort_session
    from dsfnet.model.preprocess import preprocess
    from dsfnet.io import read_image
    from dsfnet.model import create_model, get_config
    from dsfnet.model.dsfnet import ImageStage

    fm = load_face_model()
    cfg = get_config(args.config)
    layout = get_uv_layout(fm, cfg.uv_size)
    if args.weights:
        t_runner = TorchRunner(create_model(args.config, fm, layout=layout, weights=args.weights))
    else:
        torch.manual_seed(0)
        t_runner = TorchRunner(create_model(args.config, fm, layout=layout))
    s = t_runner.input_size
    codec = UVCodec(get_uv_layout(fm, t_runner.uv_size), s)
    teacher = build_teacher(args.teacher_weights)
    img = read_image(sample_image_path())
    with tempfile.TemporaryDirectory(prefix="dsfnet-latency-") as tmp:
        folder, _ = export_folder(t_runner.model, Path(tmp) / f"{args.config}-onnx", args.config, face_model=fm)
        o_runner = OnnxRunner(folder, args.config, face_model=fm, threads=args.threads)
        stage_path = Path(tmp) / "image_stage.onnx"
        torch.onnx.export(t_runner.model.image_stage, (torch.zeros(1, 3, s, s),), str(stage_path), input_names=["image"],
                          output_names=list(ImageStage.OUTPUTS), opset_version=17, dynamo=False)
        stage_sess = ort_session(stage_path, args.threads)
        xt = torch.zeros(1, 3, 120, 120)
        t_path = Path(tmp) / "teacher.onnx"
        torch.onnx.export(teacher, (xt,), str(t_path), input_names=["image"], output_names=["params"], opset_version=17,
                          dynamo=False)
        t_sess = ort_session(t_path, args.threads)
    aligners = {name: FaceAligner(detector="yuface", runner=r, codec=codec, triangles=fm.triangles)
                for name, r in (("torch", t_runner), ("onnx", o_runner))}
    faces = aligners["torch"].predict(img)
    if not faces:
        raise SystemExit("no face detected in the sample photo")
    crop = warp_image(img, crop_matrix(faces[0].crop_box, s), s)[None]  # (1, S, S, 3) uint8 RGB
    crop_t = warp_image(img, crop_matrix(faces[0].crop_box, 120), 120)[None]  # the teacher's 120² crop

    def teacher_torch() -> None:
        x = (torch.from_numpy(crop_t).permute(0, 3, 1, 2).float() - 127.5) / 128.0
        with torch.inference_mode():
            teacher(x)

    def teacher_onnx() -> None:
        x = ((crop_t.transpose(0, 3, 1, 2).astype(np.float32) - 127.5) / 128.0)
        t_sess.run(None, {"image": x})

    x_np = preprocess(crop)
    x_lite = torch.from_numpy(x_np)

    def lite_stage_torch() -> None:
        with torch.inference_mode():
            t_runner.model.image_stage(x_lite)

    fns = {
        "lite onnx   single graph network.onnx (session)": lambda: o_runner.network(x_np),
        "teacher onnx  network (120² -> 62)": teacher_onnx,
        "lite onnx   runner, single graph (crop -> UV map)": lambda: o_runner(crop),
        "lite torch  runner (crop -> UV map)": lambda: t_runner(crop),
        "lite onnx   image stage only (CNN)": lambda: stage_sess.run(None, {"image": x_np}),
        "lite torch  image stage only (CNN)": lite_stage_torch,
        "teacher torch network (120² -> 62)": teacher_torch,
        "lite torch  pipeline (detect+crop+net+decode)": lambda: aligners["torch"].predict(img),
        "lite onnx   pipeline (detect+crop+net+decode)": lambda: aligners["onnx"].predict(img),
    }
    load0 = os.getloadavg()[0]
    wall, cpu = paired_median_ms(fns, args.repeats)
    load = os.getloadavg()[0]
    print(f"config={args.config} threads={args.threads} batch=1 median of {args.repeats} interleaved rounds; "
          f"weights: {'lite ' + str(args.weights) if args.weights else 'random lite'}, "
          f"{'teacher ' + str(args.teacher_weights) if args.teacher_weights else 'random teacher'}; "
          f"load average {load0:.1f} -> {load:.1f} on {os.cpu_count()} cores (background load inflates every number)")
    width = max(len(k) for k in wall)
    print(f"  {'':<{width}}  {'wall':>8}     {'cpu':>8}")
    for k in wall:
        print(f"  {k:<{width}}  {wall[k]:8.2f} ms  {cpu[k]:8.2f} ms")

    def ratio(num: str, den: str) -> str:
        def get(ms: dict, prefix: str) -> float:
            return next(v for k, v in ms.items() if k.startswith(prefix))

        return f"{get(wall, num) / get(wall, den):6.2f}x wall  {get(cpu, num) / get(cpu, den):6.2f}x cpu"

    target = "(target <= 4x)"
    print(f"  RATIO lite-onnx single graph / teacher-onnx network:    {ratio('lite onnx   single', 'teacher onnx')}  {target}")
    print(f"  RATIO lite-onnx runner (single graph) / teacher-onnx:   {ratio('lite onnx   runner, single', 'teacher onnx')}")
    print(f"  RATIO lite-torch runner / teacher-torch network:        {ratio('lite torch  runner', 'teacher torch')}")
    print(f"  RATIO lite image stage onnx / teacher onnx:             {ratio('lite onnx   image', 'teacher onnx')}")
    print(f"  RATIO lite image stage torch / teacher torch:           {ratio('lite torch  image', 'teacher torch')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="lite")
    ap.add_argument("--threads", type=int, default=1, help="torch threads = ONNX Runtime intra-op threads (default 1)")
    ap.add_argument("--repeats", type=int, default=30, help="timed rounds per candidate (median reported)")
    ap.add_argument("--weights", help="lite torch checkpoint (.pt); default: random init (latency does not depend on it)")
    ap.add_argument("--teacher-weights", help="3DDFA_V2 mb05_120x120.pth; default: random init")
    ap.add_argument("--stages", action="store_true", help="also print the per-stage table of the torch pipeline")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    try:
        import cv2

        cv2.setNumThreads(args.threads)
    except ImportError:  # pragma: no cover
        pass
    compare_backends(args)
    if args.stages:
        stage_table(args)


def stage_table(args) -> None:
    """Part 2: per-stage latency of the torch pipeline (random weights)."""
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
    print(f"per-stage latency, torch backend, median of {args.repeats}:")
    for name, ms in rows:
        print(f"  {name:<{width}}  {ms:8.1f} ms")


if __name__ == "__main__":
    main()
