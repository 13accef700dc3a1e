"""Network runners: one interface over the torch model and an ONNX Runtime session, plus weight lookup.

A runner maps a batch of crops to the network's UV outputs::

    runner(crops (B, S, S, 3) uint8 RGB) -> {"face_uvm": (B, 3, U, U) float32 pm units, crop frame,
                                             nose-relative z;
                                             "rotation": (B, 3, 3) proper Pose_Para rotation;
                                             optional "seg": (B, 1, S, S) P(visible face) in [0, 1]}

with attributes ``input_size`` (S) and ``uv_size`` (U). Standardisation (spec §1.3) happens inside the
runner, so callers only ever hand over uint8 crops. Anything with that shape of call can be plugged into
:class:`dsfnet.inference.FaceAligner` (tests use a fake runner that returns a known map).

Weights are never silently random: a missing file raises :class:`WeightsNotFoundError`, which says where we
looked and what to do.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "BACKENDS",
    "NetworkRunner",
    "OnnxRunner",
    "StaticRunner",
    "TorchRunner",
    "WeightsNotFoundError",
    "default_weights_dir",
    "resolve_weights",
    "standardize_np",
]

BACKENDS = ("torch", "onnx")
#: environment variable naming a weights file (or a folder holding ``<config>.pt`` / ``<config>.onnx``)
WEIGHTS_ENV = "DSFNET_WEIGHTS"
_SUFFIX = {"torch": ".pt", "onnx": ".onnx"}


class WeightsNotFoundError(FileNotFoundError):
    """No weights file for the requested variant/backend; the message lists the places searched."""


@runtime_checkable
class NetworkRunner(Protocol):
    input_size: int
    uv_size: int

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]: ...


def default_weights_dir() -> Path:
    """``dsfnet/weights/`` inside the installed package (where released weights are shipped)."""
    return Path(__file__).resolve().parents[1] / "weights"


def resolve_weights(config: str, backend: str = "torch", weights: str | os.PathLike | None = None) -> Path:
    """The weights file to load: ``weights`` if given, else ``$DSFNET_WEIGHTS``, else the packaged file.

    Raises:
        WeightsNotFoundError: nothing found (the message names each place searched and what to do).
        ValueError: unknown backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    name = f"{config}{_SUFFIX[backend]}"
    if weights is not None:
        p = Path(weights)
        if p.is_dir():
            p = p / name
        if not p.is_file():
            raise WeightsNotFoundError(f"weights file not found: {p} (given as weights={str(weights)!r})")
        return p
    searched = []
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        p = Path(env)
        p = p / name if p.is_dir() else p
        if p.is_file():
            return p
        searched.append(f"${WEIGHTS_ENV} -> {p}")
    p = default_weights_dir() / name
    if p.is_file():
        return p
    searched.append(str(p))
    hint = (
        f"export a model with `dsfnet export-onnx --config {config} -o {name}` from torch weights"
        if backend == "onnx"
        else f"train one with `dsfnet train --config {config}`"
    )
    raise WeightsNotFoundError(
        f"no {backend} weights for the {config!r} model; searched: {'; '.join(searched)}. "
        f"Pass weights=PATH (CLI: --weights FILE), set ${WEIGHTS_ENV}, or {hint}. "
        "dsfnet never runs with random weights."
    )


def standardize_np(crops: np.ndarray) -> np.ndarray:
    """``(B, S, S, 3)`` uint8 RGB → ``(B, 3, S, S)`` float32, per-image per-channel standardised (spec §1.3).

    The same formula as ``dsfnet.model.standardize``: ``(x − mean) / sqrt(var + 1e-3)`` of x in [0, 1].
    """
    x = np.asarray(crops, dtype=np.float32).transpose(0, 3, 1, 2) / 255.0
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    return ((x - mean) / np.sqrt(var + 1e-3)).astype(np.float32)


def _check_crops(crops: np.ndarray, size: int) -> np.ndarray:
    c = np.asarray(crops)
    if c.ndim != 4 or c.shape[1:] != (size, size, 3) or c.dtype != np.uint8:
        raise ValueError(f"runner expects (B, {size}, {size}, 3) uint8 RGB crops, got {c.shape} {c.dtype}")
    return c


def _unwrap_state_dict(ckpt: Any, path: Path) -> tuple[dict, dict]:
    """``(state_dict, metadata)`` from a plain state dict or ``{"state_dict"|"model": ..., **meta}``."""
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(ckpt).__name__})")
    for key in ("state_dict", "model", "model_state"):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key], {k: v for k, v in ckpt.items() if k != key}
    return ckpt, {}


