"""A tiny DSFNet-shaped network and dataset for the trainer tests (no assets, milliseconds; not shipped).

:class:`ToyNet` has the interface the trainer needs (``dsfnet.model.interface.TrainableNetwork``): it returns every
key the losses and the validation read (``grid``, ``seg_logit``, ``seg``, ``conf``, ``depth``, ``shape_ms``,
``exp_ms``, ``tm_ms_z``, ``shape_is``, ``exp_is``, ``face_is``, ``face_ms``, ``kpt_f``, ``offset_f``, ``face_f``,
``face_uvm``, ``rotation``) and carries the buffers/attributes the trainer uses (``config``, ``face_mask``,
``weight_mask``, ``kpt_cells``, ``landmarks()``, ``tm_mean``/``tm_std``, ``face_model_fingerprint``).
:func:`registered_toy` registers it in the model registry as variant ``"toy"`` (``tests/conftest.py``'s
``toy_network`` fixture). :class:`ToyDataset` yields training-sample dicts (``dsfnet.data.cache.default_fields``), deterministic
per index; :func:`toy_datasets` is the ``(train, val)`` pair the trainer tests pass in.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ToyConfig:
    """Sizes of the toy network (field names as in ``dsfnet.model.ModelConfig``)."""

    name: str = "toy"
    input_size: int = 16
    uv_size: int = 8
    n_shape: int = 4
    n_exp: int = 2
    width: int = 8

    @property
    def pos_scale(self) -> float:
        return self.input_size * 280.0 / 256.0


def _axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` axis-angle → ``(B, 3, 3)`` proper rotation (matrix exponential of the skew matrix)."""
    z = torch.zeros_like(v[:, 0])
    k = torch.stack([z, -v[:, 2], v[:, 1], v[:, 2], z, -v[:, 0], -v[:, 1], v[:, 0], z], 1).reshape(-1, 3, 3)
    return torch.linalg.matrix_exp(k)


