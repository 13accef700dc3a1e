"""DSFNet training losses as pure functions (primitives, terms, weights), plus the staged schedule A → B → C.

Units (``docs/CONVENTIONS.md``): ``grid`` is the normalised UV cell coordinate in (−1, 1); ``depth``,
posed UV maps (``posmap``/P_gt, ``kpt_f``, ``face_*``) are position-map (pm) units with nose-relative z;
offset maps (``offset``/O_gt, ``offset_f``) are shape-map (sm) units; coefficients are normalised
(α/σ, β/σ); Tm is compared z-scored with the model's ``tm_mean``/``tm_std`` (12 values, row-major 3×4).

Primitives, on the per cell/pixel error ``Δ = sqrt(Σ_ch (y − ŷ)² + 1e-8)``:

* :func:`masked_mean`: ``(1/B) Σ_b Σ_p M_b(p) Δ_b(p) / Σ_p M_b(p)`` (a sample with an empty mask adds 0);
* :func:`face_rse`: mean of Δ over the UV face mask, per sample, then batch mean;
* :func:`face_weighted_rse`: ``(1/|mask|) Σ_{p∈mask} w(p) Δ(p)``: normalised by the mask AREA, not by Σw;
* :func:`para_loss`: ``mean_b sqrt(mean_j (a_j − â_j)² + 1e-8)`` (a per-sample RMSE; the 1e-8 keeps the
  gradient finite at a perfect prediction, so a perfect prediction scores exactly 1e-4);
* :func:`confidence_target`: ``seg · sqrt(exp(−Δ_grid/α) · exp(−Δ_depth/α) + 1e-8)`` from DETACHED predictions.

A perfect prediction therefore scores ``sqrt(1e-8) = 1e-4`` (not exactly 0) on every Δ-based term.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import torch
import torch.nn.functional as F

#: the ε inside every square root of the primitives
EPS = 1e-8
#: temperature α of the confidence targets ``exp(−error/α)``
CONF_ALPHA = 0.05

#: every term the trainer knows, in logging order
TERMS = ("grid", "seg", "depth", "conf", "shape_ms", "exp_ms", "tm_ms", "shape_is", "exp_is", "face_is",
         "face_ms", "kpt_f", "offset_f", "face_f", "edge", "normal")


# ---------------------------------------------------------------------------------------------- primitives

def point_error(pred: torch.Tensor, target: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``Δ = sqrt(Σ_dim (pred − target)² + 1e-8)``: ``(B, C, *) → (B, *)`` (channel axis ``dim`` reduced)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return torch.sqrt(((pred - target) ** 2).sum(dim=dim) + EPS)


def masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mask-weighted mean of ``err``, then the batch mean (``MaskedMean``; the image-space terms use
    ``mask = seg_gt``).

    Args:
        err: ``(B, *)`` per-pixel (or per-cell) error.
        mask: ``(B, *)`` or broadcastable (e.g. ``(*)``) weights, usually {0, 1}.
    Returns:
        scalar; a sample whose mask sums to 0 contributes 0 (never NaN).
    """
    mask = mask.to(err.dtype).expand_as(err)
    b = err.shape[0]
    num = (err * mask).reshape(b, -1).sum(1)
    den = mask.reshape(b, -1).sum(1)
    return (num / den.clamp_min(1e-6)).mean()


def face_rse(pred: torch.Tensor, target: torch.Tensor, face_mask: torch.Tensor) -> torch.Tensor:
    """Mean Δ over the UV face mask (``FaceRSE``): ``(B, C, U, U)`` twice, ``face_mask (U, U)`` → scalar."""
    return masked_mean(point_error(pred, target), face_mask)


def face_weighted_rse(pred: torch.Tensor, target: torch.Tensor, face_mask: torch.Tensor,
                      weight_mask: torch.Tensor) -> torch.Tensor:
    """``(1/|mask|) Σ_{mask} w·Δ`` per sample, then batch mean (``FaceWeightedRSE``).

    ``pred``, ``target``: ``(B, C, U, U)``; ``face_mask``, ``weight_mask``: ``(U, U)``.
    """
    err = point_error(pred, target)
    fm = face_mask.to(err.dtype)
    area = fm.sum().clamp_min(1.0)
    return ((err * (fm * weight_mask.to(err.dtype))).flatten(1).sum(1) / area).mean()


