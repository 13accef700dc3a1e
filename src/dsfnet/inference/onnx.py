"""The ONNX backend: ONNX Runtime sessions of an exported network and the runner around them.

``dsfnet export-onnx`` (``dsfnet.model.export``) writes the whole network as one graph, ``network.onnx``, into a
folder with ``meta.json`` (the checkpoint's recorded variant, config, sizes, face-model fingerprint), or that graph
alone as ``NAME.onnx`` with the same metadata embedded under :data:`dsfnet.model.weights.META_KEY`. The graph
takes standardised crops ``image (B, 3, S, S)`` float32 and gives ``face_uvm (B, 3, U, U)`` (pm units, crop frame,
nose-relative z), ``rotation (B, 3, 3)`` (proper ``Pose_Para`` rotation), ``fallback (B,)`` bool and ``seg
(B, 1, S, S)`` (P(visible face)): the fused branch, with no torch code at run time.

An export folder from before ``network.onnx`` existed (the three part graphs ``image_stage.onnx``,
``pointnet.onnx``, ``fusion.onnx`` only) is refused with the advice to re-export it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dsfnet.inference.runner import _check_crops
from dsfnet.model.preprocess import preprocess
from dsfnet.model.weights import META_KEY, NETWORK_FILE, NETWORK_OUTPUTS, resolve_weights

__all__ = ["OnnxNetwork", "OnnxRunner", "check_network_signature", "embedded_metadata", "ort_session", "parse_metadata"]


def ort_session(path: str | os.PathLike | bytes, threads: int):
    """An ONNX Runtime CPU session of ``path`` (or serialised model bytes) with ``threads`` intra-op threads (one
    inter-op thread, quiet log)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def parse_metadata(text: str, where: str | os.PathLike) -> dict:
    """dsfnet's export metadata (a JSON object) from ``text``; ValueError naming ``where`` if it is not one."""
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{where}: the dsfnet metadata is not valid JSON ({exc}); re-export with `dsfnet export-onnx`") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: the dsfnet metadata must be a JSON object, got {type(meta).__name__}; re-export "
                         "with `dsfnet export-onnx`")
    return meta


def embedded_metadata(session, where: str | os.PathLike = "the ONNX file") -> dict | None:
    """The metadata dict a single-file export carries (``dsfnet.model.export.embed_metadata``), or None."""
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    return None if raw is None else parse_metadata(raw, where)


def check_network_signature(session, where: str | os.PathLike) -> None:
    """Refuse a graph that is not dsfnet's network: one float input ``image`` of rank 4 and the outputs of
    :data:`dsfnet.model.weights.NETWORK_OUTPUTS` with their ranks (ValueError naming what differs)."""
    ins = [(i.name, len(i.shape), i.type) for i in session.get_inputs()]
    if len(ins) != 1 or ins[0][0] != "image" or ins[0][1] != 4 or "float" not in ins[0][2]:
        raise ValueError(f"{where} is not a dsfnet network: inputs {ins}, expected one float 'image' of rank 4")
    outs = {o.name: len(o.shape) for o in session.get_outputs()}
    wrong = {k: outs.get(k) for k, rank in NETWORK_OUTPUTS.items() if outs.get(k) != rank}
    if wrong:
        raise ValueError(f"{where} is not a dsfnet network: outputs {outs}, expected {NETWORK_OUTPUTS} "
                         f"(name: rank); re-export it with `dsfnet export-onnx`")


