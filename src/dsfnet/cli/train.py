"""``dsfnet train``: train a DSFNet variant (resumable; ``torchrun`` for several processes/GPUs/nodes).

Examples::

    dsfnet train --config lite --data OUT --run-dir runs/lite
    dsfnet train --config lite --data OUT --set optim.lr_peak=2e-4 --set data.batch_size=32
    dsfnet train --config lite --data OUT_ytf68 --data OUT_facemask --run-dir runs/lite_mix
    torchrun --nproc_per_node 2 -m dsfnet.cli.main train --config lite --data OUT --run-dir runs/lite2

Rerunning the same command resumes from ``RUN_DIR/last.pt``. SIGTERM/SIGINT and ``--max-minutes`` save
``last.pt`` and exit 0 (the printed status says why the run stopped).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a DSFNet model (resumable, DDP via torchrun)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help="named config (lite, paper, overfit) or a YAML file; default: RUN_DIR/config.yaml "
                        "when resuming, else lite")
    p.add_argument("--data", action="append", default=None,
                   help="training data: sample cache folder, .jsonl index or 'dsfnet data build' folder; repeat "
                        "(--data A --data B) to train on several sources at once (concatenated)")
    p.add_argument("--val", action="append", default=None,
                   help="validation data (same forms as --data, repeatable); default: the val split of each "
                        "'dsfnet data build' folder in --data")
    p.add_argument("--run-dir", default=None, help="run folder (checkpoints, metrics.csv, config.yaml); default runs/<config>")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted path, YAML value), e.g. optim.lr_peak=2e-4; repeatable")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (after saving) after this many minutes")
    p.add_argument("--teacher-init", default=None,
                   help="initialise the lite backbone from 3DDFA_V2 MobileNet weights (mb05_120x120.pth)")
    p.add_argument("--init-weights", default=None,
                   help="start from this DSFNet checkpoint or released weights (fine-tuning; fresh schedule)")
    p.set_defaults(func=run)
    return p


def config_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` items plus the dedicated options as ``key=<JSON value>`` overrides (a repeated ``--data`` /
    ``--val`` becomes a list of sources, a single one stays a plain path)."""
    overrides = list(args.overrides)
    data, val = (v[0] if isinstance(v, list) and len(v) == 1 else v for v in (args.data, args.val))
    for key, value in (("data.train", data), ("data.val", val), ("run.max_minutes", args.max_minutes),
                       ("run.teacher_init", args.teacher_init), ("run.init_weights", args.init_weights)):
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    return overrides


def run(args: argparse.Namespace) -> int:
    from dsfnet.train.config import TrainConfig
    from dsfnet.train.loop import CONFIG_NAME, train

    source = args.config
    if source is None and args.run_dir and (Path(args.run_dir) / CONFIG_NAME).is_file():
        source = str(Path(args.run_dir) / CONFIG_NAME)
    source = source or "lite"
    try:
        config = TrainConfig.load(source, config_overrides(args))
    except (ValueError, FileNotFoundError) as e:
        print(f"dsfnet train: {e}", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / Path(str(source)).stem
    from dsfnet.model.checkpoint import CheckpointError

    try:
        result = train(config, run_dir)
    except (CheckpointError, FileNotFoundError) as e:  # a bad --init-weights / --teacher-init file, or resuming one
        print(f"dsfnet train: {e}", file=sys.stderr)
        return 2
    print(f"dsfnet train: {result.status} at step {result.step} (epoch {result.epoch}); "
          f"{final_metric_text(result.best_metric)}; run folder {result.run_dir}", file=sys.stderr)
    return 0


def final_metric_text(best_nme: float) -> str:
    """The run's best validation NME as people read it everywhere else (percent), or why there is none.

    >>> final_metric_text(0.0249), final_metric_text(float("inf"))
    ('best val NME 2.49%', 'no validation NME (no validation data, or no validation ran): best.pt is not chosen on held-out faces')
    """
    if not math.isfinite(best_nme):
        return "no validation NME (no validation data, or no validation ran): best.pt is not chosen on held-out faces"
    return f"best val NME {100 * best_nme:.2f}%"
