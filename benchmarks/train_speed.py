"""Training throughput: samples/s of forward + losses + backward + Adam step, per variant and stage branch.

    python benchmarks/train_speed.py                       # lite (batch 16) and paper (batch 2), all branches
    python benchmarks/train_speed.py --variants lite --branches fused --iters 5 --threads 2

Inputs are random crops with random targets of the right shapes (speed does not depend on the values).
The face model is the built-in one when its assets are installed, else the analytic stand-in of
``dsfnet.model._synthetic``; the UV layout is built once before timing. Numbers depend on what else runs on the
machine: the load average is printed next to them.
"""
from __future__ import annotations

import argparse
import os
import time

import torch


def _face(uv_size: int):
    try:
        from dsfnet.facemodel import get_uv_layout, load_face_model

        fm = load_face_model()
        return fm, get_uv_layout(fm, uv_size), "built-in"
    except Exception:  # assets not installed: the analytic stand-in
        from dsfnet.model._synthetic import synthetic_face

        fm, lay = synthetic_face(uv_size)
        return fm, lay, "synthetic"


def _batch(model, b: int) -> dict[str, torch.Tensor]:
    s, u = model.config.input_size, model.config.uv_size
    seg = (torch.rand(b, s, s) > 0.5).float()
    return {"image": torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8), "posmap": torch.rand(b, 3, u, u),
            "offset": torch.randn(b, 3, u, u) * 0.05, "shape": torch.randn(b, model.n_shape), "exp": torch.randn(b, model.n_exp),
            "tm": (model.tm_mean + model.tm_std * torch.randn(b, 12) * 0.3).reshape(b, 3, 4),
            "grid": torch.rand(b, 2, s, s) * 2 - 1, "seg": seg, "depth": torch.randn(b, s, s) * 0.05}


def measure(variant: str, batch: int, branch: str, iters: int) -> float:
    """Samples/s of full training steps (after one warm-up step) for ``variant`` on the ``branch`` forward."""
    from dsfnet.model import create_model, get_config
    from dsfnet.train.loop import TrainForward, images_to_input
    from dsfnet.train.losses import LossConfig, LossContext, compute_losses

    cfg = get_config(variant)
    fm, lay, _ = _face(cfg.uv_size)
    model = create_model(variant, face_model=fm, layout=lay)
    model.train()
    fwd = TrainForward(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    ctx = LossContext.from_model(model)
    stage = {"model": 0, "image": 1, "fused": 2}[branch]
    terms = LossConfig().stages[stage].terms
    weights = {t: (1.0 if t in terms and t not in ("edge", "normal") else 0.0) for t in terms}
    data = _batch(model, batch)

    def step() -> None:
        x = images_to_input(data["image"])
        out = fwd(x, branch)
        total, _ = compute_losses(out, data, ctx, weights)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    return iters * batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["lite", "paper"])
    p.add_argument("--branches", nargs="+", default=["model", "image", "fused"], help="stage A, B, C forwards")
    p.add_argument("--batch-lite", type=int, default=16)
    p.add_argument("--batch-paper", type=int, default=2)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch thread counts to try (on a loaded machine 1 thread can beat 2 by 10x)")
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, load average before: {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores; other jobs may share this machine)")
    for v in args.variants:
        b = args.batch_lite if v == "lite" else args.batch_paper
        _, _, source = _face(256 if v == "paper" else 128)
        for th in args.threads:
            torch.set_num_threads(th)
            for br in args.branches:
                sps = measure(v, b, br, args.iters)
                print(f"{v:6s} batch {b:3d} threads {th} branch {br:6s} ({source} face model): {sps:7.2f} samples/s "
                      f"(load average now {os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()
