"""Trainer tests on the tiny toy network: config resolution, checkpoints, exact resume, SIGTERM."""
from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from dsfnet.model import checkpoint as ckpt_mod
from dsfnet.train import CheckpointError, TrainConfig, load_checkpoint
from dsfnet.train import loop
from testing.toy_network import ToyNet, toy_datasets

pytestmark = pytest.mark.usefixtures("toy_network")

TOY = {
    "model": {"variant": "toy"},
    "data": {"synthetic": 16, "batch_size": 4, "val_batch_size": 4, "num_workers": 0, "augment": False},
    "optim": {"epochs": 2, "lr_base": 1e-3, "lr_peak": 2e-3, "warmup_epochs": 0.5, "decay": 0.9},
    "run": {"log_every": 1, "progress": False, "checkpoint_minutes": 0},
}


def _config(**sets) -> TrainConfig:
    return TrainConfig.from_dict(_merge(TOY, sets))


def train(config: TrainConfig, run_dir, **kwargs):
    """The trainer on the toy data: 16 training and 4 validation samples (``data.synthetic``: their count)."""
    train_set, val_set = toy_datasets(config.data.synthetic, seed=config.run.seed)
    return loop.train(config, run_dir, **{"train_set": train_set, "val_set": val_set, **kwargs})


def _merge(base: dict, sets: dict) -> dict:
    import copy

    out = copy.deepcopy(base)
    for key, value in sets.items():
        node = out
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return out


# ---------------------------------------------------------------------------------------------- config

def test_named_configs_and_overrides(tmp_path):
    lite = TrainConfig.load("lite")
    assert lite.model.variant == "lite" and lite.optim.lr_base == 1e-5 and [s.name for s in lite.loss.stages] == ["A", "B", "C"]
    paper = TrainConfig.load("paper")
    assert paper.optim.lr_peak == 8e-5 and paper.optim.warmup_epochs == 3 and paper.optim.epochs == 35
    c = TrainConfig.load("lite", ["optim.lr_peak=3e-4", "loss.stages.2.lr_scale=0.25", "loss.weights.grid=7",
                                  "model.overrides.uv_size=64", "data.train=/x/y"])
    assert (c.optim.lr_peak, c.loss.stages[2].lr_scale, c.loss.weights.grid) == (3e-4, 0.25, 7.0)
    assert c.model.overrides == {"uv_size": 64} and c.data.train == "/x/y"
    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.load("lite", ["optim.lr_pk=1"])
    with pytest.raises(ValueError, match="must be a number"):
        TrainConfig.load("lite", ["optim.lr_peak=fast"])
    with pytest.raises(FileNotFoundError):
        TrainConfig.load("nonexistent_config")
    # a YAML file; the saved resolved config rebuilds the same config
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"optim": {"epochs": 3}, "loss": {"weights": {"depth": 1.0e+2}}}))
    c2 = TrainConfig.load(f)
    assert c2.optim.epochs == 3.0 and c2.loss.weights.depth == 100.0
    from dsfnet.train.config import save_config

    save_config(c, tmp_path / "resolved.yaml")
    assert TrainConfig.load(tmp_path / "resolved.yaml") == c


def test_model_section_is_typed_by_the_registry(tmp_path):
    from dsfnet.model import create_model, list_models
    from dsfnet.model.config import ModelConfig

    c = TrainConfig.load("lite", ["model.overrides.pointnet_widths=[16, 32]", "model.overrides.seg_threshold=1e-1"])
    assert isinstance(c.model.config, ModelConfig) and c.model.config.pointnet_widths == (16, 32)
    assert c.model.overrides == {"pointnet_widths": [16, 32], "seg_threshold": 0.1}  # plain values, YAML-ready
    from dsfnet.train.config import save_config

    save_config(c, tmp_path / "c.yaml")
    assert TrainConfig.load(tmp_path / "c.yaml") == c
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        TrainConfig.load("lite", ["model.overrides.uv_sise=64"])
    with pytest.raises(ValueError, match="uv_size must be an integer"):
        TrainConfig.load("lite", ["model.overrides.uv_size=big"])
    with pytest.raises(ValueError, match="head_shared must be true/false"):
        TrainConfig.from_dict({"model": {"variant": "lite", "overrides": {"head_shared": 1}}})
    with pytest.raises(ValueError, match="unknown model variant 'huge'"):
        TrainConfig.from_dict({"model": {"variant": "huge"}})
    # the toy network is a registered variant while the fixture holds it
    assert "toy" in list_models() and isinstance(create_model("toy", uv_size=16), ToyNet)
    assert TrainConfig.from_dict({"model": {"variant": "toy", "overrides": {"uv_size": 16}}}).model.config.uv_size == 16


