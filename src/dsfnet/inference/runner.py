"""Network runners: one interface over the torch model and an ONNX Runtime session, plus weight lookup.

A runner maps a batch of crops to the network's UV outputs::

    runner(crops (B, S, S, 3) uint8 RGB) -> {"face_uvm": (B, 3, U, U) float32 pm units, crop frame,
                                             nose-relative z;
                                             "rotation": (B, 3, 3) proper Pose_Para rotation;
                                             optional "seg": (B, 1, S, S) P(visible face) in [0, 1]}

with attributes ``input_size`` (S) and ``uv_size`` (U). Standardisation (``dsfnet.model.preprocess``) happens
inside the runner, so callers only ever hand over uint8 crops. Anything with that shape of call can be plugged into
:class:`dsfnet.inference.FaceAligner` (the tests' ``testing/aligner.py`` has one that returns a known map).

Weights are never silently random: a missing file raises :class:`WeightsNotFoundError`, which says where we
looked and what to do.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "BACKENDS",
    "NetworkRunner",
    "OnnxRunner",
    "TorchRunner",
    "WeightsNotFoundError",
    "default_weights_dir",
    "resolve_weights",
]

BACKENDS = ("torch", "onnx")
#: environment variable naming a weights file (or a folder holding ``<config>.pt`` / ``<config>.onnx``)
WEIGHTS_ENV = "DSFNET_WEIGHTS"
_SUFFIX = {"torch": ".pt", "onnx": "-onnx"}


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


def _weights_ok(path: Path, backend: str) -> bool:
    if backend == "onnx":  # a folder written by dsfnet.model.export (network.onnx and/or the three parts), or the
        # single-graph file of `dsfnet export-onnx -o NAME.onnx`
        if path.is_file():
            return path.suffix.lower() == ".onnx"
        return path.is_dir() and ((path / "network.onnx").is_file() or (path / "image_stage.onnx").is_file())
    return path.is_file()


def resolve_weights(config: str, backend: str = "torch", weights: str | os.PathLike | None = None) -> Path:
    """The weights to load: ``weights`` if given, else ``$DSFNET_WEIGHTS``, else the packaged ones.

    torch: a checkpoint file ``<config>.pt`` (a folder is searched for that name). onnx: a folder holding
    ``meta.json`` and ``network.onnx`` (the whole network) and/or ``image_stage.onnx``, ``pointnet.onnx``,
    ``fusion.onnx`` (``dsfnet export-onnx`` writes all four); a parent folder is searched for ``<config>-onnx/``.

    Raises:
        WeightsNotFoundError: nothing found (the message names each place searched and what to do).
        ValueError: unknown backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    name = f"{config}{_SUFFIX[backend]}"

    def candidates(p: Path) -> list[Path]:
        return [p, p / name] if p.is_dir() else [p]

    if weights is not None:
        for p in candidates(Path(weights)):
            if _weights_ok(p, backend):
                return p
        what = ("a .onnx file or a folder with network.onnx (or image_stage.onnx, pointnet.onnx, fusion.onnx)"
                if backend == "onnx"
                else "a .pt checkpoint")
        raise WeightsNotFoundError(f"weights not found: {weights} (the {backend} backend needs {what})")
    searched = []
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        for p in candidates(Path(env)):
            if _weights_ok(p, backend):
                return p
        searched.append(f"${WEIGHTS_ENV}={env}")
    p = default_weights_dir() / name
    if _weights_ok(p, backend):
        return p
    searched.append(str(p))
    hint = (
        f"export one with `dsfnet export-onnx --config {config} -o {name}` from torch weights"
        if backend == "onnx"
        else f"train one with `dsfnet train --config {config}`"
    )
    raise WeightsNotFoundError(
        f"no {backend} weights for the {config!r} model; searched: {'; '.join(searched)}. "
        f"Pass weights=PATH (CLI: --weights PATH), set ${WEIGHTS_ENV}, or {hint}. "
        "dsfnet never runs with random weights."
    )


