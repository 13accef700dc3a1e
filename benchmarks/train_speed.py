"""Training throughput: samples/s of forward + losses + backward + Adam step, per variant and stage branch.

    python benchmarks/train_speed.py                       # lite (batch 16) and paper (batch 2), all branches
    python benchmarks/train_speed.py --variants lite --branches fused --iters 8 --rounds 5 --threads 2
    python benchmarks/train_speed.py --variants lite --branches fused --processes 2   # + 2 DDP ranks x 1 thread

``--processes P`` also runs the step as ``P`` DistributedDataParallel ranks (gloo, one torch thread each, batch
per rank as above; how ``torchrun --nproc_per_node P`` trains on a CPU) and prints their summed samples/s. The
teacher architecture (MobileNetV1-0.5 at 120², one 62-parameter L2 loss, same batch) is measured in the same run
as the baseline, in rounds alternating with the candidates (``--rounds``); every line prints the median samples/s
and the median of the per-round ratios against the teacher.

Inputs are random crops with random targets of the right shapes (speed does not depend on the values).
The face model is the built-in one when its assets are installed, else the analytic stand-in of
``testing.analytic_face``; the UV layout is built once before timing. Numbers depend on what else runs on the
machine: the load average is printed next to them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test doubles in testing/ (not shipped)


def _face(uv_size: int):
    try:
        from dsfnet.facemodel import get_uv_layout, load_face_model

        fm = load_face_model()
        return fm, get_uv_layout(fm, uv_size), "built-in"
    except Exception:  # assets not installed: the analytic stand-in
        from testing.analytic_face import synthetic_face

        fm, lay = synthetic_face(uv_size)
        return fm, lay, "synthetic"


def _batch(model, b: int) -> dict[str, torch.Tensor]:
    s, u = model.config.input_size, model.config.uv_size
    seg = (torch.rand(b, s, s) > 0.5).float()
    return {"image": torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8), "posmap": torch.rand(b, 3, u, u),
            "offset": torch.randn(b, 3, u, u) * 0.05, "shape": torch.randn(b, model.n_shape), "exp": torch.randn(b, model.n_exp),
            "tm": (model.tm_mean + model.tm_std * torch.randn(b, 12) * 0.3).reshape(b, 3, 4),
            "grid": torch.rand(b, 2, s, s) * 2 - 1, "seg": seg, "depth": torch.randn(b, s, s) * 0.05}


def _samples_per_s(step, iters: int, batch: int) -> float:
    """Samples/s of ``iters`` calls of ``step`` (after one warm-up call), ``batch`` samples each."""
    step()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    return iters * batch / (time.perf_counter() - t0)


def teacher_step(batch: int):
    """One training step of the teacher architecture (120² crops → 62 parameters, L2 loss, Adam), as a callable."""
    from dsfnet.teacher.network import TeacherNet

    net = TeacherNet().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-5)
    x, y = torch.randn(batch, 3, 120, 120), torch.randn(batch, 62)

    def step() -> None:
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def training_step(variant: str, batch: int, branch: str, ddp: bool = False):
    """One full training step of ``variant`` on the ``branch`` forward (the trainer's losses and optimiser), as a
    callable. ``ddp``: wrap the model in DistributedDataParallel (the process group must be initialised)."""
    from dsfnet.model import create_model, get_config, images_to_input
    from dsfnet.train.config import OptimSection
    from dsfnet.train.loop import TrainForward, make_optimizer
    from dsfnet.train.losses import LossConfig, LossContext, compute_losses

    cfg = get_config(variant)
    fm, lay, _ = _face(cfg.uv_size)
    model = create_model(variant, face_model=fm, layout=lay)
    model.train()
    ctx = LossContext.from_model(model)
    fwd = TrainForward(model)
    if ddp:  # as the trainer wraps it
        from torch.nn.parallel import DistributedDataParallel

        fwd = DistributedDataParallel(fwd, find_unused_parameters=True)
    opt = make_optimizer(model.parameters(), OptimSection())  # the trainer's optimiser
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

    return step


def measure(variant: str, batch: int, branch: str, iters: int, ddp: bool = False) -> float:
    """Samples/s of ``iters`` training steps (after one warm-up step); see :func:`training_step`."""
    return _samples_per_s(training_step(variant, batch, branch, ddp), iters, batch)


def interleaved(steps: dict, iters: int, batch: int, rounds: int) -> dict[str, list[float]]:
    """Samples/s of each named step in ``rounds`` alternating rounds of ``iters`` steps: a machine whose speed drifts
    (other jobs, frequency changes) then slows every candidate alike, and the median round is reported."""
    runs = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        step()
    for _ in range(rounds):
        for name, step in steps.items():
            runs[name].append(_samples_per_s(step, iters, batch))
    return runs


def _rank(rank: int, world: int, port: int, variant: str, batch: int, branch: str, iters: int, results) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    torch.manual_seed(rank)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        sps = measure(variant, batch, branch, iters, ddp=True)
        dist.barrier()
        results[rank] = sps
    finally:
        dist.destroy_process_group()


def measure_ddp(processes: int, variant: str, batch: int, branch: str, iters: int) -> float:
    """Summed samples/s of ``processes`` DDP ranks (gloo, one thread each) running the same training step."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(processes, port, variant, batch, branch, iters, results), nprocs=processes, join=True)
    return float(sum(results.values()))


def _fmt(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["lite", "paper"])
    p.add_argument("--branches", nargs="+", default=["model", "image", "fused"], help="stage A, B, C forwards")
    p.add_argument("--batch-lite", type=int, default=16)
    p.add_argument("--batch-paper", type=int, default=2)
    p.add_argument("--iters", type=int, default=3, help="training steps per timed round")
    p.add_argument("--rounds", type=int, default=3, help="alternating teacher / variant rounds (medians reported)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="torch thread counts to try (on a loaded machine 1 thread can beat 2 by 10x)")
    p.add_argument("--processes", type=int, default=0, help="also measure this many DDP ranks x 1 thread (0: no)")
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, load average before: {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores; other jobs may share this machine)")
    baseline = {}
    for v in args.variants:
        b = args.batch_lite if v == "lite" else args.batch_paper
        _, _, source = _face(256 if v == "paper" else 128)
        for th in args.threads:
            torch.set_num_threads(th)
            steps = {"teacher": teacher_step(b)}
            steps.update({br: training_step(v, b, br) for br in args.branches})
            runs = interleaved(steps, args.iters, b, args.rounds)
            ref = statistics.median(runs["teacher"])
            baseline[th] = ref
            print(f"teacher MobileNetV1-0.5 @120 batch {b} threads {th}: {ref:7.2f} samples/s (baseline; rounds "
                  f"{_fmt(runs['teacher'])})", flush=True)
            for br in args.branches:
                ratios = [r / t for r, t in zip(runs[br], runs["teacher"])]
                print(f"{v:6s} batch {b:3d} threads {th} branch {br:6s} ({source} face model): "
                      f"{statistics.median(runs[br]):7.2f} samples/s = {statistics.median(ratios):.3f} x teacher "
                      f"(median of rounds {_fmt(runs[br])}; load average now {os.getloadavg()[0]:.2f})", flush=True)
        if args.processes > 1:
            for br in args.branches:
                sps = measure_ddp(args.processes, v, b, br, args.iters)
                ref = baseline.get(1)
                ratio = f" = {sps / ref:.3f} x teacher at 1 thread" if ref else ""
                print(f"{v:6s} batch {b:3d} x {args.processes} DDP ranks x 1 thread branch {br:6s}: {sps:7.2f} samples/s"
                      f"{ratio} (load average now {os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()
