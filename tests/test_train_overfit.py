"""Overfit check: the real lite network (128 crop, 96 UV) on 8 synthetic faces, every loss term active.

The face model is the tiny synthetic one (``toy_face_model``: Ks = 6, Ke = 3) so that no asset is needed; the
network, losses, lifting, PointNet, fusion and alignment are the real ones. 150 Adam steps at one torch thread
take about 100 s on a shared 2-core machine (one thread: oversubscribed threads were 10x slower there).
"""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch


@pytest.mark.slow
def test_lite_overfits_eight_synthetic_faces(tmp_path):
    from dsfnet.facemodel import get_uv_layout
    from dsfnet.model import create_model, get_config
    from dsfnet.train.config import TrainConfig
    from dsfnet.train.data import SyntheticFaces, target_builder_for
    from dsfnet.train.loop import train
    from testing.face_model import toy_face_model

    torch.manual_seed(0)
    fm = toy_face_model()
    lay = get_uv_layout(fm, get_config("lite").uv_size, disk_cache=False)
    model = create_model("lite", face_model=fm, layout=lay)
    data = SyntheticFaces(8, target_builder_for(model, fm, lay), seed=0)
    cfg = TrainConfig.load("overfit", ["run.log_every=1", "run.threads=1", "run.val_every=150"])
    res = train(cfg, tmp_path / "run", model=model, train_set=data, val_set=data)
    assert res.status == "finished" and res.step == 150
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    loss = np.array([float(r["loss"]) for r in rows if r["loss"]])
    assert len(loss) == 150 and np.isfinite(loss).all()
    assert loss[0] / loss[-5:].mean() >= 10.0, (loss[0], loss[-5:])
    val = [r for r in rows if r["val_nme"]][-1]
    assert float(val["val_nme"]) < 0.06  # 68-point NME on the memorised faces (fraction of the box size)