# ---------------------------------------------------------------------------------------------- checkpoints

def test_checkpoint_metadata_and_strict_load(tmp_path):
    m = ToyNet()
    m.set_tm_statistics(torch.arange(12.0), torch.ones(12) * 2)
    path = ckpt_mod.save_checkpoint(tmp_path / "a.pt", m, config={"k": 1})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain containers + tensors only
    meta = raw["meta"]
    assert meta["variant"] == "toy" and meta["input_size"] == 16 and meta["uv_size"] == 8
    assert meta["face_model_fingerprint"] == "toy-face-0" and meta["tm_mean"] == [float(i) for i in range(12)]
    assert meta["tm_std"] == [2.0] * 12 and meta["n_shape"] == 4 and meta["n_exp"] == 2
    m2 = ToyNet()
    load_checkpoint(path, expected_variant="toy", model=m2)
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(CheckpointError, match="variant='toy'.*'lite'"):
        load_checkpoint(path, expected_variant="lite")
    with pytest.raises(CheckpointError, match="face_model_fingerprint"):
        load_checkpoint(path, face_model_fingerprint="abc")
    with pytest.raises(CheckpointError, match="uv_size"):
        load_checkpoint(path, model=ToyNet(uv_size=16))
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "junk.pt")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    m = ToyNet()
    path = ckpt_mod.save_checkpoint(tmp_path / "last.pt", m)
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")  # torch.save writes into the open temporary file
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with torch.no_grad():
        m.dense.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        ckpt_mod.save_checkpoint(path, m)
    assert path.read_bytes() == before  # the old checkpoint is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


# ---------------------------------------------------------------------------------------------- trainer

def test_training_writes_run_folder_and_lowers_loss(tmp_path):
    cfg = _config(**{"optim.epochs": 4})
    res = train(cfg, tmp_path / "run")
    assert res.status == "finished" and res.step == 16 and res.epoch == 4
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["best.pt", "best.pt.sha256", "config.yaml", "last.pt", "last.pt.sha256", "metrics.csv"]
    from dsfnet.train.run_folder import checksum_ok
    assert checksum_ok(tmp_path / "run" / "last.pt") is True
    assert TrainConfig.load(tmp_path / "run" / "config.yaml") == cfg
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    train_rows = [r for r in rows if r["loss"]]
    val_rows = [r for r in rows if r["val_nme"]]
    assert len(train_rows) == 16 and len(val_rows) == 4
    stages = [r["stage"] for r in train_rows]  # A until 30 % of 16 steps, B until 60 %, then C
    assert (stages.count("A"), stages.count("B"), stages.count("C")) == (5, 5, 6)
    assert [r["stage"] for r in val_rows] == ["val:model", "val:image", "val:fused", "val:fused"]
    # warm-up: lr_base at step 0, lr_peak after half an epoch (2 steps), then decay x0.9 per epoch
    assert float(train_rows[0]["lr"]) == pytest.approx(1e-3) and float(train_rows[2]["lr"]) == pytest.approx(2e-3)
    assert float(train_rows[6]["lr"]) == pytest.approx(2e-3 * 0.9)
    ck = load_checkpoint(tmp_path / "run" / "last.pt", "toy")
    assert ck["train"]["step"] == 16 and ck["config"]["optim"]["epochs"] == 4.0
    # a finished run folder is not retrained
    assert train(cfg, tmp_path / "run").step == 16