class ToyNet(nn.Module):
    """Conv + BN image stage, linear global heads; UV maps from a linear layer on the pooled feature."""

    def __init__(self, input_size: int = 16, uv_size: int = 8, n_shape: int = 4, n_exp: int = 2, width: int = 8) -> None:
        super().__init__()
        self.config = ToyConfig(input_size=input_size, uv_size=uv_size, n_shape=n_shape, n_exp=n_exp, width=width)
        self.n_shape, self.n_exp = n_shape, n_exp
        self.face_model_fingerprint = "toy-face-0"
        u = uv_size
        rr, cc = np.meshgrid(np.arange(u), np.arange(u), indexing="ij")
        face = ((rr - (u - 1) / 2) ** 2 + (cc - (u - 1) / 2) ** 2) <= (u / 2) ** 2
        self.register_buffer("face_mask", torch.as_tensor(face, dtype=torch.float32), persistent=False)
        self.register_buffer("weight_mask", torch.as_tensor(face * 3.0, dtype=torch.float32), persistent=False)
        cells = np.argwhere(face)
        kpt = cells[np.linspace(0, len(cells) - 1, 68).astype(int)]
        self.register_buffer("kpt_cells", torch.as_tensor(kpt, dtype=torch.long), persistent=False)
        self.register_buffer("tm_mean", torch.zeros(12))
        self.register_buffer("tm_std", torch.ones(12))
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.dense = nn.Conv2d(width, 5, 3, 1, 1)
        self.glob = nn.Linear(width, 32)
        n_map = 3 * u * u
        self.coef = nn.Linear(32, 2 * (n_shape + n_exp) + 12 + 3)
        self.maps = nn.Linear(32, 5 * n_map)
        self.detach_alignment = False
        self.mean_map = None  # no UV-grid mesh: the edge/normal losses are not available

    @classmethod
    def from_config(cls, config: ToyConfig, face_model: object = None, layout: object = None) -> "ToyNet":  # noqa: ARG003
        """The registry's builder (the toy has no face model or layout)."""
        return cls(config.input_size, config.uv_size, config.n_shape, config.n_exp, config.width)

    def set_tm_statistics(self, mean, std) -> None:
        self.tm_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32).reshape(12))
        self.tm_std.copy_(torch.as_tensor(np.asarray(std), dtype=torch.float32).reshape(12))

    def landmarks(self, face_uvm: torch.Tensor) -> torch.Tensor:
        """``(B, 68, 3)`` map values at ``kpt_cells`` (the toy has no face model to interpolate at)."""
        return face_uvm[:, :, self.kpt_cells[:, 0], self.kpt_cells[:, 1]].transpose(1, 2)

    def normalize_tm(self, tm: torch.Tensor) -> torch.Tensor:
        return (tm.reshape(tm.shape[0], 12) - self.tm_mean) / self.tm_std

    def image_stage(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (B, 3, S, S)`` standardised → the image-space heads plus the pooled feature's coefficient and map
        outputs (``coef``, ``uv_maps``), which :meth:`forward_from_heads` splits."""
        f = self.stem(x)
        d = self.dense(f)
        g = torch.relu(self.glob(f.mean(dim=(2, 3))))
        ks, ke, u = self.n_shape, self.n_exp, self.config.uv_size
        c = self.coef(g)
        return {"grid": d[:, 0:2], "seg_logit": d[:, 2:3], "seg": torch.sigmoid(d[:, 2:3]),
                "conf_logit": d[:, 3:4], "conf": torch.sigmoid(d[:, 3:4]), "depth": d[:, 4:5],
                "shape_ms": c[:, :ks], "exp_ms": c[:, ks:ks + ke], "tm_ms_z": c[:, 2 * (ks + ke):2 * (ks + ke) + 12],
                "coef": c, "uv_maps": self.maps(g).reshape(-1, 5, 3, u, u)}

    def forward_from_heads(self, heads: dict[str, torch.Tensor], branch: str = "fused",
                           return_all: bool | None = None) -> dict[str, torch.Tensor]:
        """Everything after :meth:`image_stage` (the toy's UV maps do not depend on ``grid``/``seg``)."""
        return_all = self.training if return_all is None else return_all
        ks, ke = self.n_shape, self.n_exp
        c, maps = heads["coef"], heads["uv_maps"]
        out = {k: v for k, v in heads.items() if k not in ("coef", "uv_maps")}
        out.update(shape_is=c[:, ks + ke:2 * ks + ke], exp_is=c[:, 2 * ks + ke:2 * (ks + ke)], face_ms=maps[:, 0],
                   face_is=maps[:, 1], kpt_f=maps[:, 2], offset_f=maps[:, 3], face_f=maps[:, 4])
        out["rotation"] = _axis_angle_to_matrix(c[:, -3:])
        out["face_uvm"] = {"model": out["face_ms"], "image": out["face_is"]}.get(branch, out["face_f"])
        if not return_all:
            return {"face_uvm": out["face_uvm"], "rotation": out["rotation"]}
        return out

    def forward(self, x: torch.Tensor, branch: str = "fused", return_all: bool | None = None) -> dict[str, torch.Tensor]:
        """``x (B, 3, S, S)`` standardised → dict (see the module docstring)."""
        return self.forward_from_heads(self.image_stage(x), branch, return_all)


@contextlib.contextmanager
def registered_toy() -> Iterator[None]:
    """Variant ``"toy"`` (:class:`ToyNet` at :class:`ToyConfig`'s defaults) in the model registry, while in the block."""
    from dsfnet.model import register_model, unregister_model

    register_model(ToyConfig(), ToyNet.from_config)
    try:
        yield
    finally:
        unregister_model("toy")


def write_toy_cache(folder, dataset: "ToyDataset") -> None:
    """Write ``dataset`` as a sample cache folder (``dsfnet.data.cache``), which ``data.train``/``data.val`` can name:
    the toy data for runs through the ``dsfnet train`` command line."""
    from dsfnet.data.cache import CacheWriter, default_fields

    fields = default_fields(dataset.s, dataset.u, dataset.ks, dataset.ke)
    with CacheWriter(folder, fields, len(dataset)) as w:
        for i in range(len(dataset)):
            w[i] = dataset[i]


def toy_datasets(n: int = 16, seed: int = 0, **sizes: int) -> tuple["ToyDataset", "ToyDataset"]:
    """``(train, val)``: ``n`` training samples (seed ``seed``) and ``max(n // 4, 2)`` validation samples (``seed + 1``);
    ``sizes``: ``input_size``, ``uv_size``, ``n_shape``, ``n_exp`` as for :class:`ToyNet`."""
    return ToyDataset(n, seed=seed, **sizes), ToyDataset(max(n // 4, 2), seed=seed + 1, **sizes)


class ToyDataset(torch.utils.data.Dataset):
    """``n`` deterministic random training samples (:func:`dsfnet.data.cache.default_fields`) at crop ``S``, UV ``U``."""

    def __init__(self, n: int = 16, input_size: int = 16, uv_size: int = 8, n_shape: int = 4, n_exp: int = 2,
                 seed: int = 0) -> None:
        self.n, self.s, self.u, self.ks, self.ke, self.seed = n, input_size, uv_size, n_shape, n_exp, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} outside [0, {self.n})")
        rng = np.random.default_rng([self.seed, index])
        s, u = self.s, self.u
        f32 = np.float32
        seg = (rng.random((s, s)) < 0.6).astype(f32)
        tm = np.concatenate([np.diag([1e-4, -1e-4, 1e-4]), [[s / 2], [s / 2], [0.0]]], 1) + rng.normal(0, 1e-5, (3, 4))
        return {
            "image": rng.integers(0, 256, (s, s, 3), dtype=np.uint8),
            "posmap": rng.normal(0.5, 0.1, (3, u, u)).astype(f32),
            "offset": rng.normal(0.0, 0.05, (3, u, u)).astype(f32),
            "shape": rng.normal(0, 1, self.ks).astype(f32),
            "exp": rng.normal(0, 1, self.ke).astype(f32),
            "tm": tm.astype(f32),
            "grid": rng.uniform(-1, 1, (2, s, s)).astype(f32) * seg,
            "seg": seg,
            "depth": rng.normal(0, 0.1, (s, s)).astype(f32) * seg,
            "landmarks": np.concatenate([rng.uniform(2, s - 2, (68, 2)), rng.normal(0, 1, (68, 1))], 1).astype(f32),
            "pose": rng.uniform(-0.5, 0.5, 3).astype(f32),
        }
