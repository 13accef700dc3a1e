"""Score checkpoints on the validation (held-out identity) split of training builds, as the trainer validates.

    python scripts/score_heldout.py runs/lite6last_96_pbn.pt --data runs/ytf68_pitch runs/ytf68_pitch50

Per build: 68-point NME (%, over the landmark box, against the build's fitted labels) and pose MAE (degrees,
against the build's fitted poses) on ``--samples`` evenly spaced validation samples, unaugmented. Each model is rebuilt
from its checkpoint's recorded configuration, so the build needs a cache at that input and UV size.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from dsfnet.model.checkpoint import model_from_checkpoint
from dsfnet.train.data import open_dataset
from dsfnet.train.loaders import SeededSamples
from dsfnet.train.validation import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="checkpoints (.pt)")
    ap.add_argument("--data", nargs="+", required=True, help="build folders (their validation splits are used)")
    ap.add_argument("--samples", type=int, default=512, help="evenly spaced samples per build (default 512; 0 = all)")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    for path in args.checkpoints:
        model, _ = model_from_checkpoint(path)
        for build in args.data:
            ds = open_dataset(build, model, augment=False, split="val")
            if 0 < args.samples < len(ds):
                ds = Subset(ds, np.linspace(0, len(ds) - 1, args.samples).astype(int).tolist())
            r = evaluate(model, DataLoader(SeededSamples(ds, 0), batch_size=args.batch_size), torch.device("cpu"))
            print(f"{path}  {build}  n={len(ds)}  NME {100 * r['val_nme']:.3f}%  pose MAE {r['val_pose_mae']:.2f} deg",
                  flush=True)


if __name__ == "__main__":
    main()
