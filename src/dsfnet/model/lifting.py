"""Image → UV lifting, the image-space branch's path from pixels to a complete face: scatter of the visible
pixels into UV, confidence-weighted similarity alignment with the explicit y-flip, point selection and the
PointNet (DSFNet's parts and their modules: ``docs/ARCHITECTURE.md``; how :class:`dsfnet.model.dsfnet.DSFNet`
chains them: its ``forward_from_heads``).

Everything here is tensor ops without data-dependent Python control flow (the scatter is
``scatter_reduce`` + ``gather``), so it traces; the alignment calls :func:`dsfnet.geometry.weighted_umeyama`,
whose default 3×3 SVD has no ONNX operator: the ONNX export passes ``solver="quaternion"`` (SVD-free, same
result; see ``dsfnet.model.export``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dsfnet.geometry.frames import FLIP_Y_DIAG
from dsfnet.geometry.similarity import NormalizedWeights, normalize_weights, similarity_from_moments, weighted_moments


@dataclass(frozen=True)
class UVScatter:
    """Visible image points lifted into UV: the output of :func:`scatter_to_uv`.

    Attributes:
        d_uv: ``(B, 3, U, U)`` position-map units ``[x/pos_scale, y/pos_scale, depth]`` (crop frame, nose-relative
            depth) of the pixel kept for each filled cell; 0 where not filled.
        c_uv: ``(B, 1, U, U)`` image-space confidence of that pixel; exactly 0 off ``m_uv``.
        m_uv: ``(B, 1, U, U)`` float {0, 1}: cell filled by a visible pixel and inside the face mask.
        source: ``(B, U·U)`` int64 flat pixel index (``row·W + col``) kept for each cell, ``H·W`` where empty.
        count: ``(B,)`` number of filled cells.
    """

    d_uv: torch.Tensor
    c_uv: torch.Tensor
    m_uv: torch.Tensor
    source: torch.Tensor
    count: torch.Tensor


def take_cells(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[..., index]`` for flat cell maps ``(..., U·U)`` and an ``(F,)`` int64 index → ``(..., F)``.

    A ``gather`` (ONNX ``GatherElements``): on CPU it is 6–20× faster than ``index_select`` along the last axis of
    a 3-D tensor, in PyTorch and in ONNX Runtime (whose ``Gather`` on an inner axis is as slow).
    """
    return torch.gather(x, -1, index.expand(x.shape[:-1] + index.shape))


