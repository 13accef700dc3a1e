"""The model registry: variant name → (frozen config, builder). The one extension point for new networks.

``dsfnet`` registers ``"paper"`` and ``"lite"`` (the :class:`~dsfnet.model.config.ModelConfig` entries of
:data:`~dsfnet.model.config.MODEL_CONFIGS`, built as :class:`~dsfnet.model.dsfnet.DSFNet`). Another network is
added with :func:`register_model` (the tests register their toy network this way, from ``tests/conftest.py``);
the trainer, checkpoints and ``TrainConfig.model`` then treat it like the built-in variants.

A builder is ``build(config, face_model, layout) -> nn.Module``: ``face_model``/``layout`` may be None (the
builder loads what it needs), and the module must have the interface of
:class:`~dsfnet.model.interface.TrainableNetwork` to be trained.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from dsfnet.model.config import MODEL_CONFIGS, ModelConfig, with_overrides

if TYPE_CHECKING:  # torch is imported when a network is built, so listing variants and configs stays cheap
    from torch import nn

    from dsfnet.model.dsfnet import DSFNet

#: ``build(config, face_model, layout) -> nn.Module``
ModelBuilder = Callable[[Any, Any, Any], "nn.Module"]


@dataclass(frozen=True)
class RegisteredModel:
    """A registry entry: the variant's frozen default ``config`` (a dataclass with ``name``, ``input_size``,
    ``uv_size``) and its ``build`` function."""

    config: Any
    build: ModelBuilder


def build_dsfnet(config: ModelConfig, face_model: Any = None, layout: Any = None) -> DSFNet:
    """A :class:`DSFNet` of ``config`` (random weights); None face model / layout: the built-in model and its
    layout at ``config.uv_size``."""
    from dsfnet.model.dsfnet import DSFNet

    if face_model is None or layout is None:
        from dsfnet.facemodel import get_uv_layout, load_face_model  # imported lazily: built in parallel

        if face_model is None:
            face_model = load_face_model()
        if layout is None:
            layout = get_uv_layout(face_model, config.uv_size)
    return DSFNet(config, layout, face_model)


_REGISTRY: dict[str, RegisteredModel] = {name: RegisteredModel(cfg, build_dsfnet) for name, cfg in MODEL_CONFIGS.items()}


def register_model(config: Any, build: ModelBuilder) -> None:
    """Register (or replace) the variant ``config.name``, built by ``build``."""
    _REGISTRY[str(config.name)] = RegisteredModel(config, build)


def unregister_model(name: str) -> None:
    """Remove a variant added by :func:`register_model` (the built-in ones stay)."""
    if name in MODEL_CONFIGS:
        raise ValueError(f"{name!r} is a built-in variant and cannot be removed")
    _REGISTRY.pop(name, None)


def list_models() -> list[str]:
    """Names of the registered variants."""
    return list(_REGISTRY)


def _entry(name: str) -> RegisteredModel:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model variant {name!r}; available: {list_models()}")
    return _REGISTRY[name]


def get_config(name: str, *, validate: bool = True, **overrides: Any) -> Any:
    """The config of variant ``name`` with ``overrides`` applied (type-checked by
    :func:`~dsfnet.model.config.with_overrides`; ``validate=False``: names and types only); ValueError on unknown
    names, fields or wrong types."""
    cfg = _entry(name).config
    return with_overrides(cfg, overrides, validate=validate) if overrides else cfg


def create_model(name: str, face_model: Any | None = None, *, layout: Any | None = None,
                 weights: str | os.PathLike | None = None, **overrides: Any) -> nn.Module:
    """Build a registered variant, with random weights or loaded ones (the one way to get a network).

    Args:
        name: ``"lite"`` or ``"paper"`` (see :func:`list_models`).
        face_model: a ``FaceModel``; None loads the built-in one (``dsfnet.facemodel.load_face_model()``).
        layout: its ``UVLayout`` at the config's ``uv_size``; None builds it with ``dsfnet.facemodel.get_uv_layout``.
        weights: None: random weights. ``"shipped"``: the default weights of ``name`` (``$DSFNET_WEIGHTS`` when set,
            else the checkpoint shipped in the package). A path: a ``.pt`` checkpoint, or a folder holding
            ``<name>.pt``. Loaded weights rebuild the architecture the checkpoint records (its ``ModelConfig``
            fields; ``overrides`` on top) and are loaded strictly: ``torch.load(weights_only=True)``, the recorded
            variant must be ``name`` and the face model, input and UV sizes must match, every tensor must fit.
        **overrides: config fields to change (e.g. ``uv_size=64``).
    Returns:
        The network in training mode (a :class:`DSFNet` for the built-in variants; ``.eval()`` it for inference).
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
    return _entry(name).build(get_config(name, **overrides), face_model, layout)
