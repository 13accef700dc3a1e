"""Entry point of the ``dsfnet`` command.

Each subcommand lives in its own module ``dsfnet.cli.<name>`` exposing ``add_parser(subparsers)`` which
registers the parser and sets ``func`` (a callable taking the parsed namespace and returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from dsfnet import __version__

#: subcommand name -> module under dsfnet.cli (imported lazily so `dsfnet --help` stays fast)
SUBCOMMANDS: dict[str, str] = {
    "assets": "assets",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsfnet",
        description="DSFNet 3D dense face alignment: predict, evaluate, train, export.",
    )
    parser.add_argument("--version", action="version", version=f"dsfnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
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
