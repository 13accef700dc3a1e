"""Two gloo processes on CPU train the toy network with DDP; both replicas must stay bit-identical."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

TOY = {
    "model": {"variant": "toy"},
    "data": {"synthetic": 16, "batch_size": 2, "val_batch_size": 4, "num_workers": 0, "augment": False},
    "optim": {"epochs": 1.5, "lr_base": 1e-3, "lr_peak": 1e-3, "warmup_epochs": 0, "decay": 1.0},
    "loss": {"stages": [{"name": "A", "until": 0.5, "branch": "model", "terms": ["grid", "seg", "depth", "conf", "tm_ms"]},
                        {"name": "C", "until": 1.0, "branch": "fused",
                         "terms": ["grid", "seg", "depth", "shape_ms", "kpt_f", "offset_f"]}]},
    "run": {"log_every": 1, "progress": False, "checkpoint_minutes": 0, "threads": 1},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist

    from dsfnet.train.config import TrainConfig
    from dsfnet.train.loop import Trainer
    from testing.toy_network import registered_toy, toy_datasets

    with registered_toy():  # a spawned process: the test's registry is not inherited
        train_set, val_set = toy_datasets(TOY["data"]["synthetic"])
        trainer = Trainer(TrainConfig.from_dict(TOY), run_dir, train_set=train_set, val_set=val_set)
        result = trainer.fit()
    state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    torch.save({"state": state, "step": result.step, "status": result.status}, Path(run_dir) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_gloo_processes_keep_replicas_identical(tmp_path):
    run_dir = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(run_dir)), nprocs=2, join=True)
    r0 = torch.load(run_dir / "rank0.pt", weights_only=True)
    r1 = torch.load(run_dir / "rank1.pt", weights_only=True)
    # 16 samples / (batch 2 x 2 processes) = 4 steps per epoch, 1.5 epochs
    assert r0["step"] == r1["step"] == 6 and r0["status"] == r1["status"] == "finished"
    from testing.toy_network import ToyNet

    torch.manual_seed(0)
    initial = ToyNet().state_dict()
    moved = 0
    for k, v in r0["state"].items():  # parameters by DDP's gradient averaging, buffers by the final broadcast
        assert torch.allclose(v.float(), r1["state"][k].float(), atol=1e-7, rtol=0), k
        if v.dtype.is_floating_point and not torch.equal(v, initial[k]):
            moved += 1
    assert moved > 5  # training did change the parameters
    # rank 0 alone logged and checkpointed
    from dsfnet.train import load_checkpoint

    assert load_checkpoint(run_dir / "last.pt", "toy")["train"]["step"] == 6
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "best.pt.sha256", "config.yaml", "last.pt",
                                                        "last.pt.sha256", "metrics.csv", "rank0.pt", "rank1.pt"]


def _worker_dies(rank: int, world: int, port: int, run_dir: str, die_at: int) -> None:
    """Like :func:`_worker`, but rank 1 is killed (``os._exit``) when it reaches step ``die_at``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), DSFNET_DIST_TIMEOUT="20")
    from dsfnet.train.config import TrainConfig
    from dsfnet.train.loop import Trainer
    from testing.toy_network import registered_toy, toy_datasets

    with registered_toy():
        train_set, val_set = toy_datasets(TOY["data"]["synthetic"])
        trainer = Trainer(TrainConfig.from_dict(TOY), run_dir, train_set=train_set, val_set=val_set)
        step = trainer._train_step

        def maybe_die(batch):
            if rank == 1 and trainer.step == die_at:
                os._exit(1)  # a rank dies mid-run: no checkpoint, no goodbye
            return step(batch)

        trainer._train_step = maybe_die
        trainer.fit()


@pytest.mark.slow
def test_ddp_run_survives_a_dead_rank_by_resuming_from_the_last_checkpoint(tmp_path):
    """Rank 1 dies at step 5 (after the epoch-end checkpoint at step 4); the other rank fails instead of hanging;
    rerunning both ranks resumes from last.pt at step 4 and finishes (#17)."""
    run_dir = tmp_path / "run"
    ctx = mp.start_processes(_worker_dies, args=(2, _free_port(), str(run_dir), 5), nprocs=2, join=False,
                             start_method="spawn")
    with pytest.raises(Exception):  # noqa: B017 - torch reports the dead rank as ProcessExitedException
        while not ctx.join(timeout=120):
            pass
    for p in ctx.processes:
        if p.is_alive():
            p.kill()
    from dsfnet.train import load_checkpoint

    assert load_checkpoint(run_dir / "last.pt", "toy")["train"]["step"] == 4
    mp.spawn(_worker, args=(2, _free_port(), str(run_dir)), nprocs=2, join=True)
    r0 = torch.load(run_dir / "rank0.pt", weights_only=True)
    assert r0["step"] == 6 and r0["status"] == "finished"
    assert load_checkpoint(run_dir / "last.pt", "toy")["train"]["step"] == 6
