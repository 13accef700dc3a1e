"""Detection scale: what downscaling the photo before yuface costs in faces and box quality, and saves in time.

For every photo of ``--root`` (default ``<shared>/data/wild``) the faces at ``--reference`` max side (today's
default) are the reference; each candidate ``max_side`` is scored by recall (reference faces matched at IoU >= 0.5),
extra faces (unmatched candidates), the mean IoU of the matches, the median reference-face side (px of the
original image) of the faces it misses, and the median detection time per photo, measured in the same run.
A script, not a test.

    python benchmarks/detect_scale.py [--root ../shared/data/wild] [--sides 640 480 400 320]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from dsfnet.detect import create_detector
from dsfnet.io import ImageReadError, read_image
from dsfnet.io.image import image_suffixes


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of ``(N, 4)`` and ``(M, 4)`` boxes ``[x0, y0, x1, y1]``."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "wild")
    ap.add_argument("--reference", type=int, default=800)
    ap.add_argument("--sides", type=int, nargs="+", default=[640, 480, 400, 320])
    args = ap.parse_args()
    files = sorted(p for p in args.root.rglob("*") if p.suffix.lower() in image_suffixes())
    sides = [args.reference, *args.sides]
    dets = {s: create_detector("yuface", max_side=s) for s in sides}
    found = {s: [] for s in sides}
    times = {s: [] for s in sides}
    for p in files:
        try:
            img = read_image(p)
        except ImageReadError:
            continue
        for s in sides:  # interleaved: every scale sees the same load
            t0 = time.perf_counter()
            boxes = np.array([d.box for d in dets[s].detect(img)]).reshape(-1, 4)
            times[s].append(time.perf_counter() - t0)
            found[s].append(boxes)
    ref = found[args.reference]
    n_ref = sum(len(b) for b in ref)
    print(f"{len(ref)} photos, {n_ref} reference faces at max_side {args.reference}")
    print(f"{'max_side':>8s} {'faces':>6s} {'recall':>7s} {'extra':>6s} {'IoU':>6s} {'missed side px':>15s} {'ms/photo':>9s}")
    for s in sides:
        matched, extra, ious, missed = 0, 0, [], []
        for r, c in zip(ref, found[s]):
            if len(r) and len(c):
                m = iou(r, c)
                hit = m.max(axis=1) >= 0.5
                matched += int(hit.sum())
                ious += list(m.max(axis=1)[hit])
                missed += list(((r[:, 2] - r[:, 0] + r[:, 3] - r[:, 1]) / 2)[~hit])
                extra += int((m.max(axis=0) < 0.5).sum())
            else:
                extra += len(c)
                missed += list(((r[:, 2] - r[:, 0] + r[:, 3] - r[:, 1]) / 2)) if len(r) else []
        med_missed = f"{statistics.median(missed):.0f}" if missed else "-"
        print(f"{s:8d} {sum(len(b) for b in found[s]):6d} {matched / max(n_ref, 1):7.3f} {extra:6d} "
              f"{np.mean(ious) if ious else 0:6.3f} {med_missed:>15s} {1000 * statistics.median(times[s]):9.1f}")


if __name__ == "__main__":
    main()
