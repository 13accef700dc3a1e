"""Images per second of ``dsfnet predict`` with the local engine and the Ray engine (1 and 2 workers), side by side
on the same wild photos (a script, not a test; needs ``pip install "dsfnet[ray]"`` and ``../shared``).

Each run is a fresh ``dsfnet predict FOLDER-OF-LINKS -o TMP --quiet`` subprocess (model loading and Ray start-up
included, as a user sees them), one thread per process (``OMP_NUM_THREADS=1``). Prints wall seconds, images/s and
the ratios: Ray with one worker vs local (the engine's overhead; target within 15%) and Ray with two workers vs local.

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
    print(f"RATIO ray 1 worker / local time: {rows['ray, 1 worker'] / rows['local']:.2f} (target <= 1.15)")
    print(f"RATIO local / ray 2 workers time: {rows['local'] / rows['ray, 2 workers']:.2f} (target > 1)")


if __name__ == "__main__":
    main()
