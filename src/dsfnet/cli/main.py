"""Entry point of the ``dsfnet`` command.

Each subcommand lives in its own module ``dsfnet.cli.<name>`` exposing ``add_parser(subparsers)`` which
registers the parser and sets ``func`` (a callable taking the parsed namespace and returning an exit code).
Modules are discovered automatically; ``ORDER`` only fixes how they are listed in ``--help``.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from dsfnet import __version__

#: listing order in --help; modules not named here follow alphabetically
ORDER = ["predict", "eval", "train", "data", "fit", "export_onnx", "assets"]


def _subcommand_modules() -> list[str]:
    import dsfnet.cli as pkg

    found = {m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in ("main", "common")}
    return [m for m in ORDER if m in found] + sorted(found - set(ORDER))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsfnet",
        description="DSFNet 3D dense face alignment: predict, evaluate, train, export.",
    )
    parser.add_argument("--version", action="version", version=f"dsfnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _subcommand_modules():
        mod = importlib.import_module(f"dsfnet.cli.{module}")
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("dsfnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