def para_loss(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Per-sample RMSE, batch mean: ``mean_b sqrt(mean_j (a_j − â_j)² + 1e-8)``; ``(B, K)`` twice → scalar."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return torch.sqrt(((pred - target) ** 2).flatten(1).mean(1) + EPS).mean()


def seg_bce(seg_logit: torch.Tensor, seg_gt: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the seg logits, averaged over all pixels: ``(B,1,S,S)``/``(B,S,S)`` → scalar."""
    return F.binary_cross_entropy_with_logits(seg_logit.reshape(seg_gt.shape), seg_gt.to(seg_logit.dtype))


def confidence_target(grid_pred: torch.Tensor, grid_gt: torch.Tensor, depth_pred: torch.Tensor,
                      depth_gt: torch.Tensor, seg_gt: torch.Tensor, alpha: float = CONF_ALPHA) -> torch.Tensor:
    """``c_gt = seg · sqrt(exp(−Δ_grid/α)·exp(−|Δ_depth|/α) + 1e-8)`` from DETACHED predictions.

    Args:
        grid_pred, grid_gt: ``(B, 2, S, S)`` normalised UV coordinates.
        depth_pred, depth_gt: ``(B, S, S)`` pm units (nose-relative).
        seg_gt: ``(B, S, S)`` visible-face mask.
    Returns:
        ``(B, S, S)`` in [0, 1], no gradient.
    """
    with torch.no_grad():
        e_grid = point_error(grid_pred.detach(), grid_gt)
        e_depth = point_error(depth_pred.detach()[:, None], depth_gt[:, None])
        return seg_gt * torch.sqrt(torch.exp(-e_grid / alpha) * torch.exp(-e_depth / alpha) + EPS)


def grid_edges(triangles: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges ``(E, 2)`` of ``triangles (T, 3)`` (flat UV cell ids)."""
    t = triangles.long()
    e = torch.cat([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    return torch.unique(e, dim=0)


def edge_loss(pred_shape: torch.Tensor, gt_shape: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Mean ``|‖e_pred‖ − ‖e_gt‖|`` over the UV-grid edges (SADRNet's edge loss; optional, weight 0
    by default).

    ``pred_shape``, ``gt_shape``: ``(B, 3, U, U)`` shape maps (O + mean, sm units); ``triangles (T, 3)`` flat cell ids.
    """
    edges = grid_edges(triangles)
    p, g = pred_shape.flatten(2), gt_shape.flatten(2)
    lp = torch.sqrt(((p[:, :, edges[:, 0]] - p[:, :, edges[:, 1]]) ** 2).sum(1) + EPS)
    lg = torch.sqrt(((g[:, :, edges[:, 0]] - g[:, :, edges[:, 1]]) ** 2).sum(1) + EPS)
    return (lp - lg).abs().mean()


def normal_loss(pred_shape: torch.Tensor, gt_shape: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Mean ``|cos(pred edge, GT normal)|`` over UV-grid triangles and their 3 edges (SADRNet's normal loss;
    optional, weight 0 by default)."""
    t = triangles.long()
    p, g = pred_shape.flatten(2), gt_shape.flatten(2)
    g0, g1, g2 = g[:, :, t[:, 0]], g[:, :, t[:, 1]], g[:, :, t[:, 2]]
    n = torch.linalg.cross(g1 - g0, g2 - g0, dim=1)
    n = n / torch.sqrt((n ** 2).sum(1, keepdim=True) + EPS)
    total = 0.0
    for a, b in ((0, 1), (1, 2), (2, 0)):
        e = p[:, :, t[:, b]] - p[:, :, t[:, a]]
        e = e / torch.sqrt((e ** 2).sum(1, keepdim=True) + EPS)
        total = total + (e * n).sum(1).abs().mean()
    return total / 3.0


# ---------------------------------------------------------------------------------------------- config

@dataclass
class LossWeights:
    """Weight of every term. ``face_f`` is the weight reached at the end of its ramp.

    The image-space, model-space and fusion weights (``grid`` … ``tm_ms``, ``kpt_f``, ``offset_f``) are those of
    DSFNet's development training code. Ours: the PointNet terms ``shape_is``/``exp_is`` (the model-space weights
    again), the whole-face terms (``face_is``/``face_ms``: 0 here, 0.5 in the lite and paper YAML configs;
    ``face_f`` ramped in late in training) and SADRNet's ``edge``/``normal`` (0).
    """

    grid: float = 50.0
    seg: float = 1.0
    depth: float = 100.0
    conf: float = 0.1
    shape_ms: float = 10.0
    exp_ms: float = 50.0
    tm_ms: float = 1.0
    shape_is: float = 10.0
    exp_is: float = 50.0
    face_is: float = 0.0
    face_ms: float = 0.0
    kpt_f: float = 1.0
    offset_f: float = 5.0
    face_f: float = 0.5
    edge: float = 0.0
    normal: float = 0.0


@dataclass
class Stage:
    """A training stage: active until ``until`` (fraction of the whole run), with these terms and forward branch.

    ``branch``: the forward branch needed ("model" ⊂ "image" ⊂ "fused": cheaper stages skip the later parts).
    ``lr_scale``: multiplies the scheduled learning rate; ``teacher_forcing``: ``[p_start, p_end]`` probability of
    lifting with GT seg/grid, linear over the stage; ``detach_alignment_epochs``: epochs (from the stage start)
    during which the similarity fits run on detached inputs.
    """

    name: str
    until: float
    terms: list[str]
    branch: str = "fused"
    lr_scale: float = 1.0
    teacher_forcing: list[float] = field(default_factory=lambda: [0.0, 0.0])
    detach_alignment_epochs: float = 0.0


def default_stages() -> list[Stage]:
    """A (30 %: image + model-space heads), B (to 60 %: + PointNet), C (rest: + fusion).

    Staged because the scatter is discrete and the similarity fits' SVD is unstable early: B lifts with ground-truth
    ``seg``/``grid`` at first (teacher forcing 1 → 0) and detaches the fits for its first epoch; C trains
    everything end to end at half the learning rate.
    """
    a = ["grid", "seg", "depth", "conf", "shape_ms", "exp_ms", "tm_ms"]
    b = a + ["shape_is", "exp_is", "face_is"]
    c = b + ["face_ms", "kpt_f", "offset_f", "face_f", "edge", "normal"]
    return [Stage("A", 0.3, a, branch="model"),
            Stage("B", 0.6, b, branch="image", teacher_forcing=[1.0, 0.0], detach_alignment_epochs=1.0),
            Stage("C", 1.0, c, branch="fused", lr_scale=0.5)]


@dataclass
class LossConfig:
    """Weights, the stage list and the ``face_f`` ramp (fractions of the whole run)."""

    weights: LossWeights = field(default_factory=LossWeights)
    stages: list[Stage] = field(default_factory=default_stages)
    face_f_ramp: list[float] = field(default_factory=lambda: [0.8, 0.95])
    conf_alpha: float = CONF_ALPHA

    def validate(self) -> None:
        """ValueError on unknown term names, unordered stages, negative weights or a bad ramp."""
        for f in fields(self.weights):
            if getattr(self.weights, f.name) < 0:
                raise ValueError(f"loss weight {f.name} must be >= 0, got {getattr(self.weights, f.name)}")
        if not self.stages:
            raise ValueError("at least one stage is needed")
        last = 0.0
        for st in self.stages:
            unknown = sorted(set(st.terms) - set(TERMS))
            if unknown:
                raise ValueError(f"stage {st.name}: unknown loss terms {unknown}; valid: {list(TERMS)}")
            if st.branch not in ("model", "image", "fused"):
                raise ValueError(f"stage {st.name}: branch must be model|image|fused, got {st.branch!r}")
            if not last < st.until <= 1.0 + 1e-9:
                raise ValueError(f"stage {st.name}: 'until' must increase within (0, 1], got {st.until} after {last}")
            last = st.until
        if abs(last - 1.0) > 1e-9:
            raise ValueError(f"the last stage must end at 1.0, got {last}")
        lo, hi = self.face_f_ramp
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"face_f_ramp must be [start, end] with 0 <= start <= end <= 1, got {self.face_f_ramp}")


def stage_at(config: LossConfig, progress: float) -> tuple[int, Stage]:
    """``(index, Stage)`` active at ``progress`` ∈ [0, 1] (fraction of the run's total steps)."""
    for i, st in enumerate(config.stages):
        if progress < st.until:
            return i, st
    return len(config.stages) - 1, config.stages[-1]


def active_weights(config: LossConfig, progress: float) -> dict[str, float]:
    """Weight of each term at ``progress``: 0 if the stage does not list it; ``face_f`` ramps linearly over
    ``face_f_ramp`` (0 before its start). Terms with weight 0 are not computed by :func:`compute_losses`."""
    _, st = stage_at(config, progress)
    w = {name: (float(getattr(config.weights, name)) if name in st.terms else 0.0) for name in TERMS}
    lo, hi = config.face_f_ramp
    ramp = 1.0 if progress >= hi else (0.0 if progress < lo else (progress - lo) / max(hi - lo, 1e-12))
    w["face_f"] *= ramp
    return w


# ---------------------------------------------------------------------------------------------- total

@dataclass
class LossContext:
    """Model-side constants the losses need (taken once from the model; see :meth:`from_model`).

    ``face_mask``, ``weight_mask``: ``(U, U)``; ``tm_mean``, ``tm_std``: ``(12,)``; ``mean_map (3, U, U)``
    and ``triangles (T, 3)`` (flat cell ids) only for edge/normal.
    """

    face_mask: torch.Tensor
    weight_mask: torch.Tensor
    tm_mean: torch.Tensor
    tm_std: torch.Tensor
    mean_map: torch.Tensor | None = None
    triangles: torch.Tensor | None = None

    @classmethod
    def from_model(cls, model: Any, triangles: Any = None) -> "LossContext":
        """Read the buffers of a :class:`~dsfnet.model.interface.TrainableNetwork` (``face_mask``, ``weight_mask``,
        ``tm_mean``, ``tm_std``, ``mean_map``)."""
        tri = None if triangles is None else torch.as_tensor(triangles, dtype=torch.long)
        return cls(model.face_mask, model.weight_mask, model.tm_mean, model.tm_std,
                   model.mean_map, tri)


def compute_losses(out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], ctx: LossContext,
                   weights: Mapping[str, float], conf_alpha: float = CONF_ALPHA
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total of the active terms.

    Args:
        out: the model's training-mode dict (``grid (B,2,S,S)``, ``seg_logit``, ``conf``, ``depth`` ``(B,1,S,S)``,
            ``shape_ms``, ``exp_ms``, ``tm_ms_z (B,12)``, ``shape_is``, ``exp_is``, ``face_is``, ``face_ms``,
            ``kpt_f (B,3,U,U)`` pm, ``offset_f (B,3,U,U)`` sm, ``face_f``); only the keys of active terms are needed.
        batch: the collated training sample (:func:`dsfnet.data.cache.default_fields`): ``posmap``, ``offset``, ``shape``, ``exp``,
            ``tm (B,3,4)``, ``grid``, ``seg (B,S,S)``, ``depth (B,S,S)``.
        ctx: :class:`LossContext`.
        weights: term → weight (e.g. :func:`active_weights`); terms with weight 0 are skipped.
    Returns:
        ``(total, terms)``: the scalar total and each computed term UNweighted (for logging).
    Raises:
        ValueError: an active term's prediction is missing from ``out`` (e.g. the wrong forward branch).
    """
    unknown = sorted(set(weights) - set(TERMS))
    if unknown:
        raise ValueError(f"unknown loss terms {unknown}; valid: {list(TERMS)}")
    active = [t for t in TERMS if weights.get(t, 0.0) > 0.0]
    need = {"grid": "grid", "seg": "seg_logit", "depth": "depth", "conf": "conf", "shape_ms": "shape_ms",
            "exp_ms": "exp_ms", "tm_ms": "tm_ms_z", "shape_is": "shape_is", "exp_is": "exp_is", "face_is": "face_is",
            "face_ms": "face_ms", "kpt_f": "kpt_f", "offset_f": "offset_f", "face_f": "face_f", "edge": "offset_f",
            "normal": "offset_f"}
    missing = sorted({need[t] for t in active if need[t] not in out})
    if missing:
        raise ValueError(f"active loss terms need model outputs {missing}; the forward returned {sorted(out)}")
    seg_gt = batch["seg"]
    terms: dict[str, torch.Tensor] = {}
    for t in active:
        if t == "grid":
            terms[t] = masked_mean(point_error(out["grid"], batch["grid"]), seg_gt)
        elif t == "seg":
            terms[t] = seg_bce(out["seg_logit"], seg_gt)
        elif t == "depth":
            terms[t] = masked_mean(point_error(out["depth"][:, 0:1], batch["depth"][:, None]), seg_gt)
        elif t == "conf":
            c_gt = confidence_target(out["grid"], batch["grid"], out["depth"][:, 0], batch["depth"], seg_gt, conf_alpha)
            terms[t] = masked_mean((out["conf"][:, 0] - c_gt).abs(), seg_gt)
        elif t in ("shape_ms", "shape_is"):
            terms[t] = para_loss(batch["shape"], out[t])
        elif t in ("exp_ms", "exp_is"):
            terms[t] = para_loss(batch["exp"], out[t])
        elif t == "tm_ms":
            tm_z = (batch["tm"].reshape(-1, 12) - ctx.tm_mean) / ctx.tm_std
            terms[t] = para_loss(tm_z, out["tm_ms_z"])
        elif t == "offset_f":
            terms[t] = face_rse(out["offset_f"], batch["offset"], ctx.face_mask)
        elif t in ("kpt_f", "face_f", "face_is", "face_ms"):
            terms[t] = face_weighted_rse(out[t], batch["posmap"], ctx.face_mask, ctx.weight_mask)
        elif t in ("edge", "normal"):
            if ctx.triangles is None or ctx.mean_map is None:
                raise ValueError(f"the {t} loss needs LossContext.triangles and mean_map (UV-grid mesh)")
            fn = edge_loss if t == "edge" else normal_loss
            terms[t] = fn(out["offset_f"] + ctx.mean_map, batch["offset"] + ctx.mean_map, ctx.triangles)
    if not terms:
        raise ValueError("no loss term is active (all weights are 0)")
    total = sum(float(weights[t]) * v for t, v in terms.items())
    return total, terms