class OnnxNetwork:
    """ONNX Runtime session of ``network.onnx``: ``(B, 3, S, S)`` float32 standardised crops → dict of numpy arrays
    (``face_uvm``, ``rotation``, ``fallback``, ``seg``: ``dsfnet.model.export.NETWORK_OUTPUTS``).

    Args:
        path: the ``.onnx`` file, or an export folder holding ``network.onnx``.
        threads: ONNX Runtime intra-op threads.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / NETWORK_FILE
        if not path.is_file():
            raise FileNotFoundError(f"ONNX network not found: expected {path}")
        self.path = path
        self.session = ort_session(path, threads)
        check_network_signature(self.session, path)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, x) -> dict[str, np.ndarray]:
        if not isinstance(x, np.ndarray):  # e.g. a torch tensor
            x = x.detach().cpu().numpy()
        res = self.session.run(None, {"image": np.ascontiguousarray(x, dtype=np.float32)})
        return dict(zip(self.outputs, res))


class OnnxRunner:
    """Run the exported network with ONNX Runtime (CPU): one ``session.run`` per batch, no torch code.

    Args:
        path: a folder written by ``dsfnet export-onnx`` (``meta.json`` + ``network.onnx``), or its single-file
            export ``NAME.onnx`` (metadata embedded).
        config: expected variant (checked against the recorded one).
        face_model: reuse an already loaded ``FaceModel`` (its fingerprint must be the recorded one).
        threads: ONNX Runtime intra-op threads.
        with_seg: also return the visible-face probability ``seg``.
    Attributes:
        network: the :class:`OnnxNetwork`; ``input_size`` (S) and ``uv_size`` (U) from the recorded config.
    Raises:
        ValueError: no metadata, another variant or face model, a folder without ``network.onnx`` (an old
            export: re-export it), or a graph ONNX Runtime cannot load.
    """

    def __init__(self, path: str | os.PathLike, config: str = "lite", face_model=None, threads: int | None = None,
                 with_seg: bool = True) -> None:
        from dsfnet.model import get_config
        from dsfnet.model.checkpoint import recorded_model_config

        self.folder = Path(path)
        threads = threads or 1
        if self.folder.is_file():
            network = self._load(self.folder, threads)
            meta = embedded_metadata(network.session, self.folder)
            if meta is None:
                raise ValueError(f"{self.folder} carries no dsfnet metadata; export it with `dsfnet export-onnx -o FILE.onnx`")
        else:
            meta_path = self.folder / "meta.json"
            if not meta_path.is_file():
                raise ValueError(f"{self.folder} lacks meta.json; re-export it with `dsfnet export-onnx`")
            if not (self.folder / NETWORK_FILE).is_file():
                raise ValueError(f"{self.folder} has no {NETWORK_FILE} (an export of an older dsfnet, which ran the "
                                 "network as three part graphs); re-export it with `dsfnet export-onnx`")
            meta = parse_metadata(meta_path.read_text(encoding="utf-8"), meta_path)
            network = None
        if meta.get("variant") != config:
            raise ValueError(f"{self.folder} holds the {meta.get('variant')!r} model, not {config!r}")
        if face_model is None:
            from dsfnet.facemodel.model import load_face_model

            face_model = load_face_model()
        fp = meta.get("face_model_fingerprint")
        if fp is not None and getattr(face_model, "fingerprint", fp) != fp:
            raise ValueError(f"{self.folder} was exported for face model {fp}, this install has {face_model.fingerprint}")
        cfg = get_config(config, **recorded_model_config(meta))
        self.input_size, self.uv_size = int(cfg.input_size), int(cfg.uv_size)
        self.with_seg = with_seg
        self.network = network if network is not None else self._load(self.folder / NETWORK_FILE, threads)

    @staticmethod
    def _load(path: Path, threads: int) -> OnnxNetwork:
        try:
            return OnnxNetwork(path, threads=threads)
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"cannot load {path}: {exc}") from exc

    @classmethod
    def from_weights(cls, config: str = "lite", weights: str | os.PathLike | None = None, **kwargs) -> "OnnxRunner":
        """The runner of ``weights`` (None: ``$DSFNET_WEIGHTS`` or the packaged export), see
        :func:`dsfnet.model.weights.resolve_weights`; ``WeightsNotFoundError`` when there is none."""
        return cls(resolve_weights(config, "onnx", weights), config, **kwargs)

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        out = self.network(preprocess(_check_crops(crops, self.input_size)))
        res = {"face_uvm": out["face_uvm"].astype(np.float32), "rotation": out["rotation"].astype(np.float64)}
        if self.with_seg:
            res["seg"] = out["seg"][:, :1].astype(np.float32)
        return res
