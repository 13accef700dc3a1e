"""What ``--draw`` and ``--save-mesh`` cost per face, next to the alignment itself (a script, not a test).

On the bundled 512² sample (one face, shipped weights), median of ``--repeats`` after a warm-up, one thread:
``FaceAligner.predict`` (the baseline), the overlay (``draw_faces``: shaded z-buffered mesh, landmarks, axes, box),
OBJ (text, with and without vertex colours), binary PLY, and for reference the previous per-line OBJ writer (a
Python loop over lines, kept here only to measure against). Each is printed in ms and as a ratio to ``predict``.

    python benchmarks/outputs.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import timeit
from pathlib import Path

import numpy as np


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    return 1000 * statistics.median(timeit.repeat(fn, number=1, repeat=repeats))


def _per_line_obj(path: Path, v: np.ndarray, t: np.ndarray) -> None:
    """The writer before: one f-string per line (reference only)."""
    text = "".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in v) + "".join(f"f {a} {b} {c}\n" for a, b, c in t + 1)
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from dsfnet.inference import FaceAligner
    from dsfnet.inference.visualize import draw_faces
    from dsfnet.io import read_image, write_mesh
    from dsfnet.io.writers import write_obj

    import importlib.resources as resources

    image = read_image(str(resources.files("dsfnet.assets") / "sample.jpg"))
    aligner = FaceAligner()
    faces = aligner.predict(image)
    face = faces[0]
    v, t = face.vertices, face.triangles
    colors = image[np.clip(np.round(v[:, 1]).astype(int), 0, image.shape[0] - 1),
                   np.clip(np.round(v[:, 0]).astype(int), 0, image.shape[1] - 1)]
    out = Path(tempfile.mkdtemp())
    rows = {
        "predict (baseline)": lambda: aligner.predict(image),
        "overlay draw_faces": lambda: draw_faces(image, faces),
        "OBJ": lambda: write_obj(out / "a.obj", v, t),
        "OBJ with colours": lambda: write_obj(out / "c.obj", v, t, colors),
        "PLY binary with colours": lambda: write_mesh(out / "a.ply", v, t, colors),
        "OBJ, previous per-line writer": lambda: _per_line_obj(out / "p.obj", v, t),
    }
    base = None
    print(f"{'stage':34s} {'ms':>8s} {'x predict':>10s}")
    for name, fn in rows.items():
        ms = _median_ms(fn, args.repeats)
        base = base or ms
        print(f"{name:34s} {ms:8.1f} {ms / base:10.2f}")


if __name__ == "__main__":
    main()
