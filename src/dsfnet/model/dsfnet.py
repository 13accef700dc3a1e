"""The DSFNet network: image-space branch, model-space branch, visible-pixel lifting, PointNet completion,
UV-space fusion and the confidence-weighted self-alignment (which module builds which part:
``docs/ARCHITECTURE.md``, "DSFNet's parts").

Units (``docs/CONVENTIONS.md``): *pm* = position-map units = crop px / ``pos_scale``; *sm* = shape-map
units = model units × ``SHAPE_MAP_SCALE``. Posed maps are in the crop frame (y down) with nose-relative z
(z minus z at landmark 30's UV cell); offset / shape maps are in the model frame (y up).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from dsfnet.model.config import ModelConfig
from dsfnet.model.fusion import FusionUNet
from dsfnet.model.heads import DenseHeads, ModelSpaceHead
from dsfnet.model.hrnet import HRNetLite
from dsfnet.geometry.frames import FLIP_Y_DIAG
from dsfnet.geometry.posmap import SHAPE_MAP_SCALE, nose_cell
from dsfnet.geometry.similarity import procrustes_rotation
from dsfnet.model.lifting import (
    PointNet,
    fit_similarity,
    fit_weights,
    flat_cells,
    gather_cells,
    scatter_to_uv,
    select_cells,
    van_der_corput,
)
from dsfnet.model.mobilenet import MobileNetFPN

#: names of the branches ``forward`` can report
BRANCHES = ("fused", "image", "model")


def default_tm_statistics(input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Plausible ``(mean, std)`` of Tm (each ``(3, 4)``, model units → crop px) before data statistics exist.

    Scale ``s0 = input_size / 1.8e5`` (a face ≈ 1.8e5 model units across the crop's face box), the y-flip in
    the mean's linear part, translation at the crop centre; stds in proportion to Tm's spread over 300W-LP crops
    (linear part ≈ 0.35·s0, translations 0.09–0.14 of the crop size).
    """
    s0 = input_size / 1.8e5
    mean = np.array([[s0, 0, 0, input_size / 2], [0, -s0, 0, input_size / 2], [0, 0, s0, 0.24 * input_size]])
    std = np.array([[0.35 * s0] * 3 + [0.14 * input_size], [0.35 * s0] * 3 + [0.09 * input_size], [0.35 * s0] * 3 + [0.12 * input_size]])
    return mean, std


