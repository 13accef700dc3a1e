"""Images per second of ``dsfnet predict`` with the local engine and the Ray engine (1 and 2 workers), side by side
on the same wild photos (a script, not a test; needs ``pip install "dsfnet[ray]"`` and ``../shared``).

Two measurements: (1) the whole command, a fresh ``dsfnet predict FOLDER-OF-LINKS -o TMP --quiet`` subprocess per
engine (model loading and Ray start-up included, as a user sees them); (2) steady state, in this process: the same
per-input code (``dsfnet.inference.batch.process_input``) after the aligners are built and warm (the local loop; the
Ray actor pool after its first result), timed from the second input to the last. One thread per process
(``OMP_NUM_THREADS=1``). Prints seconds, images/s and the ratios: Ray with one worker vs local (the engine's
overhead; target within 15%) and Ray with two workers vs local (target: faster).

    python benchmarks/engines.py [--images 200] [--shared ../shared]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = ap.parse_args()
    from dsfnet.io import image_suffixes

    photos = sorted(p for p in (args.shared / "data" / "wild").rglob("*") if p.suffix.lower() in image_suffixes())
    photos = photos[: args.images]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i, p in enumerate(photos):  # one flat folder of links, unique names
            (folder / f"{i:04d}{p.suffix.lower()}").symlink_to(p.resolve())
        rows = {}
        for name, extra in (("local", []), ("ray, 1 worker", ["--engine", "ray", "--workers", "1"]),
                            ("ray, 2 workers", ["--engine", "ray", "--workers", "2"])):
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "dsfnet.cli.main", "predict", str(folder), "-o", str(out), "--quiet",
                            *extra], env=env, check=False, capture_output=True)
            rows[name] = time.perf_counter() - t0
    n = len(photos)
    print(f"{n} wild photos, whole command (model load and engine start-up included)")
    for name, sec in rows.items():
        print(f"  {name:16s} {sec:7.1f} s  {n / sec:6.2f} images/s")
    steady = steady_state(photos)
    print(f"steady state ({n - 1} inputs after the first, aligners built and warm)")
    for name, sec in steady.items():
        print(f"  {name:16s} {sec:7.1f} s  {(n - 1) / sec:6.2f} images/s")
    for label, r in (("whole command", rows), ("steady state", steady)):
        print(f"RATIO {label}: ray 1 worker / local time {r['ray, 1 worker'] / r['local']:.2f} (target <= 1.15); "
              f"local / ray 2 workers {r['local'] / r['ray, 2 workers']:.2f} (target > 1)")


def steady_state(photos: list[Path]) -> dict[str, float]:
    """Seconds from the second input to the last, per engine, with everything built and warm."""
    import torch

    torch.set_num_threads(1)
    from dsfnet.inference import FaceAligner
    from dsfnet.inference.batch import BatchOptions, process_input
    from dsfnet.inference.ray_engine import run_on_ray

    options = BatchOptions(quiet=True)
    tasks = [("image", str(p), f"s{i}") for i, p in enumerate(photos)]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        aligner = FaceAligner()
        process_input(options, aligner, None, *tasks[0], tmp, lambda r: None)
        t0 = time.perf_counter()
        for t in tasks[1:]:
            process_input(options, aligner, None, *t, tmp, lambda r: None)
        out["local"] = time.perf_counter() - t0
        for workers in (1, 2):
            results = run_on_ray(tasks, aligner_kwargs={}, boxes_file=None, options=options, out=tmp,
                                 workers=workers)
            next(results)  # Ray started, actors built (their first task done)
            t0 = time.perf_counter()
            for _ in results:
                pass
            out[f"ray, {workers} worker{'s' if workers > 1 else ''}"] = time.perf_counter() - t0
    return out


if __name__ == "__main__":
    main()