class TorchRunner:
    """Run a ``dsfnet.model.DSFNet`` on CPU (or ``device``) under ``torch.inference_mode``.

    Args:
        model: a DSFNet in eval mode (see :meth:`from_weights`).
        device: torch device string.
        branch: which reconstruction to report (``"fused"``, ``"image"``, ``"model"``).
        with_seg: also return the image-space visibility head ``seg`` (used for landmark visibility).
    """

    def __init__(self, model, device: str = "cpu", branch: str = "fused", with_seg: bool = True) -> None:
        self.model = model.eval()
        self.device = device
        self.branch = branch
        self.with_seg = with_seg
        self.input_size = int(model.config.input_size)
        self.uv_size = int(model.config.uv_size)

    @classmethod
    def from_weights(cls, config: str = "lite", weights: str | os.PathLike | None = None, device: str = "cpu",
                     face_model=None, layout=None, model_overrides: dict | None = None, **kwargs) -> "TorchRunner":
        """Build the variant (``create_model(config, face_model, layout=layout, **model_overrides)``) and load its
        weights strictly. Raises :class:`WeightsNotFoundError` if absent, ``ValueError`` if they do not fit."""
        import torch

        from dsfnet.model import create_model

        path = resolve_weights(config, "torch", weights)
        model = create_model(config, face_model, layout=layout, **(model_overrides or {}))
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"cannot load torch weights {path}: {exc}") from exc
        state, meta = _unwrap_state_dict(ckpt, path)
        recorded = meta.get("config") or meta.get("variant")
        if isinstance(recorded, dict):
            recorded = recorded.get("name")
        if recorded is not None and str(recorded) != config:
            raise ValueError(f"{path} holds weights of the {recorded!r} model, not {config!r}; pass --config {recorded}")
        fp = meta.get("face_model_fingerprint")
        if fp is not None and getattr(model, "face_model_fingerprint", None) not in (None, fp):
            raise ValueError(f"{path} was trained with face model {fp}, but this install uses {model.face_model_fingerprint}")
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path} does not fit the {config!r} model: missing keys {list(missing)[:8]}, "
                             f"unexpected keys {list(unexpected)[:8]}")
        return cls(model.to(device), device=device, **kwargs)

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(_check_crops(crops, self.input_size)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        from dsfnet.model import standardize

        with torch.inference_mode():
            out = self.model(standardize(x), branch=self.branch, return_all=self.with_seg)
        res = {"face_uvm": out["face_uvm"].float().cpu().numpy(), "rotation": out["rotation"].double().cpu().numpy()}
        if self.with_seg and "seg" in out:
            res["seg"] = out["seg"][:, :1].float().cpu().numpy()
        return res


class OnnxRunner:
    """Run an exported ``.onnx`` model with ONNX Runtime (CPU).

    The graph takes the standardised ``(B, 3, S, S)`` float32 crops (first input) and must output
    ``face_uvm`` and ``rotation`` (optionally ``seg``); ``S`` and ``U`` are read from the graph's shapes
    when static, else from ``input_size`` / ``uv_size``.
    """

    def __init__(self, path: str | os.PathLike, input_size: int | None = None, uv_size: int | None = None,
                 threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a dependency
            raise ImportError("the onnx backend needs onnxruntime: pip install onnxruntime") from exc
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ValueError(f"cannot load ONNX model {self.path}: {exc}") from exc
        outs = {o.name: o for o in self.session.get_outputs()}
        if not {"face_uvm", "rotation"} <= set(outs):
            raise ValueError(f"ONNX model {self.path} must output 'face_uvm' and 'rotation'; it outputs {sorted(outs)}")
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._outputs = [n for n in ("face_uvm", "rotation", "seg") if n in outs]
        s = inp.shape[-1] if isinstance(inp.shape[-1], int) else input_size
        u = outs["face_uvm"].shape[-1] if isinstance(outs["face_uvm"].shape[-1], int) else uv_size
        if s is None or u is None:
            raise ValueError(f"ONNX model {self.path} has dynamic sizes; pass input_size and uv_size")
        self.input_size, self.uv_size = int(s), int(u)

    @classmethod
    def from_weights(cls, config: str = "lite", weights: str | os.PathLike | None = None, **kwargs) -> "OnnxRunner":
        return cls(resolve_weights(config, "onnx", weights), **kwargs)

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        x = standardize_np(_check_crops(crops, self.input_size))
        vals = self.session.run(self._outputs, {self._input_name: x})
        res = dict(zip(self._outputs, vals))
        res["rotation"] = np.asarray(res["rotation"], dtype=np.float64)
        return res


class StaticRunner:
    """A runner that returns the same known outputs for every crop (tests, demos without weights).

    Args:
        face_uvm: ``(3, U, U)`` position map (pm units, crop frame, nose-relative z).
        rotation: ``(3, 3)`` proper rotation.
        input_size: crop side S it pretends to take.
        seg: optional ``(S, S)`` visible-face probability.
    """

    def __init__(self, face_uvm: np.ndarray, rotation: np.ndarray, input_size: int, seg: np.ndarray | None = None) -> None:
        self.face_uvm = np.asarray(face_uvm, dtype=np.float32)
        if self.face_uvm.ndim != 3 or self.face_uvm.shape[0] != 3 or self.face_uvm.shape[1] != self.face_uvm.shape[2]:
            raise ValueError(f"face_uvm must be (3, U, U), got {self.face_uvm.shape}")
        self.rotation = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        self.input_size = int(input_size)
        self.uv_size = int(self.face_uvm.shape[-1])
        self.seg = None if seg is None else np.asarray(seg, dtype=np.float32).reshape(1, self.input_size, self.input_size)
        self.calls = 0
        self.last_crops: np.ndarray | None = None

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        c = _check_crops(crops, self.input_size)
        self.calls += 1
        self.last_crops = c
        b = len(c)
        out = {"face_uvm": np.repeat(self.face_uvm[None], b, 0), "rotation": np.repeat(self.rotation[None], b, 0)}
        if self.seg is not None:
            out["seg"] = np.repeat(self.seg[None], b, 0)
        return out