class ImageStage(nn.Module):
    """Backbone + image-space heads + model-space head: ``(B, 3, S, S)`` standardised RGB → dict.

    Keys: ``grid (B,2,S,S)``, ``seg_logit``/``seg``/``conf_logit``/``conf``/``depth`` ``(B,1,S,S)`` (see
    :class:`~dsfnet.model.heads.DenseHeads`), ``msf (B,C_msf,S/32,S/32)``, ``shape_ms (B,Ks)``, ``exp_ms (B,Ke)``,
    ``tm_ms_z (B,12)``. Exported to ONNX inside ``network.onnx`` (``dsfnet.model.export``).
    """

    OUTPUTS = ("grid", "seg_logit", "seg", "conf_logit", "conf", "depth", "msf", "shape_ms", "exp_ms", "tm_ms_z")

    def __init__(self, config: ModelConfig, n_shape: int, n_exp: int) -> None:
        super().__init__()
        if config.backbone == "hrnet":
            self.backbone: nn.Module = HRNetLite(config.backbone_widths, config.hrnet_blocks)
        else:
            self.backbone = MobileNetFPN(config.mobilenet_width, config.fpn_channels, config.fpn_stride)
        info = self.backbone.feature_info
        self.dense_heads = DenseHeads(info["dense"]["channels"], config.head_channels, info["dense"]["stride"], config.head_kind,
                                      shared=config.head_shared)
        spatial = config.input_size // info["global"]["stride"]
        self.model_head = ModelSpaceHead(info["global"]["channels"], config.msf_channels, config.msf_flat_channels, spatial, n_shape, n_exp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone.forward_features(x)
        out = self.dense_heads(feats["dense"])
        out.update(self.model_head(feats["global"]))
        return out


def _as_tensor(value: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(np.array(value), dtype=dtype)  # a copy: layout arrays may be read-only


class DSFNet(nn.Module):
    """DSFNet built from a config, a face model and its UV layout.

    Args:
        config: a :class:`ModelConfig`.
        layout: the ``UVLayout`` of ``face_model`` at ``config.uv_size`` (``size``, ``face_mask (U,U)``,
            ``weight_mask (U,U)``, ``kpt_cells (68,2)`` (row, col), ``basis_maps(face_model)``).
        face_model: the ``FaceModel`` (its ``fingerprint`` is kept as ``face_model_fingerprint``).

    UV assets become non-persistent buffers (derived from the face model, not saved in checkpoints):
    ``mean_map (3,U,U)`` sm, ``basis (Ks+Ke, 3·U·U)`` sm per unit normalised coefficient (views
    ``shape_maps (Ks,3,U,U)``, ``exp_maps (Ke,3,U,U)``), ``face_mask``/``weight_mask (U,U)``, ``kpt_cells (68,2)``. ``tm_mean``/``tm_std`` ``(12,)``
    are persistent (set them from data with :meth:`set_tm_statistics`).
    """

    def __init__(self, config: ModelConfig, layout: Any, face_model: Any) -> None:
        super().__init__()
        config.validate()
        u = config.uv_size
        if int(layout.size) != u:
            raise ValueError(f"UV layout size {layout.size} does not match config.uv_size {u}")
        mean_map, shape_maps, exp_maps = layout.basis_maps(face_model)
        mean_map, shape_maps, exp_maps = _as_tensor(mean_map), _as_tensor(shape_maps), _as_tensor(exp_maps)
        if mean_map.shape != (3, u, u) or shape_maps.shape[1:] != (3, u, u) or exp_maps.shape[1:] != (3, u, u):
            raise ValueError(f"basis maps must be (3,U,U), (Ks,3,U,U), (Ke,3,U,U) with U={u}; got "
                             f"{tuple(mean_map.shape)}, {tuple(shape_maps.shape)}, {tuple(exp_maps.shape)}")
        face_mask = _as_tensor(layout.face_mask).reshape(u, u) > 0
        kpt = _as_tensor(layout.kpt_cells, torch.long)
        if kpt.shape != (68, 2):
            raise ValueError(f"kpt_cells must be (68, 2) (row, col), got {tuple(kpt.shape)}")
        self.config = config
        self.n_shape, self.n_exp = int(shape_maps.shape[0]), int(exp_maps.shape[0])
        self.face_model_fingerprint = getattr(face_model, "fingerprint", None)
        self.register_buffer("mean_map", mean_map, persistent=False)
        # shape and expression maps stacked as one (Ks + Ke, 3·U·U) matrix: one memory-bound matmul per call
        self.register_buffer("basis", torch.cat([shape_maps, exp_maps]).flatten(1), persistent=False)
        self.register_buffer("face_mask", face_mask.float(), persistent=False)
        self.register_buffer("weight_mask", _as_tensor(layout.weight_mask).reshape(u, u), persistent=False)
        self.register_buffer("kpt_cells", kpt, persistent=False)
        # the landmark vertices' bilinear cells and weights (the layout's ``landmarks_from_map``, as buffers)
        kp = np.asarray(layout.keypoints)
        self.register_buffer("kpt_sample_cells", _as_tensor(layout.vertex_cells[kp], torch.long), persistent=False)
        self.register_buffer("kpt_sample_weights", _as_tensor(layout.vertex_cell_weights[kp]), persistent=False)
        face_index = torch.nonzero(face_mask.reshape(-1)).reshape(-1)
        if face_index.numel() < 3:
            raise ValueError(f"the UV face mask has {face_index.numel()} cells; need at least 3")
        self.register_buffer("face_index", face_index, persistent=False)
        self.register_buffer("point_priority", torch.as_tensor(van_der_corput(face_index.numel()), dtype=torch.float32), persistent=False)
        axis = (torch.arange(u, dtype=torch.float32) + 0.5) / (u / 2.0) - 1.0
        rows, cols = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("uv_coords", torch.stack([rows, cols]), persistent=False)  # (2, U, U): row, col in (-1, 1)
        nose_row, nose_col = nose_cell(kpt)
        self.nose_cell = nose_row * u + nose_col  # flat index of the nose tip's cell: the depth reference
        self._map_shape = (3, u, u)  # Python ints: no size arithmetic in traced (ONNX) graphs
        tm_mean, tm_std = default_tm_statistics(config.input_size)
        self.register_buffer("tm_mean", _as_tensor(tm_mean).reshape(12))
        self.register_buffer("tm_std", _as_tensor(tm_std).reshape(12))

        self.image_stage = ImageStage(config, self.n_shape, self.n_exp)
        self.pointnet = PointNet(6, config.pointnet_widths, self.n_shape, self.n_exp)
        self.fusion = FusionUNet(12, config.msf_channels, config.fusion_base, config.fusion_levels, config.fusion_shared_decoder,
                                 input_stride=config.fusion_input_stride)
        #: fit every similarity on detached inputs: set by the trainer for a stage's first ``detach_alignment_epochs``
        #: (``dsfnet.train.schedule``), as the SVD's backward pass is unstable while singular values are nearly equal
        self.detach_alignment = False
        #: 3×3 solver of every similarity fit (``dsfnet.geometry.weighted_umeyama``): ``"svd"`` (training and the
        #: torch backend) or ``"quaternion"`` (SVD-free, same result; set by the ONNX export, which cannot trace an SVD)
        self.alignment_solver = "svd"

    # ------------------------------------------------------------------ helpers (all batched, traceable)
    def landmarks(self, face_uvm: torch.Tensor) -> torch.Tensor:
        """The 68 landmarks ``(B, 68, 3)`` of position maps ``(B, 3, U, U)``, in the maps' units: bilinear at the
        landmark vertices' exact UV coordinates, as ``UVLayout.landmarks_from_map`` (the inference decoder)."""
        flat = face_uvm.flatten(2)[:, :, self.kpt_sample_cells]  # (B, 3, 68, 4)
        return (flat * self.kpt_sample_weights).sum(-1).transpose(1, 2)

    def set_tm_statistics(self, mean: Any, std: Any) -> None:
        """Set the Tm z-score statistics from data: ``mean``, ``std`` as ``(3, 4)`` or ``(12,)`` (model units → crop px)."""
        m, s = _as_tensor(mean).reshape(-1), _as_tensor(std).reshape(-1)
        if m.numel() != 12 or s.numel() != 12:
            raise ValueError(f"Tm statistics need 12 values each, got {m.numel()} and {s.numel()}")
        if not bool(torch.isfinite(m).all()) or not bool((s > 0).all()):
            raise ValueError(f"Tm mean must be finite and std > 0; got std {s.tolist()}")
        self.tm_mean.copy_(m)
        self.tm_std.copy_(s)

    def normalize_tm(self, tm: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 4)`` Tm → ``(B, 12)`` z-scored (the ``tm_ms_z`` target)."""
        return (tm.reshape(tm.shape[0], 12) - self.tm_mean) / self.tm_std

    def denormalize_tm(self, tm_z: torch.Tensor) -> torch.Tensor:
        """``(B, 12)`` z-scored → ``(B, 3, 4)`` Tm (model units → crop px, y down: its 3×3 part has det < 0)."""
        return (tm_z * self.tm_std + self.tm_mean).reshape(-1, 3, 4)

    @property
    def shape_maps(self) -> torch.Tensor:
        """``(Ks, 3, U, U)`` shape basis maps, sm units per unit normalised coefficient (a view of ``basis``)."""
        return self.basis[: self.n_shape].reshape(self.n_shape, *self.mean_map.shape)

    @property
    def exp_maps(self) -> torch.Tensor:
        """``(Ke, 3, U, U)`` expression basis maps (a view of ``basis``)."""
        return self.basis[self.n_shape:].reshape(self.n_exp, *self.mean_map.shape)

    def offsets(self, shape: torch.Tensor, exp: torch.Tensor) -> torch.Tensor:
        """Offset map ``O`` (sm units) from normalised coefficients: ``(B, Ks), (B, Ke) → (B, 3, U, U)``."""
        flat = torch.cat([shape, exp], dim=1) @ self.basis  # (B, 3·U·U)
        return flat.reshape(-1, *self._map_shape)

    def pose_map(self, linear: torch.Tensor, translation: torch.Tensor, shape_map: torch.Tensor) -> torch.Tensor:
        """``linear · X + translation`` for every cell ``X`` of ``shape_map``, with nose-relative z, in one pass.

        ``linear (B, 3, 3)``, ``translation (B, 3)``, ``shape_map (B, 3, U, U)`` → ``(B, 3, U, U)``. The same as
        ``dsfnet.geometry.posmap.nose_relative`` of the posed map (up to float rounding): the posed nose-tip z is
        subtracted from the translation first, so the map is written once (a full-map pass fewer in the exported graph).
        """
        x = flat_cells(shape_map)
        t = translation[:, :, None]
        z_nose = torch.matmul(linear[:, 2:3], x[:, :, self.nose_cell:self.nose_cell + 1]) + t[:, 2:3]  # (B, 1, 1)
        t = torch.cat([t[:, :2], t[:, 2:3] - z_nose], dim=1)
        return (torch.matmul(linear, x) + t).reshape(-1, *self._map_shape)

    def tm_pose(self, tm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``Tm (B, 3, 4)`` as the affine map of :meth:`pose_map` from sm units to pm units: ``(linear (B, 3, 3),
        translation (B, 3))`` = ``(Tm[:, :3] / (SHAPE_MAP_SCALE · pos_scale), Tm[:, 3] / pos_scale)``."""
        pos = self.config.pos_scale
        return tm[:, :, :3] * (1.0 / (SHAPE_MAP_SCALE * pos)), tm[:, :, 3] / pos

    def posed_from_tm(self, shape_map: torch.Tensor, tm: torch.Tensor) -> torch.Tensor:
        """``P = Tm ∘ (shape_map / SHAPE_MAP_SCALE) / pos_scale`` with nose-relative z: the model-space branch's
        posed face.

        ``shape_map (B, 3, U, U)`` sm units (model frame), ``tm (B, 3, 4)`` → ``(B, 3, U, U)`` pm units, crop frame.
        """
        return self.pose_map(*self.tm_pose(tm), shape_map)

    def model_rotation(self, tm: torch.Tensor) -> torch.Tensor:
        """Proper rotation of the model-space branch: the rotation nearest to ``F·Tm[:, :3]`` (``(B, 3, 4) → (B, 3, 3)``).

        The orthogonal Procrustes (polar) factor of ``F·Tm[:, :3]``, from the same 3×3 solver as every weighted fit
        (it is the fit of the six points ``±e_k`` onto their images under ``F·Tm[:, :3]``, whose cross-covariance
        is ``F·Tm[:, :3]/3``). ``Tm``'s linear part is ``s·F·R`` for a similarity, and then this returns exactly ``R``.
        """
        flip = torch.tensor(FLIP_Y_DIAG, dtype=tm.dtype, device=tm.device)
        return procrustes_rotation(flip[:, None] * tm[:, :, :3], solver=self.alignment_solver)

    def _align(self, src: torch.Tensor, dst: torch.Tensor, weights):
        # weights: fit_weights(c_uv, face_mask): only face-mask cells take part
        return fit_similarity(src, dst, weights, flip=True, detach=self.detach_alignment, solver=self.alignment_solver)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, branch: str = "fused", return_all: bool | None = None) -> dict[str, torch.Tensor]:
        """Run the network.

        Args:
            x: ``(B, 3, S, S)`` standardised RGB crops (:mod:`dsfnet.model.preprocess`), S = ``config.input_size``.
            branch: which reconstruction fills ``face_uvm``/``rotation``: ``"fused"`` (P_f, R_f),
                ``"image"`` (P_is, R_is) or ``"model"`` (P_ms, R_ms).
            return_all: also return every intermediate head (default: ``self.training``).
        Returns:
            dict with ``face_uvm (B, 3, U, U)`` pm units, crop frame, nose-relative z; ``rotation (B, 3, 3)``
            proper ``Pose_Para`` rotation; ``fallback (B,)`` bool (too few visible UV cells: the model-space
            branch was reported instead). With ``return_all``: see :meth:`forward_from_heads`.
        """
        s = self.config.input_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"DSFNet[{self.config.name}] expects (B, 3, {s}, {s}) standardised RGB, got {tuple(x.shape)}")
        return self.forward_from_heads(self.image_stage(x), branch=branch, return_all=return_all)

    def forward_from_heads(self, heads: dict[str, torch.Tensor], branch: str = "fused",
                           return_all: bool | None = None) -> dict[str, torch.Tensor]:
        """Everything after the image stage, from its outputs: lifting, both reconstructions, fusion, final alignment.

        Used by :meth:`forward` (and so by the ONNX export), by training with ground-truth heads substituted (teacher
        forcing) and by the ground-truth round-trip test in ``tests/test_model_lifting.py`` (ground-truth heads in,
        the ground-truth position map and rotation out).

        Args:
            heads: :class:`ImageStage` outputs (``grid, seg, conf, depth, msf, shape_ms, exp_ms, tm_ms_z``).
            branch: ``"fused" | "image" | "model"``.
            return_all: return intermediates (default ``self.training``).
        Returns:
            ``face_uvm``, ``rotation``, ``fallback``; with ``return_all`` also ``heads`` plus
            ``tm_ms (B,3,4)``, ``offset_ms``/``face_ms``/``rotation_ms``, ``d_uv``/``c_uv``/``m_uv``/``d_can``
            (``(B,3|1,U,U)``), ``shape_is``/``exp_is``, ``offset_is``/``face_is``/``rotation_is``,
            ``offset_f`` (O_f, sm), ``kpt_f`` (K_f, pm), ``face_f``/``rotation_f`` — whatever ``branch`` needed.
        """
        if branch not in BRANCHES:
            raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
        return_all = self.training if return_all is None else return_all
        cfg = self.config
        out: dict[str, torch.Tensor] = dict(heads) if return_all else {}

        tm = self.denormalize_tm(heads["tm_ms_z"])
        rotation_ms = self.model_rotation(tm)
        if branch == "model":
            # model-space branch only; its proper rotation is the one nearest to F·Tm[:, :3]
            offset_ms = self.offsets(heads["shape_ms"], heads["exp_ms"])
            face_ms = self.posed_from_tm(offset_ms + self.mean_map, tm)
            if return_all:
                out.update(tm_ms=tm, offset_ms=offset_ms, face_ms=face_ms, rotation_ms=rotation_ms)
            fallback = torch.zeros_like(heads["shape_ms"][:, 0], dtype=torch.bool)
            out.update(face_uvm=face_ms, rotation=rotation_ms, fallback=fallback)
            return out

        # image-space branch: lift visible pixels, pose-normalise them onto the mean face, PointNet, re-pose
        lifted = scatter_to_uv(heads["grid"], heads["seg"], heads["conf"], heads["depth"], uv_size=cfg.uv_size,
                               pos_scale=cfg.pos_scale, face_mask=self.face_mask, threshold=cfg.seg_threshold)
        d_uv, c_uv, m_uv = lifted.d_uv, lifted.c_uv, lifted.m_uv
        fallback = lifted.count < cfg.min_visible_cells
        weights = fit_weights(c_uv, self.face_mask)  # the confidence weights of all three fits, normalised once
        to_mean = self._align(d_uv, self.mean_map[None], weights)
        # PointNet input at the selected cells only: [pose-normalised d_uv (zero where not filled), c_uv,
        # the cell's UV coordinates] (selecting first and transforming the selected points gives the same points)
        cells, mask = select_cells(m_uv.flatten(1), self.face_index, self.point_priority, cfg.pointnet_points)
        picked_d, picked_c = gather_cells(flat_cells(d_uv), cells), gather_cells(flat_cells(c_uv), cells)
        uv = self.uv_coords.reshape(2, -1).T[cells]  # (B, N, 2), or (N, 2) for cells shared by the batch
        uv = uv.transpose(1, 2) if cells.dim() == 2 else uv.T.expand_as(picked_d[:, :2])
        points = torch.cat([to_mean.apply_points(picked_d) * mask[:, None], picked_c, uv], dim=1)  # (B, 6, N)
        pn = self.pointnet(points, mask)
        # Both branches batched as channel pairs [image-space | model-space]: their offset maps in one pass over the
        # basis, their shape maps, and the two posed maps in one pose_map (rows [is, ms] per sample).
        u = cfg.uv_size
        offsets = self.offsets(torch.stack([pn["shape_is"], heads["shape_ms"]], dim=1).reshape(-1, self.n_shape),
                               torch.stack([pn["exp_is"], heads["exp_ms"]], dim=1).reshape(-1, self.n_exp))
        offsets = offsets.reshape(-1, 6, u, u)  # [O_is | O_ms]
        shapes = offsets + self.mean_map.repeat(2, 1, 1)  # [S_is | S_ms], sm units, model frame
        # split, not two slices: in training the backward of a split writes one gradient (two slices would each
        # fill a zero tensor of the whole map and add them)
        shape_is_map, shape_ms_map = shapes.split(3, dim=1)
        fit_is = self._align(shape_is_map, d_uv, weights)
        linear_ms, trans_ms = self.tm_pose(tm)
        posed = self.pose_map(torch.stack([fit_is.linear(), linear_ms], dim=1).reshape(-1, 3, 3),
                              torch.stack([fit_is.translation, trans_ms], dim=1).reshape(-1, 3),
                              shapes.reshape(-1, 3, u, u)).reshape(-1, 6, u, u)  # [P_is | P_ms]
        (offset_is, offset_ms), (face_is, face_ms) = offsets.split(3, dim=1), posed.split(3, dim=1)
        if return_all:
            d_can = to_mean.apply_map(d_uv) * m_uv
            out.update(tm_ms=tm, offset_ms=offset_ms, face_ms=face_ms, rotation_ms=rotation_ms, d_uv=d_uv, c_uv=c_uv,
                       m_uv=m_uv, d_can=d_can, shape_is=pn["shape_is"], exp_is=pn["exp_is"], offset_is=offset_is,
                       face_is=face_is, rotation_is=fit_is.rotation, visible_cells=lifted.count)
        if branch == "image":
            face, rot = face_is, fit_is.rotation
        else:
            # fusion in UV space and the final confidence-weighted self-alignment
            o_raw, k_raw = self.fusion(torch.cat([posed, offsets], dim=1), heads["msf"])  # [P_is, P_ms, O_is, O_ms]
            if cfg.fusion_residual:  # corrections on top of the two branches' mean
                shape_f = o_raw + 0.5 * (shape_is_map + shape_ms_map)  # O_f + mean, as O_f = o_raw + ½(O_is + O_ms)
                kpt_f = k_raw + 0.5 * (face_is + face_ms)
            else:
                shape_f, kpt_f = o_raw + self.mean_map, k_raw
            fit_f = self._align(shape_f, kpt_f, weights)
            face, rot = self.pose_map(fit_f.linear(), fit_f.translation, shape_f), fit_f.rotation
            if return_all:
                offset_f = o_raw + 0.5 * (offset_is + offset_ms) if cfg.fusion_residual else o_raw
                out.update(offset_f=offset_f, kpt_f=kpt_f, face_f=face, rotation_f=rot)
        # empty-visibility guard: too few visible cells never silently count as "all visible" (the reference code's
        # fallback); report the model-space branch and flag it
        out["face_uvm"] = torch.where(fallback.reshape(-1, 1, 1, 1), face_ms, face)
        out["rotation"] = torch.where(fallback.reshape(-1, 1, 1), rotation_ms, rot)
        out["fallback"] = fallback
        return out