def gather_cells(x: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Per-sample cells of flat maps: ``x (B, C, U·U)``, ``cells (B, N)`` int64 → ``(B, C, N)``; an ``(N,)`` index
    shared by the batch goes through :func:`take_cells`."""
    if cells.dim() == 1:
        return take_cells(x, cells)
    return x.gather(2, cells[:, None, :].expand(-1, _static_int(x.shape[1]), -1))


def flat_cells(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, U, U)`` maps → ``(B, C, U·U)`` (a ``flatten(2)`` that exports as one ``Reshape``)."""
    return x.reshape(-1, _static_int(x.shape[1]), _static_int(x.shape[2]) * _static_int(x.shape[3]))


def _static_int(n) -> int:
    """A tensor size as a Python int. While tracing for ONNX, sizes are traced tensors and arithmetic on them
    becomes Shape/Gather/Concat nodes; the spatial sizes of a DSFNet graph are fixed by its config (only the batch
    is dynamic), so they are taken as constants."""
    return int(n)


def grid_to_cells(grid: torch.Tensor, uv_size: int) -> torch.Tensor:
    """UV cell (flat index ``row·U + col``) predicted at each pixel.

    Args:
        grid: ``(B, 2, H, W)`` normalised UV coordinates, channel 0 = column, 1 = row,
            ``g = (cell + 0.5)/(U/2) − 1`` (``docs/CONVENTIONS.md``).
        uv_size: ``U``.
    Returns:
        ``(B, H·W)`` int64 in ``[0, U·U)``: ``clamp(floor((g + 1)·U/2), 0, U − 1)`` per axis.
    """
    half = uv_size / 2.0
    cells = torch.floor((grid.detach() + 1.0) * half).clamp(0, uv_size - 1)
    flat = cells[:, 1] * uv_size + cells[:, 0]  # integers < U² ≤ 2^24: exact in float32
    return flat.long().reshape(-1, _static_int(grid.shape[2]) * _static_int(grid.shape[3]))


def scatter_to_uv(grid: torch.Tensor, seg: torch.Tensor, conf: torch.Tensor, depth: torch.Tensor, *, uv_size: int,
                  pos_scale: float, face_mask: torch.Tensor, threshold: float = 0.5) -> UVScatter:
    """Scatter the visible pixels into a sparse UV position map.

    A pixel ``(r, c)`` takes part if ``seg > threshold`` and its predicted cell lies inside ``face_mask``
    (background never writes anywhere). Collision rule (deterministic): per cell, keep the pixel with the
    highest ``conf``; among equal confidences, the lowest flat pixel index. Cells no visible pixel reaches stay
    empty (0, confidence 0): occluded and self-occluded parts of the face are never filled in image space. (The
    DSFNet reference code lets background pixels write into one cell, has empty cells read an image corner and
    keeps an arbitrary pixel on collisions; all three are avoided here.) The choice is not differentiable
    (discrete indices); the gathered depth and confidence are (gradients reach the depth and conf heads).

    Args:
        grid: ``(B, 2, H, W)`` UV coordinates (see :func:`grid_to_cells`).
        seg: ``(B, 1, H, W)`` P(visible face) in [0, 1].
        conf: ``(B, 1, H, W)`` confidence in (0, 1).
        depth: ``(B, 1, H, W)`` nose-relative depth, position-map units.
        uv_size: ``U``.
        pos_scale: crop px per position-map unit (``S·280/256``).
        face_mask: ``(U, U)`` bool/float face-mask cells.
        threshold: seg threshold (0.5).
    Returns:
        :class:`UVScatter`; ``d_uv[:, :2]`` is ``(col, row)/pos_scale`` of the kept pixel (pixel centres at integers).
    """
    h, w = _static_int(grid.shape[2]), _static_int(grid.shape[3])
    n_pix = h * w
    n_cells = uv_size * uv_size
    cells = grid_to_cells(grid, uv_size)
    # Every visible pixel competes for its cell; cells off the face mask are dropped after the scatter. Cells are
    # disjoint, so this is the same as letting only pixels of face cells take part (and saves a per-pixel lookup).
    visible = seg.detach().reshape(-1, n_pix) > threshold
    conf_flat = conf.reshape(-1, n_pix)
    # pixels that take no part still scatter, but a neutral value: -1 for the max (the initial value), n_pix for the min
    conf_key = torch.where(visible, conf_flat.detach(), -1.0)
    best = torch.full_like(conf_key[:, :1], -1.0).expand(-1, n_cells)
    best = best.scatter_reduce(1, cells, conf_key, reduce="amax", include_self=True)
    winner = visible & (conf_key == best.gather(1, cells))
    pix = torch.arange(n_pix, device=grid.device)[None]  # broadcast over the batch
    key = torch.where(winner, pix, n_pix)
    source = torch.full_like(key[:, :1], n_pix).expand(-1, n_cells)
    source = source.scatter_reduce(1, cells, key, reduce="amin", include_self=True)
    filled = (source < n_pix) & (face_mask.reshape(1, n_cells) > 0)
    source = torch.where(filled, source, n_pix)
    src = source.clamp(max=n_pix - 1)
    m = filled.to(conf_flat.dtype)
    # pixel coordinates of the kept pixels from constant tables (exported as constants: no integer division)
    col = ((pix % w).to(conf_flat.dtype) / pos_scale).expand_as(conf_flat)
    row = (torch.div(pix, w, rounding_mode="floor").to(conf_flat.dtype) / pos_scale).expand_as(conf_flat)
    x, y = col.gather(1, src), row.gather(1, src)
    z = depth.reshape(-1, n_pix).gather(1, src)
    c = conf_flat.gather(1, src)
    d_uv = (torch.stack([x, y, z], dim=1) * m[:, None]).reshape(-1, 3, uv_size, uv_size)
    c_uv = (c * m).reshape(-1, 1, uv_size, uv_size)
    return UVScatter(d_uv, c_uv, m.reshape(-1, 1, uv_size, uv_size), source, m.sum(dim=1))


@dataclass(frozen=True)
class FlipSimilarity:
    """A fitted map ``dst ≈ scale · src @ matrix.T + translation`` whose linear part contains the y-flip.

    Attributes:
        scale: ``(B,)``.
        matrix: ``(B, 3, 3)`` ``F·Q`` (det −1 when ``flip``), or ``Q`` without flip.
        translation: ``(B, 3)``.
        rotation: ``(B, 3, 3)`` the proper rotation ``Q``. For a model → crop fit this is the ``Pose_Para`` ``R``.
        well_posed: ``(B,)`` bool from :func:`dsfnet.geometry.weighted_umeyama`.
    """

    scale: torch.Tensor
    matrix: torch.Tensor
    translation: torch.Tensor
    rotation: torch.Tensor
    well_posed: torch.Tensor

    def linear(self) -> torch.Tensor:
        """``(B, 3, 3)`` linear part ``scale · matrix``."""
        return self.scale[:, None, None] * self.matrix

    def apply_points(self, points: torch.Tensor) -> torch.Tensor:
        """Apply to ``(B, 3, N)`` points (columns); returns ``(B, 3, N)``."""
        return self.scale[:, None, None] * torch.matmul(self.matrix, points) + self.translation[:, :, None]

    def apply_map(self, maps: torch.Tensor) -> torch.Tensor:
        """Apply to every cell of ``(B, 3, U, U)`` maps; returns ``(B, 3, U, U)``."""
        return self.apply_points(flat_cells(maps)).reshape(-1, *(_static_int(n) for n in maps.shape[1:]))


def fit_weights(weights: torch.Tensor, mask: torch.Tensor | None = None) -> NormalizedWeights:
    """``(B, 1, U, U)`` / ``(B, U, U)`` weight maps normalised once for several :func:`fit_similarity` calls with the
    same weights. With ``mask`` (``(U, U)`` {0, 1} cells to fit on) other cells get weight 0, and when no cell in it
    has weight the fits fall back to uniform weights over the mask's cells (with ``well_posed`` False)."""
    return normalize_weights(weights.flatten(1), None if mask is None else mask.reshape(-1), weights.dtype)


def fit_similarity(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | NormalizedWeights, *, flip: bool = True,
                   detach: bool = False, solver: str = "svd") -> FlipSimilarity:
    """Confidence-weighted similarity fit between two UV maps, through :func:`dsfnet.geometry.weighted_umeyama`.

    With ``flip=True`` the two maps are in frames of opposite handedness (y-up model / shape-map space vs y-down
    crop / position-map space): we solve ``F·dst ≈ c·Q·src + t'`` for a **proper** ``Q`` (``F = FLIP_Y``)
    and return the map ``dst ≈ c·(F Q)·src + F t'``. For a model → crop fit ``Q`` is the ``Pose_Para`` rotation.

    Args:
        src: ``(B, 3, U, U)`` source map (every cell is a point).
        dst: ``(B, 3, U, U)`` target map, or ``(1, 3, U, U)`` shared by the batch (e.g. the mean face).
        weights: ``(B, 1, U, U)`` or ``(B, U, U)`` non-negative, cells with weight 0 do not count; or the
            :func:`fit_weights` of such maps (e.g. restricted to the face-mask cells).
        flip: see above.
        detach: fit on detached inputs (no gradient through the similarity parameters).
        solver: ``"svd"`` or ``"quaternion"`` (ONNX-exportable), see :func:`dsfnet.geometry.weighted_umeyama`.
    Returns:
        :class:`FlipSimilarity`.
    """
    s, d = flat_cells(src), flat_cells(dst)  # (B, 3, U·U) columns: no transposed copies
    w = weights if isinstance(weights, NormalizedWeights) else normalize_weights(weights.flatten(1), None, src.dtype)
    if detach:
        s, d, w = s.detach(), d.detach(), w.detach()
    moments = weighted_moments(s, d, w)
    f = torch.tensor(FLIP_Y_DIAG if flip else (1.0, 1.0, 1.0), dtype=torch.float64, device=src.device)
    fit = similarity_from_moments(moments.scale_dst(f), solver=solver, dtype=src.dtype)  # F·dst, from the moments
    f = f.to(src.dtype)
    matrix = f[None, :, None] * fit.rotation  # F @ Q: F is diagonal, so it scales Q's rows
    return FlipSimilarity(fit.scale, matrix, fit.translation * f, fit.rotation, fit.well_posed)


def van_der_corput(n: int) -> np.ndarray:
    """``(n,)`` float64 base-2 radical inverse of ``0 … n−1`` in [0, 1): a fixed, well-spread priority order."""
    out = np.zeros(n, dtype=np.float64)
    i = np.arange(n, dtype=np.int64)
    denom = 1.0
    while (i > 0).any():
        denom *= 2.0
        out += (i & 1) / denom
        i >>= 1
    return out


def select_cells(valid: torch.Tensor, face_index: torch.Tensor, priority: torch.Tensor,
                 n_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic point selection for the PointNet (the reference code draws random points, at inference too).

    Candidates are the face-mask cells. If ``n_points <= 0`` or ≥ the number of face cells, all of them are
    used (invalid ones masked). Otherwise the ``n_points`` valid cells of highest fixed ``priority`` are kept
    (a van der Corput order over the face cells, i.e. a spatially even fixed-stride subset); when fewer cells
    are valid, all valid ones are kept and the rest is padding (mask 0).

    Args:
        valid: ``(B, U·U)`` {0, 1}.
        face_index: ``(F,)`` int64 flat indices of the face cells.
        priority: ``(F,)`` distinct values in [0, 1).
        n_points: N.
    Returns:
        ``cells`` (flat indices: ``(F,)`` shared by the batch when all face cells are used, else ``(B, N)``, in no
        particular order: the PointNet is order-invariant) and ``mask (B, N')`` float {0, 1}, ``N' = min(N, F)`` (or
        F when N ≤ 0). Gather any per-cell map at them with :func:`gather_cells` (cheaper than gathering every
        feature map over all cells first)."""
    ok = take_cells(valid, face_index)
    if n_points <= 0 or n_points >= face_index.numel():
        return face_index, ok
    score = ok * (1.0 + priority[None])
    # unsorted: the PointNet is order-invariant and the valid cells' priorities are distinct, so the same set of
    # valid points (only which invalid, masked cells pad the set may differ); half the cost of a sorted top-k
    pos = torch.topk(score, n_points, dim=1, sorted=False).indices
    return face_index[pos], ok.gather(1, pos)


class PointNet(nn.Module):
    """Permutation-invariant regression of normalised 3DMM coefficients from visible UV points.

    Shared per-point MLP (Conv1d 1×1 + BN + ReLU per width), max-pool over the **unmasked** points, linear heads.
    ``forward(points (B, C_in, N), mask (B, N))`` → ``{"shape_is": (B, Ks), "exp_is": (B, Ke), "pointnet_feature": (B, widths[-1])}``.
    Padded points are excluded exactly: after the last ReLU every feature is ≥ 0, so zeroing the padded ones
    before the max leaves the max over the valid points unchanged (and gives 0 when none is valid).
    """

    def __init__(self, c_in: int, widths: tuple[int, ...], n_shape: int, n_exp: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = c_in
        for wdt in widths:
            layers += [nn.Conv1d(c, wdt, 1, bias=False), nn.BatchNorm1d(wdt), nn.ReLU(inplace=True)]
            c = wdt
        self.mlp = nn.Sequential(*layers)
        self.fc_shape = nn.Linear(c, n_shape)
        self.fc_exp = nn.Linear(c, n_exp)
        for fc in (self.fc_shape, self.fc_exp):
            nn.init.normal_(fc.weight, std=0.01)
            nn.init.zeros_(fc.bias)

    def forward(self, points: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.mlp(points * mask[:, None])
        pooled = (feat * mask[:, None]).amax(dim=2)
        return {"shape_is": self.fc_shape(pooled), "exp_is": self.fc_exp(pooled), "pointnet_feature": pooled}
