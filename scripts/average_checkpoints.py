"""Average checkpoints of one run (weights only), optionally as the variant's current default configuration.

    python scripts/average_checkpoints.py runs/lite14_avg.pt runs/lite14/epoch_00{3,4,5,6}.pt --as-default

``--as-default`` rebuilds the result with the variant's default configuration instead of the recorded one (e.g.
weights trained at 128² UV, fusion pooling 4, used at the lite default 96², pooling 3: DSFNet's weights do not depend
on the UV size); with one checkpoint that is a plain conversion. Recompute the BatchNorm statistics of the result
afterwards (``scripts/precise_bn.py``): the average of running statistics is not the averaged network's statistics.
The output has no optimiser state; it keeps the first checkpoint's training configuration.
"""
from __future__ import annotations

import argparse

from dsfnet.model import create_model
from dsfnet.model.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from dsfnet.train.averaging import average_state_dicts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="output checkpoint")
    ap.add_argument("sources", nargs="+", help="checkpoints (.pt) of one variant and configuration")
    ap.add_argument("--as-default", action="store_true", help="rebuild with the variant's default configuration")
    args = ap.parse_args()

    model, first = model_from_checkpoint(args.sources[0])
    variant = first["meta"]["variant"]
    states = [{k: v.clone() for k, v in model.state_dict().items()}]
    for path in args.sources[1:]:
        load_checkpoint(path, variant, model=model)  # strict: same variant, face model, sizes, tensors
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    if args.as_default:
        model = create_model(variant)
    model.load_state_dict(average_state_dicts(states), strict=True)
    save_checkpoint(args.target, model, config=first.get("config"))
    print(f"mean of {len(states)} checkpoint(s), UV {model.config.uv_size}² -> {args.target}")


if __name__ == "__main__":
    main()