def _check_crops(crops: np.ndarray, size: int) -> np.ndarray:
    c = np.asarray(crops)
    if c.ndim != 4 or c.shape[1:] != (size, size, 3) or c.dtype != np.uint8:
        raise ValueError(f"runner expects (B, {size}, {size}, 3) uint8 RGB crops, got {c.shape} {c.dtype}")
    return c


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
                     face_model=None, layout=None, **kwargs) -> "TorchRunner":
        """Rebuild the variant from the checkpoint's recorded ``model_config`` and load its weights strictly.

        Uses the project's one checkpoint reader (``dsfnet.model.checkpoint``): the recorded variant must be
        ``config``, and the face model, input size and UV size must match (``CheckpointError``, a ValueError).
        Raises :class:`WeightsNotFoundError` when no file is found.
        """
        from dsfnet.model.checkpoint import model_from_checkpoint

        path = resolve_weights(config, "torch", weights)
        model, _ = model_from_checkpoint(path, config, face_model=face_model, layout=layout)
        return cls(model.to(device), device=device, **kwargs)

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        from dsfnet.model.preprocess import preprocess

        # the same standardisation as OnnxRunner (float64, one rounding): both backends see identical inputs
        x = torch.from_numpy(preprocess(_check_crops(crops, self.input_size))).to(self.device)
        with torch.inference_mode():
            out = self.model(x, branch=self.branch, return_all=self.with_seg)
        res = {"face_uvm": out["face_uvm"].float().cpu().numpy(), "rotation": out["rotation"].double().cpu().numpy()}
        if self.with_seg and "seg" in out:
            res["seg"] = out["seg"][:, :1].float().cpu().numpy()
        return res


