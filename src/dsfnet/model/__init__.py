"""``dsfnet.model``: the DSFNet network (crop → UV maps), its variants and its weights.

:func:`create_model` is the one way to get a network: random (training), or with the shipped or a user's
weights, validated strictly (``dsfnet.model.checkpoint``; where weights are looked up: ``dsfnet.model.weights``).
The torch modules are imported on first use, so ``import dsfnet.model.weights`` stays cheap.

>>> sorted(list_models())
['lite', 'paper']
"""
from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from dsfnet.model.config import MODEL_CONFIGS, ModelConfig

if TYPE_CHECKING:  # pragma: no cover
    from dsfnet.model.dsfnet import DSFNet

_LAZY = {
    "BRANCHES": "dsfnet.model.dsfnet",
    "DSFNet": "dsfnet.model.dsfnet",
    "ImageStage": "dsfnet.model.dsfnet",
    "standardize": "dsfnet.model.dsfnet",
    "MobileNetV1Teacher": "dsfnet.model.mobilenet",
    "load_teacher_backbone": "dsfnet.model.mobilenet",
}

__all__ = ["MODEL_CONFIGS", "ModelConfig", "create_model", "get_config", "list_models", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dsfnet.model' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def list_models() -> list[str]:
    """Names of the registered variants."""
    return list(MODEL_CONFIGS)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of variant ``name`` with ``overrides`` applied (ValueError on unknown names)."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model variant {name!r}; available: {list_models()}")
    return MODEL_CONFIGS[name].with_overrides(**overrides) if overrides else MODEL_CONFIGS[name]


def create_model(name: str, face_model: Any | None = None, *, layout: Any | None = None,
                 weights: str | os.PathLike | None = None, **overrides: Any) -> DSFNet:
    """Build a DSFNet variant, with random weights or loaded ones.

    Args:
        name: ``"lite"`` or ``"paper"`` (see :func:`list_models`).
        face_model: a ``FaceModel``; None loads the built-in one (``dsfnet.facemodel.load_face_model()``).
        layout: its ``UVLayout`` at the config's ``uv_size``; None builds it with ``dsfnet.facemodel.get_uv_layout``.
        weights: None: random weights. ``"shipped"``: the default weights of ``name`` (``$DSFNET_WEIGHTS`` when set,
            else the checkpoint shipped in the package). A path: a ``.pt`` checkpoint, or a folder holding
            ``<name>.pt``. Loaded weights rebuild the architecture the checkpoint records (its ``ModelConfig``
            fields; ``overrides`` on top) and are loaded strictly: ``torch.load(weights_only=True)``, the recorded
            variant must be ``name`` and the face model, input and UV sizes must match, every tensor must fit.
        **overrides: :class:`ModelConfig` fields to change (e.g. ``uv_size=64``).
    Returns:
        A :class:`DSFNet` in training mode (``.eval()`` it for inference).
    Raises:
        ValueError: unknown variant. With ``weights``: ``dsfnet.model.weights.WeightsNotFoundError`` (no such file;
        the message lists where it looked), ``dsfnet.model.checkpoint.CheckpointError`` (a ValueError: a malformed
        file or a mismatch, naming both values).
    """
    if weights is not None:
        from dsfnet.model.checkpoint import model_from_checkpoint
        from dsfnet.model.weights import resolve_weights

        path = resolve_weights(name, "torch", None if str(weights) == "shipped" else weights)
        model, _ = model_from_checkpoint(path, name, face_model=face_model, layout=layout, **overrides)
        return model
    from dsfnet.model.dsfnet import DSFNet

    config = get_config(name, **overrides)
    if face_model is None or layout is None:
        from dsfnet.facemodel import get_uv_layout, load_face_model  # imported lazily: built in parallel

        if face_model is None:
            face_model = load_face_model()
        if layout is None:
            layout = get_uv_layout(face_model, config.uv_size)
    return DSFNet(config, layout, face_model)
