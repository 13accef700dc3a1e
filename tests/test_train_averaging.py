"""Checkpoint averaging: exact means, integer buffers kept, mismatches refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dsfnet.train.averaging import average_state_dicts


def _state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net(torch.randn(6, 3))  # one training step of statistics: num_batches_tracked = 1
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_average_is_the_elementwise_mean() -> None:
    states = [_state(s) for s in range(3)]
    avg = average_state_dicts(states)
    w = torch.stack([s["0.weight"] for s in states])
    assert torch.allclose(avg["0.weight"], w.mean(0), atol=1e-7)
    assert avg["0.weight"].dtype == torch.float32
    assert torch.allclose(avg["1.running_var"], torch.stack([s["1.running_var"] for s in states]).mean(0))
    assert avg["1.num_batches_tracked"].dtype == torch.long and int(avg["1.num_batches_tracked"]) == 1
    # one state: itself; the result is a copy
    one = average_state_dicts(states[:1])
    assert all(torch.equal(one[k], states[0][k]) for k in one)
    one["0.weight"].zero_()
    assert states[0]["0.weight"].abs().sum() > 0


def test_mismatched_states_are_refused() -> None:
    a = _state(0)
    with pytest.raises(ValueError, match="at least one"):
        average_state_dicts([])
    b = dict(a)
    b.pop("0.bias")
    with pytest.raises(ValueError, match="other keys"):
        average_state_dicts([a, b])
    c = dict(a, **{"0.weight": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="shape"):
        average_state_dicts([a, c])
