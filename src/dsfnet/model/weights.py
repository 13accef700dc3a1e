"""Where a variant's weights are: the user's file, ``$DSFNET_WEIGHTS``, or the weights shipped in the package.

Two kinds of weights, one per inference backend (:data:`BACKENDS`):

* ``"torch"``: a checkpoint file ``<config>.pt`` (``dsfnet.model.checkpoint``), loaded by
  :func:`dsfnet.model.create_model` (``weights="shipped"`` or a path);
* ``"onnx"``: a folder written by ``dsfnet export-onnx`` (``meta.json`` + ``network.onnx``), named
  ``<config>-onnx``, or the single-file export ``NAME.onnx``; run by ``dsfnet.inference.onnx.OnnxRunner``.

Weights are never silently random: nothing found raises :class:`WeightsNotFoundError`, whose message lists the
places searched and what to do.
"""
from __future__ import annotations

import os
from pathlib import Path

#: the inference backends, and so the kinds of weights
BACKENDS = ("torch", "onnx")
#: environment variable naming a weights file (or a folder holding ``<config>.pt`` / ``<config>-onnx``)
WEIGHTS_ENV = "DSFNET_WEIGHTS"
#: the file of the whole network in an ONNX export folder
NETWORK_FILE = "network.onnx"
#: ``metadata_props`` key under which a single-file ONNX export carries what ``meta.json`` holds in a folder
META_KEY = "dsfnet_meta"
#: outputs of ``network.onnx``, in order (``dsfnet.model.export`` writes them, ``dsfnet.inference.onnx`` checks them):
#: name -> rank (input: ``image``, rank 4, float)
NETWORK_OUTPUTS = {"face_uvm": 4, "rotation": 3, "fallback": 1, "seg": 4}
_SUFFIX = {"torch": ".pt", "onnx": "-onnx"}


class WeightsNotFoundError(FileNotFoundError):
    """No weights file for the requested variant/backend; the message lists the places searched."""


def default_weights_dir() -> Path:
    """``dsfnet/weights/`` inside the installed package (where released weights are shipped)."""
    return Path(__file__).resolve().parents[1] / "weights"


def _weights_ok(path: Path, backend: str) -> bool:
    if backend == "onnx":  # an export folder, or the single-graph file of `dsfnet export-onnx -o NAME.onnx`; a folder
        # without network.onnx (an export from before it existed) is found, and refused by the runner with a hint
        if path.is_file():
            return path.suffix.lower() == ".onnx"
        return path.is_dir() and ((path / NETWORK_FILE).is_file() or (path / "meta.json").is_file())
    return path.is_file()


def resolve_weights(config: str, backend: str = "torch", weights: str | os.PathLike | None = None) -> Path:
    """The weights to load: ``weights`` if given, else ``$DSFNET_WEIGHTS``, else the packaged ones.

    torch: a checkpoint file ``<config>.pt`` (a folder is searched for that name). onnx: a folder holding
    ``meta.json`` and ``network.onnx`` (what ``dsfnet export-onnx`` writes) or a single ``.onnx`` file; a parent
    folder is searched for ``<config>-onnx/``.

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
        what = "a .onnx file or a folder with network.onnx" if backend == "onnx" else "a .pt checkpoint"
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
    if backend == "onnx":
        hint = (f"export them with `dsfnet export-onnx --config {config} -o {name}`, then pass `--weights {name}` "
                f"(Python: weights={name!r}) or set {WEIGHTS_ENV}={name}")
    else:
        hint = (f"the {config!r} model has no shipped weights: train them (`dsfnet train --config {config}`) and pass "
                f"--weights FILE (Python: weights=FILE) or set {WEIGHTS_ENV}=FILE")
    raise WeightsNotFoundError(
        f"no {backend} weights for the {config!r} model; searched (in this order): {'; '.join(searched)}. "
        f"To fix: {hint}. dsfnet never runs with random weights."
    )


def choose_backend(config: str, weights: str | os.PathLike | None = None, device: str = "cpu") -> str:
    """What ``backend="auto"`` runs: ``"onnx"`` (ONNX Runtime) on the CPU when ONNX weights are found where the
    torch ones would be looked up (``weights``; else ``$DSFNET_WEIGHTS``; else the package, which ships
    ``lite-onnx/`` beside ``lite.pt``), else ``"torch"`` (GPUs, ``.pt`` files, training checkpoints)."""
    if not str(device).startswith("cpu"):
        return "torch"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    where = weights if weights is not None else os.environ.get(WEIGHTS_ENV) or None
    try:
        resolve_weights(config, "onnx", where)
    except WeightsNotFoundError:
        return "torch"
    return "onnx"