class OnnxRunner:
    """Run the exported network with ONNX Runtime (CPU).

    ``dsfnet export-onnx`` writes the whole network as one graph, ``network.onnx`` (``dsfnet.model.export``: image
    stage, scatter, the four similarity fits with the SVD-free solver, PointNet, fusion, all in ONNX), plus the
    three learned parts. For ``branch="fused"`` (the default) the runner uses ``network.onnx`` when the folder has
    it: one ``session.run`` per batch, no torch code. Otherwise (other branches, or an export from before
    ``network.onnx``) it runs the three part graphs with the glue between them in the model's own torch code
    (``dsfnet.model.export.run_with_onnx``) on a weight-less model rebuilt from ``meta.json`` (recorded config
    and the ``tm`` statistics, the only non-learned buffers the glue needs).

    Args:
        folder: folder written by ``dsfnet export-onnx``.
        config: expected variant (checked against ``meta.json``).
        face_model, layout: reuse already loaded assets.
        threads: ONNX Runtime intra-op threads.
        branch: ``"fused"``, ``"image"`` or ``"model"`` (the last two through the part graphs).
        with_seg: also return the visible-face probability ``seg``.
        graph: ``"auto"`` (the single graph when possible), ``"network"`` (require it) or ``"parts"`` (the part
            graphs and the torch glue, e.g. to compare the two).
    Attributes:
        network: the ``network.onnx`` session wrapper (``dsfnet.model.export.OnnxNetwork``), or None when the
            part graphs are used.
        parts, model: the part sessions and the glue model, loaded on first use.
    """

    def __init__(self, folder: str | os.PathLike, config: str = "lite", face_model=None, layout=None,
                 threads: int | None = None, branch: str = "fused", with_seg: bool = True, graph: str = "auto") -> None:
        import json

        from dsfnet.model import get_config
        from dsfnet.model.checkpoint import recorded_model_config
        from dsfnet.model.export import NETWORK_FILE, OnnxNetwork, embedded_metadata

        self.folder = Path(folder)
        single = None  # a single-graph .onnx file: its metadata replaces meta.json
        if self.folder.is_file():
            if branch != "fused" or graph == "parts":
                raise ValueError(f"{self.folder} is a single-graph export: it runs the fused branch only (the "
                                 "image/model branches need the folder export with the part graphs)")
            try:
                single = OnnxNetwork(self.folder, threads=threads or 1)
            except Exception as exc:
                raise ValueError(f"cannot load {self.folder}: {exc}") from exc
            meta = embedded_metadata(single.session)
            if meta is None:
                raise ValueError(f"{self.folder} carries no dsfnet metadata; export it with `dsfnet export-onnx -o FILE.onnx`")
        else:
            meta_path = self.folder / "meta.json"
            if not meta_path.is_file():
                raise ValueError(f"{self.folder} lacks meta.json; re-export it with `dsfnet export-onnx`")
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("variant") != config:
            raise ValueError(f"{self.folder} holds the {meta.get('variant')!r} model, not {config!r}")
        recorded = recorded_model_config(meta)
        if face_model is None:
            from dsfnet.facemodel.model import load_face_model

            face_model = load_face_model()
        fp = meta.get("face_model_fingerprint")
        if fp is not None and getattr(face_model, "fingerprint", fp) != fp:
            raise ValueError(f"{self.folder} was exported for face model {fp}, this install has {face_model.fingerprint}")
        cfg = get_config(config, **recorded)
        self._meta, self._recorded, self._face_model, self._layout = meta, recorded, face_model, layout
        self._threads = threads or 1
        self._parts = self._model = None
        self.branch, self.with_seg = branch, with_seg
        self.input_size, self.uv_size = int(cfg.input_size), int(cfg.uv_size)
        if graph not in ("auto", "network", "parts"):
            raise ValueError(f"graph must be 'auto', 'network' or 'parts', got {graph!r}")
        if graph == "network" and single is None and (branch != "fused" or not (self.folder / NETWORK_FILE).is_file()):
            raise ValueError(f"graph='network' needs branch='fused' and {self.folder / NETWORK_FILE} (re-export with "
                             "`dsfnet export-onnx`)")
        self.network = single
        if single is not None:
            pass
        elif graph != "parts" and branch == "fused" and (self.folder / NETWORK_FILE).is_file():
            try:
                self.network = OnnxNetwork(self.folder / NETWORK_FILE, threads=self._threads)
            except Exception as exc:
                raise ValueError(f"cannot load {self.folder / NETWORK_FILE}: {exc}") from exc
        else:
            self.parts  # noqa: B018 - load the part graphs now, so that a broken export fails here

    @property
    def model(self):
        """The weight-less DSFNet whose torch code runs the glue between the part graphs (built on first use)."""
        if self._model is None:
            from dsfnet.model import create_model

            layout = self._layout
            if layout is None or int(layout.size) != self.uv_size:
                from dsfnet.facemodel.uv import get_uv_layout

                layout = get_uv_layout(self._face_model, self.uv_size)
            model = create_model(self._meta["variant"], self._face_model, layout=layout, **self._recorded).eval()
            if self._meta.get("tm_mean") is not None and self._meta.get("tm_std") is not None:
                model.set_tm_statistics(np.asarray(self._meta["tm_mean"]), np.asarray(self._meta["tm_std"]))
            self._model = model
        return self._model

    @property
    def parts(self):
        """ONNX Runtime sessions of the three part graphs (``dsfnet.model.export.OnnxParts``), loaded on first use."""
        if self._parts is None:
            from dsfnet.model.export import OnnxParts

            try:
                self._parts = OnnxParts(self.folder, threads=self._threads)
            except FileNotFoundError:
                raise
            except Exception as exc:
                raise ValueError(f"cannot load the ONNX parts in {self.folder}: {exc}") from exc
        return self._parts

    @classmethod
    def from_weights(cls, config: str = "lite", weights: str | os.PathLike | None = None, **kwargs) -> "OnnxRunner":
        return cls(resolve_weights(config, "onnx", weights), config, **kwargs)

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        from dsfnet.model.preprocess import preprocess

        x = preprocess(_check_crops(crops, self.input_size))
        if self.network is not None:
            out = self.network(x)
            res = {"face_uvm": out["face_uvm"].astype(np.float32), "rotation": out["rotation"].astype(np.float64)}
            if self.with_seg:
                res["seg"] = out["seg"][:, :1].astype(np.float32)
            return res
        import torch

        from dsfnet.model.export import run_with_onnx

        out = run_with_onnx(self.model, self.parts, torch.from_numpy(x), branch=self.branch, return_all=self.with_seg)
        res = {"face_uvm": out["face_uvm"].float().numpy(), "rotation": out["rotation"].double().numpy()}
        if self.with_seg and "seg" in out:
            res["seg"] = out["seg"][:, :1].float().numpy()
        return res