def test_keep_epochs_leaves_one_checkpoint_per_epoch(tmp_path):
    from dsfnet.train.state import epoch_checkpoint_name

    train(_config(**{"optim.epochs": 3, "run.keep_epochs": True}), tmp_path / "run")
    kept = [epoch_checkpoint_name(e) for e in (1, 2, 3)]
    assert kept == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt"]
    assert sorted(p.name for p in (tmp_path / "run").glob("epoch_*.pt")) == kept
    steps = [load_checkpoint(tmp_path / "run" / k, "toy")["train"]["step"] for k in kept]
    assert steps == [4, 8, 12]  # 4 steps per epoch: each file is its epoch's end
    last = load_checkpoint(tmp_path / "run" / "last.pt", "toy")["model"]
    final = load_checkpoint(tmp_path / "run" / kept[-1], "toy")["model"]
    assert all(torch.equal(last[k], final[k]) for k in last)


def test_resume_continues_at_same_step_with_identical_parameters(tmp_path):
    cfg = _config(**{"optim.epochs": 2})  # 2 epochs x 4 steps; teacher forcing and stage changes on the way
    full = train(cfg, tmp_path / "full")
    part = train(_config(**{"optim.epochs": 2, "run.max_steps": 3}), tmp_path / "part")
    assert part.status == "max_steps" and part.step == 3
    assert load_checkpoint(tmp_path / "part" / "last.pt")["train"]["step"] == 3
    resumed = train(cfg, tmp_path / "part")
    assert resumed.status == "finished" and resumed.step == full.step == 8
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "last.pt")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    sa, sb = a["train"]["optimizer"]["state"], b["train"]["optimizer"]["state"]
    for i in sa:
        assert torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"])


#: ``dsfnet train`` (the command line's ``main``) with the toy network registered
_CLI_WITH_TOY = """
import sys
from testing.toy_network import registered_toy
from dsfnet.cli.main import main
with registered_toy():
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(tmp_path):
    # with a data worker, and the signal sent to the whole process group (as Ctrl-C or `kill -- -PGID` do):
    # the workers must leave the stopping to the main process, which saves first
    from testing.toy_network import write_toy_cache

    train_set, val_set = toy_datasets(TOY["data"]["synthetic"])
    write_toy_cache(tmp_path / "cache_train", train_set)
    write_toy_cache(tmp_path / "cache_val", val_set)
    cfg = _merge(TOY, {"optim.epochs": 100000, "run.log_every": 5, "data.num_workers": 1, "data.synthetic": 0,
                       "data.train": str(tmp_path / "cache_train"), "data.val": str(tmp_path / "cache_val")})
    cfg_path = tmp_path / "toy.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # testing/ is imported from the repo root
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen([sys.executable, "-c", _CLI_WITH_TOY, "train", "--config", str(cfg_path),
                             "--run-dir", str(run_dir)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        t0 = time.monotonic()
        while not (run_dir / "metrics.csv").exists():  # training is under way
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() - t0 < 120, "training did not start"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    m = re.search(rb"signal at step (\d+)", err)
    assert m, err.decode()[-2000:]
    ck = load_checkpoint(run_dir / "last.pt", "toy")
    # metrics.csv appears with the first log row or the first validation (end of epoch 1, step 4),
    # so the stop step depends on timing; the saved checkpoint must be the step reported.
    assert ck["train"]["step"] == int(m.group(1)) >= 4


_SIGNAL_IN_WORKER_STARTUP = """
import os, signal, sys, torch
from torch.utils.data import DataLoader, TensorDataset
from dsfnet.train import loaders

def init(worker_id):  # the signal lands after torch's own worker set-up, before ours: the window that raced
    os.killpg(os.getpgid(0), signal.SIGTERM)
    loaders.worker_init(worker_id)

got = []
signal.signal(signal.SIGTERM, lambda *a: got.append(1))
loader = DataLoader(TensorDataset(torch.arange(16.0)), batch_size=4, num_workers=2, worker_init_fn=init)
n = sum(len(b[0]) for b in loaders.start_workers(loader))
print(n, len(got))
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_signal_during_worker_startup_reaches_only_the_main_process():
    # every worker signals its whole process group while starting: the workers must survive it and deliver all
    # batches, and the main process must still see the signal (once per sender)
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_IN_WORKER_STARTUP], capture_output=True, timeout=120,
                          start_new_session=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    n, got = map(int, proc.stdout.split())
    assert n == 16 and got >= 1


