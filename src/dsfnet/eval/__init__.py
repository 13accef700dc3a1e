"""Evaluation: the predictor protocol, metrics (NME by yaw bin, dense NME, rec, pose MAE), the AFLW2000-3D
folder reader, synthetic occluders and the runner behind ``dsfnet eval``. Protocols and metrics only."""
