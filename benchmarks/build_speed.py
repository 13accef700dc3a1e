"""Time per face / per sample of ``dsfnet data build`` stages (a script, not a test).

Runs the default pipeline (teacher init if a teacher folder is given, 2D-convention fit, face profiling,
writing) in one process with one torch thread on the first N faces of a ytf68-style folder, times each
stage, and extrapolates a 2,000-sample build on ``--workers`` processes (target: < 30 min on 2 cores).

    python benchmarks/build_speed.py ../shared/data/ytf68 [--teacher-dir ../shared/data/teacher_3ddfa_v2]
        [--faces 10] [--views 2] [--workers 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("--teacher-dir", type=Path, default=None)
    ap.add_argument("--faces", type=int, default=10)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--target-samples", type=int, default=2000)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from dsfnet.data.build import BuildConfig, build_pipeline
    from dsfnet.data.sample import read_rgb
    from dsfnet.data.sources import read_items
    from dsfnet.io.writers import write_image

    t0 = time.perf_counter()
    pipe = build_pipeline(BuildConfig(a.source, Path("unused"), teacher_dir=a.teacher_dir, views=a.views, max_yaw=90.0))
    print(f"setup (face model, teacher, fitter): {time.perf_counter() - t0:.1f} s")
    items = read_items(a.source, limit=a.faces)
    times = {"read": [], "init": [], "fit": [], "profile": [], "write": []}
    n_samples = 0
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for it in items:
            t = time.perf_counter()
            img = read_rgb(it.image)
            times["read"].append(time.perf_counter() - t)
            t = time.perf_counter()
            init = pipe.init(img, it.landmarks) if pipe.init else None
            times["init"].append(time.perf_counter() - t)
            t = time.perf_counter()
            fit = pipe.fit(img, it.landmarks, init)
            times["fit"].append(time.perf_counter() - t)
            t = time.perf_counter()
            views = pipe.profile(img, fit, rng) if pipe.profile else []
            times["profile"].append(time.perf_counter() - t)
            t = time.perf_counter()
            for k, (v, _) in enumerate(views):
                write_image(Path(tmp) / f"{it.key}_{k}.jpg", v, quality=95)
            times["write"].append(time.perf_counter() - t)
            n_samples += 1 + len(views)
    per_face = sum(float(np.sum(v)) for v in times.values()) / len(items)
    print(f"{len(items)} faces, {n_samples} samples, image sizes up to "
          f"{max(read_rgb(it.image).shape[0] for it in items)} px")
    for k, v in times.items():
        print(f"  {k:>8}: {1000 * np.mean(v):8.1f} ms per face")
    per_sample = per_face * len(items) / n_samples
    total = a.target_samples * per_sample / max(a.workers, 1)
    print(f"per face {per_face:.2f} s, per sample {per_sample:.2f} s (1 process); "
          f"{a.target_samples} samples on {a.workers} workers: ~{total / 60:.1f} min")


if __name__ == "__main__":
    main()
