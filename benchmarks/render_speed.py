"""Speed of ``dsfnet.render.rasterize`` against its loop twin ``rasterize_reference`` (a script, not a test).

Renders a face mesh at 128² and 256² (yaw 20°, 80 % of the image): the built-in face model
(``dsfnet.facemodel.load_face_model()``) when it is available, else the cached mean shape with 3DDFA_V2's
triangles from ``../shared``, else a synthetic dense mesh (a displaced sphere cap on a 224 x 224 vertex
grid: 50,176 vertices, 99,458 triangles; ``--synthetic`` forces it). The reference is a Python loop, so by default it runs on an evenly
strided subset of the triangles and its time is extrapolated linearly to the full mesh (printed as such);
``--full-reference`` runs it on everything. The subset run also checks that both agree pixel for pixel.

    python benchmarks/render_speed.py [--sizes 128 256] [--repeats 7] [--ref-triangles 10000]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dsfnet.render import rasterize, rasterize_reference


def synthetic_face_mesh(n: int = 224) -> tuple[np.ndarray, np.ndarray, str]:
    """A face-sized displaced sphere cap in model-like coordinates (y up, +z toward the camera).

    Returns ``(vertices (n*n, 3), triangles (2(n-1)², 3), description)``; coordinates in [-1, 1] for x, y.
    Triangles run counter-clockwise seen from +z (y up), like a mesh with outward winding.
    """
    u, v = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    theta, phi = 1.1 * u, 1.1 * v                      # longitude, latitude of a sphere cap
    r = 1.0 + 0.25 * np.exp(-(u**2 + (v + 0.1) ** 2) / 0.02) + 0.03 * np.sin(9 * u) * np.cos(7 * v)
    x = r * np.cos(phi) * np.sin(theta)
    y = r * np.sin(phi)
    z = r * np.cos(phi) * np.cos(theta)
    verts = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]   # row = v (up), col = u (right)
    tris = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return verts, tris, f"synthetic displaced sphere cap ({verts.shape[0]} vertices, {tris.shape[0]} triangles)"


def face_mesh() -> tuple[np.ndarray, np.ndarray, str]:
    """The face model's mean shape and triangles, from the first source that works:

    1. ``dsfnet.facemodel.load_face_model()`` (the package's own model and triangles);
    2. the cached built-in mean (``dsfnet.facemodel.assets.load_asset_arrays``) with 3DDFA_V2's no-neck
       triangles from ``../shared/data/teacher_3ddfa_v2`` (``indices.npy``, ``tri.pkl``);
    3. the synthetic mesh.
    """
    try:
        try:
            from dsfnet.facemodel import load_face_model
        except ImportError:
            from dsfnet.facemodel.model import load_face_model
        model = load_face_model()
        verts = np.asarray(model.mean, dtype=np.float64)
        tris = np.asarray(model.triangles)
        return verts, tris, f"face model mean ({verts.shape[0]} vertices, {tris.shape[0]} triangles)"
    except Exception as err:  # noqa: BLE001 - any failure means "not available yet": say why, fall back
        print(f"[dsfnet.facemodel.load_face_model() not available: {type(err).__name__}: {err}]")
    try:
        from dsfnet.facemodel import assets

        teacher = Path(__file__).resolve().parents[2] / "shared" / "data" / "teacher_3ddfa_v2"
        mean = np.asarray(assets.load_asset_arrays()["mean"], dtype=np.float64).reshape(-1, 3)
        keep = np.load(teacher / "indices.npy")
        tris = np.asarray(assets.restricted_unpickle((teacher / "tri.pkl").read_bytes())).T.astype(np.int64)
        verts = mean[keep]
        return verts, tris, (f"cached face-model mean + 3DDFA_V2 no-neck triangles ({verts.shape[0]} vertices, "
                             f"{tris.shape[0]} triangles)")
    except Exception as err:  # noqa: BLE001
        print(f"[cached mean + shared triangles not available: {type(err).__name__}: {err}] -> synthetic mesh")
    return synthetic_face_mesh()


def pose_into_image(verts: np.ndarray, size: int, yaw_deg: float = 20.0) -> np.ndarray:
    """Rotate by a yaw, scale the x-y extent to 80 % of a ``size``² image and centre it (image pixels)."""
    from dsfnet.geometry import model_to_image, pose_para_to_matrix

    centred = verts - verts.mean(axis=0)
    rot = pose_para_to_matrix(0.0, np.deg2rad(yaw_deg), 0.0)
    extent = np.ptp(centred[:, :2], axis=0).max()
    s = 0.8 * size / extent
    img = model_to_image(centred, rot, s, [0.0, 0.0, 0.0], float(size))
    img[:, :2] += (size - 1) / 2.0 - (img[:, :2].min(axis=0) + img[:, :2].max(axis=0)) / 2.0
    return img


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (seconds), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_mesh(verts: np.ndarray, tris: np.ndarray, desc: str, args: argparse.Namespace) -> None:
    """Time rasterize vs rasterize_reference on one mesh at each size and print one block per size."""
    n_tri = tris.shape[0]
    print(f"mesh: {desc}")
    for size in args.sizes:
        img_verts = pose_into_image(verts, size)
        t_fast = best_time(lambda: rasterize(img_verts, tris, size, size), args.repeats)
        full = rasterize(img_verts, tris, size, size)

        if args.full_reference or args.ref_triangles >= n_tri:
            sub, note = tris, "full mesh"
        else:
            stride = max(1, n_tri // args.ref_triangles)
            sub = tris[::stride]
            note = (f"on {sub.shape[0]} of {n_tri} triangles (every {stride}th), time extrapolated "
                    f"x{n_tri / sub.shape[0]:.2f}")
        t0 = time.perf_counter()
        ref = rasterize_reference(img_verts, sub, size, size)
        t_ref_sub = time.perf_counter() - t0
        t_ref = t_ref_sub * n_tri / sub.shape[0]
        fast_sub = rasterize(img_verts, sub, size, size)
        same = float(np.mean(fast_sub.face_id == ref.face_id))
        both = fast_sub.mask & ref.mask
        ddepth = float(np.abs(fast_sub.depth[both] - ref.depth[both]).max(initial=0.0))

        print(f"  {size}x{size}: rasterize {t_fast * 1e3:7.1f} ms (best of {args.repeats}; "
              f"{int(full.mask.sum())} covered pixels)")
        print(f"  {'':9}rasterize_reference {t_ref:7.2f} s ({note}; measured {t_ref_sub:.2f} s)")
        print(f"  {'':9}speed ratio reference/rasterize: {t_ref / t_fast:,.0f}x; agreement on the reference's "
              f"triangles: face_id equal on {same:.4%} of pixels, max |depth diff| {ddepth:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--ref-triangles", type=int, default=10000, help="triangles in the reference subset")
    ap.add_argument("--full-reference", action="store_true", help="run the reference on the whole mesh")
    ap.add_argument("--synthetic", action="store_true", help="skip the face model, use the synthetic mesh")
    args = ap.parse_args()

    bench_mesh(*(synthetic_face_mesh() if args.synthetic else face_mesh()), args)
    # a UV-grid-like mesh (128 x 128 vertex grid, ~32k triangles), as rendered for image-space targets
    bench_mesh(*synthetic_face_mesh(128), args)
    # two triangles covering the whole image: the few-large-triangles regime (chunked enumeration)
    for size in args.sizes:
        quad = np.array([[-1.0, -1, 0], [size, -1, 1], [size, size, 2], [-1, size, 1]])
        two = np.array([[0, 1, 2], [0, 2, 3]])
        t_fast = best_time(lambda: rasterize(quad, two, size, size), args.repeats)
        print(f"2 image-covering triangles, {size}x{size}: rasterize {t_fast * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
