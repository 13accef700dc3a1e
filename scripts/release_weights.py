"""Copy a training checkpoint into the package as shipped weights (inference-only, licence recorded), and export
them beside it as the ONNX folder the CPU default backend runs (``<target stem>-onnx/``: ``network.onnx`` +
``meta.json``; ``tests/test_inference.py`` checks that the two agree).

    python scripts/release_weights.py runs/lite1/best.pt src/dsfnet/weights/lite.pt --note data=ytf68_build
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from dsfnet.model.checkpoint import release_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="training checkpoint (best.pt / last.pt)")
    ap.add_argument("target", help="output .pt (e.g. src/dsfnet/weights/lite.pt)")
    ap.add_argument("--note", action="append", default=[], metavar="KEY=VALUE", help="recorded in meta.release")
    args = ap.parse_args()
    notes = dict(n.split("=", 1) for n in args.note)
    print(json.dumps(release_weights(args.source, args.target, notes=notes), indent=1))
    target = Path(args.target)
    from dsfnet.cli.main import main as dsfnet

    variant = target.stem
    code = dsfnet(["export-onnx", "--config", variant, "--weights", str(target), "-o",
                   str(target.with_name(f"{variant}-onnx")), "--force"])
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
