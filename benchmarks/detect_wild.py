"""Run a detector over a folder of photos (default ``<shared>/data/wild``) and report what it finds.

Prints: images read, unreadable images, images with 0 / 1 / 2+ faces, total faces, crashes (any exception
from the detector), the time per image, and the files with no face. A script, not a test.

    python benchmarks/detect_wild.py [--root ../shared/data/wild] [--detector yuface] [--max-side 800]
"""
from __future__ import annotations

import argparse
import time
import traceback
from collections import Counter
from pathlib import Path

from dsfnet.detect import create_detector
from dsfnet.io import ImageReadError, read_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "wild")
    ap.add_argument("--detector", default="yuface")
    ap.add_argument("--max-side", type=int, default=800)
    args = ap.parse_args()
    kwargs = {"max_side": args.max_side} if args.detector == "yuface" else {}
    det = create_detector(args.detector, **kwargs)
    files = sorted(p for p in args.root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    counts, unreadable, crashes, no_face = Counter(), [], [], []
    total_faces, t_det = 0, 0.0
    for p in files:
        try:
            img = read_image(p)
        except ImageReadError as exc:
            unreadable.append(f"{p}: {exc}")
            continue
        try:
            t0 = time.perf_counter()
            faces = det.detect(img)
            t_det += time.perf_counter() - t0
        except Exception:  # report every crash, keep going
            crashes.append(f"{p}: {traceback.format_exc(limit=1)}")
            continue
        total_faces += len(faces)
        counts[min(len(faces), 2)] += 1
        if not faces:
            no_face.append(str(p.relative_to(args.root)))
    n = sum(counts.values())
    print(f"{len(files)} files, {n} read and detected, {len(unreadable)} unreadable, {len(crashes)} crashes")
    print(f"images with 0 faces: {counts[0]}, 1 face: {counts[1]}, 2+ faces: {counts[2]}; faces found: {total_faces}")
    print(f"detection time: {1e3 * t_det / max(n, 1):.1f} ms per image (median size in the folder, max side {args.max_side})")
    for line in unreadable + crashes:
        print("  ", line)
    print("no face found in:")
    for name in no_face:
        print("  ", name)


if __name__ == "__main__":
    main()
