"""Validation during training: the network's input prepared exactly as inference prepares it.

Crops go through :func:`dsfnet.model.preprocess.preprocess` (the torch and ONNX runners' standardisation), so the
validated numbers are those of the deployed network on the same crops.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from dsfnet.model.interface import TrainableNetwork
from dsfnet.model.preprocess import preprocess
from dsfnet.train.loaders import start_workers, to_device


def evaluate(model: TrainableNetwork, loader: DataLoader, device: torch.device, branch: str = "fused"
             ) -> dict[str, float]:
    """68-point NME (fraction, x-y, over ``sqrt(w·h)`` of the GT box) and pose MAE (degrees) on crops.

    Landmarks come from ``model.landmarks(face_uvm)`` × ``pos_scale`` (crop px; bilinear at the landmark
    vertices, as in inference), compared with ``batch["landmarks"]`` (crop px); angles from ``rotation`` vs
    ``batch["pose"]`` (radians → degrees). Returns ``{"val_nme", "val_pose_mae"}`` (NaN without samples).
    """
    from dsfnet.eval.metrics import nme_2d, pose_mae
    from dsfnet.geometry import matrix_to_pose_para

    was_training = model.training
    model.eval()
    nmes, pred_deg, gt_deg = [], [], []
    with torch.no_grad():
        for batch in start_workers(loader):
            x = torch.from_numpy(preprocess(np.asarray(batch["image"])))
            batch = to_device(batch, device)
            out = model(x.to(device), branch=branch)
            kpts = (model.landmarks(out["face_uvm"]) * model.config.pos_scale).cpu().numpy()
            gt = batch["landmarks"].cpu().numpy()
            for p, g in zip(kpts, gt):
                nmes.append(nme_2d(p[:, :2], g[:, :2]) if np.isfinite(p).all() else float("nan"))
            pred_deg.append(np.degrees(matrix_to_pose_para(out["rotation"].double().cpu().numpy())))
            gt_deg.append(np.degrees(batch["pose"].double().cpu().numpy()))
    model.train(was_training)
    if not nmes:
        return {"val_nme": float("nan"), "val_pose_mae": float("nan")}
    mae = pose_mae(np.concatenate(pred_deg), np.concatenate(gt_deg)).mean
    return {"val_nme": float(np.mean(nmes)), "val_pose_mae": float(mae)}
