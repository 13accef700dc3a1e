"""``dsfnet.model``: the DSFNet network (crop → UV maps), the registry of its variants (:func:`register_model`
adds a network), the input preprocessing (:mod:`~dsfnet.model.preprocess`) and weight helpers.

>>> sorted(list_models())
['lite', 'paper']
"""
from __future__ import annotations

from dsfnet.model.config import MODEL_CONFIGS, ModelConfig
from dsfnet.model.dsfnet import BRANCHES, DSFNet, ImageStage
from dsfnet.model.preprocess import images_to_input, preprocess, standardize
from dsfnet.model.registry import create_model, get_config, list_models, register_model, unregister_model

__all__ = [
    "BRANCHES",
    "DSFNet",
    "ImageStage",
    "MODEL_CONFIGS",
    "ModelConfig",
    "create_model",
    "get_config",
    "images_to_input",
    "list_models",
    "preprocess",
    "register_model",
    "standardize",
    "unregister_model",
]
