"""``dsfnet export-onnx``: export a trained model to ONNX for the ``--backend onnx`` path.

The export itself belongs to the model package (``dsfnet.model.export_onnx``); this command resolves the
weights, writes the file atomically (temporary name in the same folder, then rename) and checks that the
result loads in ONNX Runtime with the outputs the ``onnx`` backend needs (``face_uvm``, ``rotation``).
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export-onnx",
        help="export a trained model to ONNX",
        description="Export the network to an .onnx file usable with `dsfnet predict --backend onnx`.",
    )
    p.add_argument("--config", default="lite", help="model variant: lite (default) or paper")
    p.add_argument("--weights", metavar="FILE", help="torch weights (.pt); default: $DSFNET_WEIGHTS or the packaged weights")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; grid_sample needs >= 16)")
    p.set_defaults(func=run)
    return p


def _err(msg: str) -> None:
    print(f"dsfnet export-onnx: {msg}", file=sys.stderr)


def _find_export():
    """The model package's export function, or None."""
    try:
        import dsfnet.model as model_pkg
    except ImportError:
        return None
    fn = getattr(model_pkg, "export_onnx", None)
    if fn is None:
        try:
            from dsfnet.model.export import export_onnx as fn  # type: ignore[no-redef]
        except ImportError:
            return None
    return fn


def run(args: argparse.Namespace) -> int:
    from dsfnet.inference.runner import WeightsNotFoundError, resolve_weights

    out = Path(args.output)
    if out.suffix.lower() != ".onnx":
        _err(f"the output file must end in .onnx, got {out.name}")
        return 2
    export = _find_export()
    if export is None:
        _err("this version of dsfnet has no ONNX exporter yet (dsfnet.model.export_onnx is missing); "
             "use --backend torch")
        return 2
    try:
        weights = resolve_weights(args.config, "torch", args.weights)
    except WeightsNotFoundError as exc:
        _err(str(exc))
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        offered = {"config": args.config, "name": args.config, "weights": str(weights), "path": tmp,
                   "output": tmp, "opset": args.opset, "opset_version": args.opset}
        params = inspect.signature(export).parameters
        kwargs = {k: v for k, v in offered.items() if k in params}
        export(**kwargs)
        from dsfnet.inference.runner import OnnxRunner

        runner = OnnxRunner(tmp)
        os.replace(tmp, out)
    except Exception as exc:
        _err(f"export failed: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {out} (input {runner.input_size}x{runner.input_size}, UV {runner.uv_size})", file=sys.stderr)
    return 0
