"""Per-sample cost of making training ground truth (a script, not a test).

Stages timed per sample at crop S and UV U (default 128/128): ``build`` (3DMM decode, crop, codec encode,
offset map, z-buffer render of seg/grid/depth: :meth:`dsfnet.data.targets.TargetBuilder.build`), ``augment``
(random flip + similarity + photometric, with re-rendering: :class:`dsfnet.data.augment.Augmenter`) and
``occlude`` (:func:`dsfnet.data.occlusion.occlude_sample`); plus ``profile`` (one profiled view of the photo,
:func:`dsfnet.data.profiling.profile_face`), which runs once per source face in ``data build``, not per epoch.

Faces: the AFLW2000-3D dev annotations in ``../shared/data/aflw2000_dev`` with the built-in face model when
both are available, else synthetic poses of the toy face model on a random image.

    python benchmarks/data_speed.py [--samples 20] [--crop-size 128] [--uv-size 128] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test doubles in testing/ (not shipped)

TARGET_SAMPLES, TARGET_MINUTES = 2000, 30.0
BUDGET_MS = 300.0


def sources(n: int):
    """``(face_model, [(image, shape, exp, pose_para)])`` and a description."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "aflw2000_dev"
    try:
        from dsfnet.data.readers import read_mat
        from dsfnet.data.sample import read_rgb
        from dsfnet.facemodel.model import load_face_model

        fm = load_face_model()
        mats = sorted(shared.glob("*.mat"))
        if not mats:
            raise FileNotFoundError(f"no .mat in {shared}")
        items = []
        for m in mats:
            a = read_mat(m, fm.n_shape, fm.n_exp)
            items.append((read_rgb(m.with_suffix(".jpg")), a.shape, a.exp, a.pose_para))
        return fm, (items * (n // len(items) + 1))[:n], f"built-in model, {len(mats)} AFLW2000-3D dev faces"
    except Exception as err:  # noqa: BLE001 - fall back to the toy model, say why
        print(f"[built-in model / dev data not available: {type(err).__name__}: {err}] -> toy model")
    from testing.face_model import toy_face_model

    fm = toy_face_model()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(256, 256, 3), dtype=np.uint8)
    items = [(img, fm.shape_std * rng.normal(size=fm.n_shape), fm.exp_std * rng.normal(size=fm.n_exp),
              np.r_[rng.uniform(-0.3, 0.3), rng.uniform(-1.2, 1.2), rng.uniform(-0.3, 0.3), 128, 128, 0, 110 / 1.5e5])
             for _ in range(n)]
    return fm, items, "toy face model (synthetic poses)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--crop-size", type=int, default=128)
    parser.add_argument("--uv-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (1 = one data worker)")
    parser.add_argument("--profile-views", type=int, default=3, help="how many profile_face calls to time")
    args = parser.parse_args()

    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from dsfnet.data.augment import Augmenter
    from dsfnet.data.occlusion import occlude_sample
    from dsfnet.data.profiling import profile_face
    from dsfnet.data.targets import TargetBuilder
    from dsfnet.facemodel.uv import get_uv_layout

    fm, items, what = sources(args.samples)
    t0 = time.perf_counter()
    builder = TargetBuilder(fm, get_uv_layout(fm, args.uv_size), args.crop_size)
    aug = Augmenter(builder)
    setup = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    times = {"build": [], "augment": [], "occlude": []}
    for img, shape, exp, pose in items:
        t = time.perf_counter()
        d = builder.build(img, shape, exp, pose)
        times["build"].append(time.perf_counter() - t)
        t = time.perf_counter()
        d = aug(d, rng)
        times["augment"].append(time.perf_counter() - t)
        t = time.perf_counter()
        occlude_sample(d, rng)
        times["occlude"].append(time.perf_counter() - t)
    prof = []
    for img, shape, exp, pose in items[: args.profile_views]:
        t = time.perf_counter()
        profile_face(img, fm, shape, exp, pose, delta_yaw=0.5)
        prof.append(time.perf_counter() - t)

    print(f"data ground-truth speed: {what}; S={args.crop_size}, U={args.uv_size}, {args.threads} thread(s), "
          f"{len(items)} samples; setup (layout + basis maps + augmenter) {setup:.2f} s")
    print(f"{'stage':<10}{'mean ms':>10}{'median ms':>11}{'max ms':>9}")
    total = 0.0
    for k, v in times.items():
        v = np.array(v) * 1e3
        total += v.mean()
        print(f"{k:<10}{v.mean():>10.1f}{np.median(v):>11.1f}{v.max():>9.1f}")
    print(f"{'per sample':<10}{total:>10.1f}   (build + augment + occlude)")
    if prof:
        p = np.array(prof) * 1e3
        print(f"{'profile':<10}{p.mean():>10.1f}{np.median(p):>11.1f}{p.max():>9.1f}   (once per source face)")
    minutes = TARGET_SAMPLES * total / 1e3 / 60
    print(f"{TARGET_SAMPLES} samples: {minutes:.1f} min of GT work on one core; budget: a {TARGET_SAMPLES}-sample "
          f"build (fitting, profiling, GT) in < {TARGET_MINUTES:.0f} min, so GT well under {BUDGET_MS:.0f} ms/sample: "
          f"{'OK' if total < BUDGET_MS else 'TOO SLOW'}")


if __name__ == "__main__":
    main()
