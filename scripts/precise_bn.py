"""Recompute a checkpoint's BatchNorm running statistics over augmented training batches (precise BN).

    python scripts/precise_bn.py runs/lite6_96.pt runs/lite6_96_pbn.pt --data runs/ytf68_pitch runs/facemask_build

The model is rebuilt from the checkpoint's recorded configuration; only BatchNorm running statistics change
(:mod:`dsfnet.train.batchnorm`). The batches are a seeded random draw from the builds' training splits, augmented as
in training. The output keeps the checkpoint's training configuration but no optimiser state.
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader, Subset

from dsfnet.model import images_to_input
from dsfnet.model.checkpoint import model_from_checkpoint, save_checkpoint
from dsfnet.train.batchnorm import recompute_batchnorm_statistics
from dsfnet.train.data import ConcatSamples, open_dataset
from dsfnet.train.loaders import SeededSamples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="checkpoint (.pt) of a DSFNet variant")
    ap.add_argument("target", help="output checkpoint")
    ap.add_argument("--data", nargs="+", required=True, help="build folders (their training splits are used)")
    ap.add_argument("--batches", type=int, default=300, help="batches to average over (default 300)")
    ap.add_argument("--batch-size", type=int, default=16, help="samples per batch, as in training (default 16)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.batches < 1 or args.batch_size < 2:
        ap.error("--batches must be >= 1 and --batch-size >= 2")

    model, ckpt = model_from_checkpoint(args.source)
    # each sample's augmentation is drawn from (seed, 0, index), as the trainer's SeededSamples does
    train = SeededSamples(ConcatSamples([open_dataset(d, model, augment=True, split="train") for d in args.data]),
                          args.seed)
    n = min(args.batches * args.batch_size, len(train))
    picked = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[:n].tolist()
    loader = DataLoader(Subset(train, picked), batch_size=args.batch_size, drop_last=True)
    used = recompute_batchnorm_statistics(model, loader, lambda m, b: m(images_to_input(b["image"])))
    save_checkpoint(args.target, model, config=ckpt.get("config"))
    print(f"BatchNorm statistics from {used} batches of {args.batch_size} -> {args.target}")


if __name__ == "__main__":
    main()
