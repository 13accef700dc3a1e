"""Precise BatchNorm statistics: exact averages over batches, restored state on failure, the trainer's option."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dsfnet.train.batchnorm import batchnorm_layers, recompute_batchnorm_statistics


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_statistics_are_the_average_over_all_batches() -> None:
    net = _net().eval()
    weights = [p.clone() for p in net.parameters()]
    batches = [torch.randn(8, 3) * torch.tensor([1.0, 2.0, 3.0]) + i for i in range(5)]
    n = recompute_batchnorm_statistics(net, batches, lambda m, b: m(b))
    assert n == 5 and not net.training  # the training flag is restored
    bn = net[0]
    x = torch.stack(batches)  # (5, 8, 3)
    assert torch.allclose(bn.running_mean, x.mean(dim=(0, 1)), atol=1e-5)  # equal batches: the overall mean
    assert torch.allclose(bn.running_var, x.var(dim=1, unbiased=True).mean(0), atol=1e-4)  # mean within-batch var
    assert int(bn.num_batches_tracked) == 5 and bn.momentum == 0.1
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
    assert len(batchnorm_layers(net)) == 2


def test_failure_or_no_batches_keep_the_old_statistics() -> None:
    net = _net()
    net[0].running_mean.fill_(0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}

    def broken(m, b):
        if b.shape[0] == 2:
            raise RuntimeError("corrupt batch")
        m(b)

    with pytest.raises(RuntimeError, match="corrupt batch"):
        recompute_batchnorm_statistics(net, [torch.randn(8, 3), torch.randn(2, 3)], broken)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert recompute_batchnorm_statistics(net, [], lambda m, b: m(b)) == 0
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert all(m.momentum == 0.1 for m in batchnorm_layers(net))
    with pytest.raises(ValueError, match="no BatchNorm"):
        recompute_batchnorm_statistics(nn.Linear(3, 3), [torch.randn(2, 3)], lambda m, b: m(b))


def test_trainer_recomputes_statistics_at_each_epoch_end(tmp_path, toy_network) -> None:
    from dsfnet.model.checkpoint import load_checkpoint
    from test_train_loop import _config, train

    train(_config(**{"optim.epochs": 2, "run.precise_bn_batches": 3, "run.keep_epochs": True}), tmp_path / "run")
    for name in ("epoch_001.pt", "epoch_002.pt", "last.pt"):
        state = load_checkpoint(tmp_path / "run" / name, "toy")["model"]
        tracked = [int(v) for k, v in state.items() if k.endswith("num_batches_tracked")]
        # reset and averaged over 3 batches (the toy set has 4 batches of 4 per epoch; 3 are asked for)
        assert tracked and set(tracked) == {3}, (name, tracked)
