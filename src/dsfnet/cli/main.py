"""Entry point of the ``dsfnet`` command.

Each subcommand lives in its own module ``dsfnet.cli.<name>`` exposing ``add_parser(subparsers)`` which
registers the parser and sets ``func`` (a callable taking the parsed namespace and returning an exit code).
Modules are discovered automatically; ``ORDER`` only fixes how they are listed in ``--help``.

Errors end in one line on stderr and a documented exit code (:data:`EXIT_CODES`); ``--debug`` anywhere on the
command line (or ``DSFNET_DEBUG=1``) shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import Sequence

from dsfnet import __version__

#: listing order in --help; modules not named here follow alphabetically
ORDER = ["predict", "eval", "train", "data", "fit", "export_onnx", "assets"]

#: exit codes of every subcommand (README, "Exit codes")
EXIT_CODES = {
    0: "success",
    1: "some inputs failed (each named on stderr and, for predict, in results.jsonl); the rest were done",
    2: "usage error or bad input: arguments, paths, images, boxes, checkpoints, ONNX files",
    3: "set-up error: the face model could not be obtained, verified or cached",
    4: "internal error (a bug: re-run with --debug and report the traceback)",
    130: "interrupted (Ctrl-C)",
    143: "terminated (SIGTERM; predict keeps the records written so far)",
}
EPILOG = "exit codes: " + "; ".join(f"{k} {v.split(':')[0].split(' (')[0]}" for k, v in EXIT_CODES.items()) + (
    ". --debug (anywhere) shows tracebacks.")


def _subcommand_modules() -> list[str]:
    import dsfnet.cli as pkg

    found = {m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in ("main", "common")}
    return [m for m in ORDER if m in found] + sorted(found - set(ORDER))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsfnet",
        description="DSFNet 3D dense face alignment: predict, evaluate, train, export.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"dsfnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _subcommand_modules():
        mod = importlib.import_module(f"dsfnet.cli.{module}")
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("DSFNET_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "device", None) is not None:
            check_device(args.device)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("dsfnet: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error becomes one line unless --debug
        if debug:
            raise
        code = exit_code_for(exc)
        hint = " (re-run with --debug for the traceback, and please report it)" if code == 4 else ""
        first, *rest = _message_lines(exc)
        print(f"dsfnet {args.command}: error: {first}{hint}", file=sys.stderr)
        for line in rest:  # e.g. the commands that install the face model offline
            print(f"  {line}", file=sys.stderr)
        return code


def check_device(name: str) -> None:
    """Refuse a ``--device`` that torch cannot parse or that this machine does not have (ValueError: exit code 2)."""
    if name == "cpu":  # the default: no need to import torch (the ONNX Runtime backend runs without it)
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from exc
    available = {"cpu": lambda: True, "cuda": torch.cuda.is_available,
                 "mps": lambda: hasattr(torch.backends, "mps") and torch.backends.mps.is_available()}
    if not available.get(device.type, lambda: True)():
        raise ValueError(f"--device {name}: no {device.type} device on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code (:data:`EXIT_CODES`) of an exception that ended a subcommand."""
    from dsfnet.facemodel.assets import AssetError

    if isinstance(exc, AssetError):
        return 3
    if isinstance(exc, (OSError, ValueError)):  # our input errors (images, checkpoints, paths) derive from these
        return 2
    return 4


def _message_lines(exc: BaseException) -> list[str]:
    """The exception's message as non-empty lines: the error itself, then any instructions it carries."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return [line.strip() for line in text.splitlines() if line.strip()]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
