"""``dsfnet.model``: the DSFNet network (crop → UV maps), its variants and weight helpers.

>>> sorted(list_models())
['lite', 'paper']
"""
from __future__ import annotations

from typing import Any

from dsfnet.model.config import MODEL_CONFIGS, ModelConfig
from dsfnet.model.dsfnet import BRANCHES, DSFNet, ImageStage, standardize

__all__ = [
    "BRANCHES",
    "DSFNet",
    "ImageStage",
    "MODEL_CONFIGS",
    "ModelConfig",
    "create_model",
    "get_config",
    "list_models",
    "standardize",
]


def list_models() -> list[str]:
    """Names of the registered variants."""
    return list(MODEL_CONFIGS)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of variant ``name`` with ``overrides`` applied (ValueError on unknown names)."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model variant {name!r}; available: {list_models()}")
    return MODEL_CONFIGS[name].with_overrides(**overrides) if overrides else MODEL_CONFIGS[name]


def create_model(name: str, face_model: Any | None = None, *, layout: Any | None = None, **overrides: Any) -> DSFNet:
    """Build a DSFNet variant.

    Args:
        name: ``"lite"`` or ``"paper"`` (see :func:`list_models`).
        face_model: a ``FaceModel``; None loads the built-in one (``dsfnet.facemodel.load_face_model()``).
        layout: its ``UVLayout`` at the config's ``uv_size``; None builds it with ``dsfnet.facemodel.get_uv_layout``.
        **overrides: :class:`ModelConfig` fields to change (e.g. ``uv_size=64``).
    Returns:
        A :class:`DSFNet` in training mode with random weights.
    """
    config = get_config(name, **overrides)
    if face_model is None or layout is None:
        from dsfnet.facemodel import get_uv_layout, load_face_model  # imported lazily: built in parallel

        if face_model is None:
            face_model = load_face_model()
        if layout is None:
            layout = get_uv_layout(face_model, config.uv_size)
    return DSFNet(config, layout, face_model)
