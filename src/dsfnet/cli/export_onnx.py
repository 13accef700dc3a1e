"""``dsfnet export-onnx``: export trained torch weights for ``dsfnet predict --backend onnx``.

The model package exports the whole network as one ONNX graph, ``network.onnx`` (standardised crop → UV map,
rotation, fallback flag, visibility; the similarity fits with the SVD-free quaternion solver; see
``dsfnet.model.export``). This command writes it plus ``meta.json`` (the checkpoint's recorded config, sizes,
face-model fingerprint and ``tm`` statistics) into one folder, checks that ONNX Runtime reproduces the torch outputs
on a test crop, and only then moves the folder into place (built under a temporary name next to it: no half-written
export).

With ``-o NAME.onnx`` the output is the graph alone, one self-contained file: ``meta.json``'s content is embedded in
the graph's metadata (``metadata_props`` key ``dsfnet_meta``), and ``--backend onnx --weights NAME.onnx`` runs it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export-onnx",
        help="export trained weights to ONNX (for --backend onnx)",
        description="Export the network to a folder of ONNX graphs usable with `dsfnet predict --backend onnx --weights DIR`.",
    )
    p.add_argument("--config", default="lite", help="model variant: lite (default; weights shipped) or paper (no shipped weights)")
    p.add_argument("--weights", metavar="FILE", help="torch checkpoint (.pt); default: $DSFNET_WEIGHTS or the packaged weights")
    p.add_argument("-o", "--output", required=True, metavar="DIR|FILE.onnx",
                   help="output folder (e.g. lite-onnx); it receives network.onnx and meta.json. A name ending in "
                        ".onnx writes the whole network as that one file")
    p.add_argument("--force", action="store_true", help="replace an existing export folder")
    p.set_defaults(func=run)
    return p


def _err(msg: str) -> None:
    print(f"dsfnet export-onnx: {msg}", file=sys.stderr)


def export_folder(model, output: str | os.PathLike, config: str, *, force: bool = False,
                  face_model=None) -> tuple[Path, float]:
    """Export ``model`` into the folder ``output`` atomically; returns ``(folder, max |onnx − torch|)`` of ``face_uvm``
    on a noise crop (pm units).

    Raises:
        FileExistsError: ``output`` exists and ``force`` is false.
        ValueError: the export does not reproduce the torch model (max abs difference > 1e-3 pm units).
    """
    import json

    import numpy as np

    from dsfnet.inference.onnx import OnnxRunner
    from dsfnet.inference.runner import TorchRunner
    from dsfnet.model.checkpoint import model_metadata
    from dsfnet.model.export import export_onnx

    out = Path(output)
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700
    old = None
    try:
        export_onnx(model, tmp)
        meta = model_metadata(model)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        s = int(model.config.input_size)
        crop = np.random.default_rng(0).integers(0, 256, (1, s, s, 3), dtype=np.uint8)
        ref = TorchRunner(model, with_seg=False)(crop)["face_uvm"]
        got = OnnxRunner(tmp, config, face_model=face_model, with_seg=False)(crop)["face_uvm"]
        diff = float(np.abs(ref - got).max())
        if not diff <= 1e-3:
            raise ValueError(f"ONNX Runtime output differs from torch by {diff:.3g} pm units (limit 1e-3)")
        if out.suffix.lower() == ".onnx":  # the single graph alone, with the metadata inside it
            from dsfnet.io.writers import atomic_write_bytes
            from dsfnet.model.export import embed_metadata
            from dsfnet.model.weights import NETWORK_FILE

            atomic_write_bytes(out, embed_metadata(tmp / NETWORK_FILE, meta))
            return out, diff
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)
    return out, diff


def run(args: argparse.Namespace) -> int:
    from dsfnet.inference.runner import TorchRunner
    from dsfnet.model import create_model
    from dsfnet.model.weights import WeightsNotFoundError

    out = Path(args.output)
    if out.exists() and not args.force:
        _err(f"{out} exists; pass --force to replace it")
        return 2
    try:
        import dsfnet.model.export  # noqa: F401
    except ImportError as exc:
        _err(f"this install has no ONNX exporter (dsfnet.model.export): {exc}")
        return 2
    try:
        runner = TorchRunner(create_model(args.config, weights="shipped" if args.weights is None else args.weights))
    except WeightsNotFoundError as exc:
        _err(str(exc))
        return 2
    except ValueError as exc:
        _err(f"cannot load the weights: {exc}")
        return 2
    try:
        folder, diff = export_folder(runner.model, out, args.config, force=args.force)
    except Exception as exc:
        _err(f"export failed: {type(exc).__name__}: {exc}")
        return 1
    print(f"wrote {folder} (input {runner.input_size}x{runner.input_size}, UV {runner.uv_size}; "
          f"max |onnx - torch| = {diff:.2e} pm units)", file=sys.stderr)
    return 0
