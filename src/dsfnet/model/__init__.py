"""``dsfnet.model``: the DSFNet network (crop → UV maps), the registry of its variants (:func:`register_model`
adds a network), the input preprocessing (:mod:`~dsfnet.model.preprocess`) and its weights.

:func:`create_model` is the one way to get a network: random (training), or with the shipped or a user's
weights, validated strictly (``dsfnet.model.checkpoint``; where weights are looked up: ``dsfnet.model.weights``).
The torch modules are imported on first use, so ``import dsfnet.model`` stays cheap.

>>> sorted(list_models())
['lite', 'paper']
"""
from __future__ import annotations

from dsfnet._lazy import lazy_getattr
from dsfnet.model.config import MODEL_CONFIGS, ModelConfig
from dsfnet.model.preprocess import images_to_input, preprocess, standardize
from dsfnet.model.registry import create_model, get_config, list_models, register_model, unregister_model

_LAZY = {
    "BRANCHES": "dsfnet.model.dsfnet",
    "DSFNet": "dsfnet.model.dsfnet",
    "ImageStage": "dsfnet.model.dsfnet",
}

__all__ = [
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
    *_LAZY,
]


__getattr__ = lazy_getattr(__name__, _LAZY)