def test_release_weights_strips_training_state(tmp_path):
    m = ToyNet()
    src = ckpt_mod.save_checkpoint(tmp_path / "best.pt", m, config={"a": 1}, train_state={"step": 3})
    info = ckpt_mod.release_weights(src, tmp_path / "w" / "lite.pt", notes={"data": "toy"})
    out = ckpt_mod.read_checkpoint(tmp_path / "w" / "lite.pt")
    assert "train" not in out and out["config"] == {"a": 1}
    assert out["meta"]["release"]["licence"].startswith("non-commercial research only")
    assert info["data"] == "toy" and len(info["sha256"]) == 64
    for k, v in m.state_dict().items():
        assert torch.equal(out["model"][k], v)


def test_init_weights_starts_a_fresh_schedule_from_a_checkpoint(tmp_path):
    train(_config(**{"run.max_steps": 4}), tmp_path / "a")
    start = load_checkpoint(tmp_path / "a" / "last.pt", "toy")
    # a vanishing learning rate: the one step taken cannot move the weights, so the saved model is the start
    res = train(_config(**{"run.init_weights": str(tmp_path / "a" / "last.pt"), "run.max_steps": 1,
                           "optim.lr_base": 1e-12, "optim.lr_peak": 1e-12}), tmp_path / "b")
    assert res.step == 1  # a fresh schedule, not a resume at step 4
    b = load_checkpoint(tmp_path / "b" / "last.pt", "toy")
    params = {name for name, _ in ToyNet().named_parameters()}  # BatchNorm running statistics do move
    for k in params:
        torch.testing.assert_close(b["model"][k], start["model"][k], atol=1e-9, rtol=0, msg=k)
    with pytest.raises(ValueError, match="exclusive"):
        train(_config(**{"run.init_weights": str(tmp_path / "a" / "last.pt"), "run.teacher_init": "x.pth"}),
              tmp_path / "c")
    with pytest.raises(CheckpointError):
        (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
        train(_config(**{"run.init_weights": str(tmp_path / "bad.pt")}), tmp_path / "d")
    # init_optimizer: Adam's moments go on from the checkpoint's (its step count too), the schedule starts afresh
    def adam_steps(path):
        return {float(v["step"]) for v in load_checkpoint(path, "toy")["train"]["optimizer"]["state"].values()}

    init = {"run.init_weights": str(tmp_path / "a" / "last.pt"), "run.max_steps": 1}
    assert adam_steps(tmp_path / "a" / "last.pt") == {4.0} and adam_steps(tmp_path / "b" / "last.pt") == {1.0}
    assert train(_config(**init, **{"run.init_optimizer": True}), tmp_path / "e").step == 1
    assert adam_steps(tmp_path / "e" / "last.pt") == {5.0}
    ckpt_mod.release_weights(tmp_path / "a" / "last.pt", tmp_path / "released.pt")
    with pytest.raises(ValueError, match="no optimiser state"):
        train(_config(**{"run.init_weights": str(tmp_path / "released.pt"), "run.init_optimizer": True}), tmp_path / "f")


def test_no_validation_data_is_said_up_front(tmp_path, capsys):
    from testing.toy_network import ToyDataset

    result = train(_config(**{"optim.epochs": 1}), tmp_path / "run", train_set=ToyDataset(8, seed=0), val_set=None)
    err = capsys.readouterr().err
    assert "warning: no validation data" in err
    assert result.best_metric == float("inf")


# ------------------------------------------------------------------ run-folder bookkeeping after kills (#19)

def test_a_corrupted_last_checkpoint_is_caught_and_the_newest_epoch_resumed(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = _config(**{"optim.epochs": 2, "run.keep_epochs": True})
    train(cfg, run)
    data = bytearray((run / "last.pt").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped in the middle: torch would still load it
    (run / "last.pt").write_bytes(bytes(data))
    res = train(_config(**{"optim.epochs": 3, "run.keep_epochs": True}), run)
    err = capsys.readouterr().err
    assert "last.pt: does not match its .sha256" in err and "resumed from" in err and "epoch_002.pt" in err
    assert res.status == "finished" and res.step == 12


def test_missing_last_checkpoint_resumes_from_the_newest_epoch_not_from_zero(tmp_path, capsys):
    run = tmp_path / "run"
    train(_config(**{"optim.epochs": 2, "run.keep_epochs": True}), run)
    (run / "last.pt").unlink()
    (run / "last.pt.sha256").unlink()
    train(_config(**{"optim.epochs": 3, "run.keep_epochs": True}), run)
    assert "resumed from" in capsys.readouterr().err
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv", newline=""))
             if not r["stage"].startswith("val")]
    assert steps == sorted(set(steps))  # no duplicate rows of redone steps


def test_redone_steps_leave_no_duplicate_rows_and_stale_temp_files_are_removed(tmp_path, capsys):
    from dsfnet.train.run_folder import drop_rows_after

    run = tmp_path / "run"
    train(_config(**{"optim.epochs": 2, "run.log_every": 1}), run)
    rows = list(csv.DictReader(open(run / "metrics.csv", newline="")))
    assert drop_rows_after(run / "metrics.csv", 5) == sum(int(r["step"]) > 5 for r in rows)
    assert max(int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv", newline=""))) == 5
    (run / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    train(_config(**{"optim.epochs": 3, "run.log_every": 1}), run)
    assert not (run / ".last.pt.abc123.tmp").exists() and "removed 1 temporary file" in capsys.readouterr().err


def test_a_kill_during_the_end_of_epoch_save_still_gets_its_epoch_file(tmp_path):
    run = tmp_path / "run"
    train(_config(**{"optim.epochs": 2, "run.keep_epochs": True}), run)
    (run / "epoch_002.pt").unlink()  # killed after last.pt, before epoch_002.pt
    (run / "epoch_002.pt.sha256").unlink()
    train(_config(**{"optim.epochs": 2, "run.keep_epochs": True}), run)
    assert (run / "epoch_002.pt").is_file()


def test_two_trainings_cannot_share_a_run_folder(tmp_path):
    from dsfnet.io.output_folder import FolderLock, OutputFolderError

    run = tmp_path / "run"
    run.mkdir()
    other = FolderLock(run).acquire()  # another training holds the folder
    try:
        with pytest.raises(OutputFolderError, match="run folder .* is in use by another dsfnet run"):
            train(_config(), run)
    finally:
        other.release()
    assert train(_config(), run).status == "finished"


def test_a_stop_request_ends_the_step_in_flight_and_the_resume_redoes_it_exactly(tmp_path):
    """The paper network's CPU step takes minutes: a signal stops at the next layer, the step is undone, and the
    resumed run ends bit-identical to an uninterrupted one (#19)."""
    full = tmp_path / "full"
    train(_config(**{"optim.epochs": 2}), full)
    cut = tmp_path / "cut"
    cfg = _config(**{"optim.epochs": 2})
    train_set, val_set = toy_datasets(cfg.data.synthetic, seed=cfg.run.seed)
    trainer = loop.Trainer(cfg, cut, train_set=train_set, val_set=val_set)
    seen = {"n": 0}

    def signal_mid_forward(module, args):
        seen["n"] += 1
        if trainer.step == 5 and trainer._in_step and trainer._stop_reason is None:
            trainer._stop_reason = "signal"  # what SIGTERM's handler does, here halfway through step 6's forward

    children = list(trainer.model.children())
    children[len(children) // 2].register_forward_pre_hook(signal_mid_forward)
    res = trainer.fit()
    assert res.status == "signal" and res.step == 5  # step 6 was not counted
    assert load_checkpoint(cut / "last.pt", "toy")["train"]["step"] == 5
    train(cfg, cut)  # resume
    a = load_checkpoint(full / "last.pt", "toy")["model"]
    b = load_checkpoint(cut / "last.pt", "toy")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
