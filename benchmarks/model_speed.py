"""Speed of the DSFNet variants against the 3DDFA_V2 teacher architecture (MobileNetV1-0.5 at 120×120).

Prints, in one run (torch.set_num_threads(2) by default):

* batch-1 forward (inference mode, calls interleaved) of the teacher architecture and of ``lite`` (full pipeline: heads, scatter,
  three alignments, PointNet, fusion UNet, final alignment), median of N runs, and their ratio;
* multiply-accumulates of the convolution/linear layers of each network (hooks; the UV-space einsums,
  scatter and 3×3 SVDs are not counted);
* forward+backward samples/s at batch 16 for ``lite`` and ``paper`` (training mode, all heads, a scalar loss
  over every output) unless ``--no-train``.

The networks run with random weights on the analytic stand-in face (``testing.analytic_face``), so no assets
are needed; timing does not depend on the weights. Usage::

    python benchmarks/model_speed.py [--runs 30] [--threads 2] [--train-runs 3] [--no-train] [--no-paper]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from dsfnet.model import create_model, get_config
from dsfnet.teacher.network import TeacherNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test doubles in testing/ (not shipped)
from testing.analytic_face import synthetic_face  # noqa: E402


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of Conv/ConvTranspose/Linear layers for one call of ``model(*inputs)``."""
    total = 0

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            k = mod.weight[0].numel()  # (C_in/groups) * kh * kw
            total += out.numel() * k
        elif isinstance(mod, nn.ConvTranspose2d):
            total += inp[0].numel() * mod.out_channels * mod.weight.shape[2] * mod.weight.shape[3] // mod.groups
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.inference_mode():
        model(*inputs)
    for h in handles:
        h.remove()
    return total // inputs[0].shape[0]


def median_ms(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def paired_median_ms(fns: list, runs: int, warmup: int = 3) -> list[float]:
    """Median ms of each callable, calling them alternately so that they see the same machine load."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append((time.perf_counter() - t) * 1e3)
    return [statistics.median(t) for t in times]


def build(name: str):
    fm, layout = synthetic_face(get_config(name).uv_size)
    return create_model(name, fm, layout=layout)


def train_throughput(name: str, batch: int, runs: int, warmup: int) -> float:
    model = build(name).train()
    s = model.config.input_size
    x = torch.randn(batch, 3, s, s)
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        out = model(x)
        loss = sum(v.float().square().mean() for v in out.values() if v.dtype.is_floating_point)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        del grads

    ms = median_ms(step, runs, warmup=warmup)
    return batch / (ms / 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-runs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-paper", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    teacher = TeacherNet().eval()
    lite = build("lite").eval()
    xt = torch.randn(1, 3, 120, 120)
    xl = torch.randn(1, 3, lite.config.input_size, lite.config.input_size)
    print(f"threads={args.threads}  batch=1  median of {args.runs} runs (inference mode); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes skew timings)")
    print(f"MACs  teacher MobileNetV1-0.5 @120: {count_macs(teacher, xt) / 1e6:8.1f} M")
    print(f"MACs  lite image stage @{lite.config.input_size}:      {count_macs(lite.image_stage, xl) / 1e6:8.1f} M")
    print(f"MACs  lite full network (convs/linears): {count_macs(lite, xl) / 1e6:8.1f} M")
    with torch.inference_mode():
        t_teacher, t_lite, t_lite_img, t_lite_model = paired_median_ms(
            [lambda: teacher(xt), lambda: lite(xl), lambda: lite.image_stage(xl), lambda: lite(xl, branch="model")], args.runs)
    print(f"teacher forward              : {t_teacher:7.2f} ms")
    print(f"lite image stage only        : {t_lite_img:7.2f} ms")
    print(f"lite forward, branch='model' : {t_lite_model:7.2f} ms")
    print(f"lite forward, branch='fused' : {t_lite:7.2f} ms")
    print(f"RATIO lite/teacher (fused, full pipeline): {t_lite / t_teacher:.2f}x  (target <= 4x)")
    if not args.no_paper:
        paper = build("paper").eval()
        xp = torch.randn(1, 3, 256, 256)
        print(f"MACs  paper full network (convs/linears): {count_macs(paper, xp) / 1e9:6.2f} G")
        with torch.inference_mode():
            print(f"paper forward, branch='fused': {median_ms(lambda: paper(xp), max(3, args.runs // 10), warmup=1):7.1f} ms")
        del paper
    if not args.no_train:
        names = ["lite"] + ([] if args.no_paper else ["paper"])
        for name in names:
            # paper: one untimed warm-up would double an already long run; its first step is timed
            sps = train_throughput(name, args.batch, args.train_runs, warmup=1 if name == "lite" else 0)
            print(f"train fwd+bwd {name:5s} batch {args.batch}: {sps:7.1f} samples/s")


if __name__ == "__main__":
    main()
