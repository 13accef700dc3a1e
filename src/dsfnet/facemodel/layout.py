"""``UVLayout``: everything defined on the ``S×S`` UV grid of one face model, and resampling between vertices and maps.

Cells and maps follow ``docs/CONVENTIONS.md`` (section UV): a vertex sits at the continuous cell coordinates
``col = u·(S−1)``, ``row = (S−1)·(1 − v)``; a *UV cell* is ``(row, col)``, flat index ``row·S + col``; maps are
channel-first ``(..., C, S, S)``. How a layout is built from a face model (unwrap, masks, mirror) is
:func:`dsfnet.facemodel.uv.build_uv_layout`.

* **Vertices to a map** (``to_uv``): each covered cell is the barycentric blend of the 3 vertices of the triangle
  covering its centre.
* **Sampling a map at vertices** (``to_vertex``): bilinear at the vertex's ``(row, col)``, using only covered
  corner cells (their weights renormalised); a vertex with no covered corner takes its nearest covered cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from dsfnet.geometry.posmap import SHAPE_MAP_SCALE

if TYPE_CHECKING:  # pragma: no cover
    from dsfnet.facemodel.model import FaceModel


@dataclass(frozen=True, eq=False)
class UVLayout:
    """Everything defined on the ``S×S`` UV grid of one face model (rules in the module docstring).

    Attributes (N vertices, S = size, cells flattened as ``row·S + col``):
        size: S.
        fingerprint: :attr:`FaceModel.fingerprint` of the model this layout belongs to.
        keypoints: ``(68,)`` int64 landmark vertex ids of that model.
        vertex_uv: ``(N, 2)`` float64 continuous cell coordinates ``(col, row)`` of each vertex.
        to_uv: CSR ``(S*S, N)``: a map cell = barycentric blend of its covering triangle's 3 vertices
            (3 non-zeros per covered cell, none elsewhere).
        to_vertex: CSR ``(N, S*S)``: bilinear sampling of a map at each vertex (rows sum to 1).
        cell_vertices, cell_weights: ``(S*S, 3)`` int64 / float32, the same as ``to_uv`` in gather form
            (vertex 0, weight 0 where uncovered).
        vertex_cells, vertex_cell_weights: ``(N, 4)`` int64 / float32, ``to_vertex`` in gather form.
        covered: ``(S, S)`` bool, cells inside a triangle of the UV mesh.
        face_mask: ``(S, S)`` bool, forehead to chin, no ears or neck (a subset of ``covered``).
        weight_mask: ``(S, S)`` float32 loss weights 16 / 12 / 3 / 0.
        kpt_cells: ``(68, 2)`` int64 ``(row, col)`` of each landmark vertex (rounded).
        grid_triangles: ``(T', 3)`` int64 flat cell ids: per 2×2 block ``{(r,c), (r+1,c), (r,c+1)}`` and
            ``{(r,c+1), (r+1,c), (r+1,c+1)}``, kept when all 3 corners are covered; counter-clockwise seen
            from +z when the map holds model-frame points.
        grid_triangle_is_face: ``(T',)`` bool, all three corners in ``face_mask``.
        flip_perm: ``(S*S,)`` int64, cell -> cell of the left/right mirrored point. Maps of a mirrored face:
            ``mirrored[..., c] = original[..., flip_perm[c]]`` per flat cell (the caller negates x values).
    """

    size: int
    fingerprint: str
    keypoints: np.ndarray
    vertex_uv: np.ndarray
    to_uv: sp.csr_matrix
    to_vertex: sp.csr_matrix
    cell_vertices: np.ndarray
    cell_weights: np.ndarray
    vertex_cells: np.ndarray
    vertex_cell_weights: np.ndarray
    covered: np.ndarray
    face_mask: np.ndarray
    weight_mask: np.ndarray
    kpt_cells: np.ndarray
    grid_triangles: np.ndarray
    grid_triangle_is_face: np.ndarray
    flip_perm: np.ndarray
    _torch_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_vertices(self) -> int:
        """N."""
        return int(self.vertex_uv.shape[0])

    # ------------------------------------------------------------------ vertices <-> maps

    def vertices_to_map(self, verts):
        """Render per-vertex values into the UV grid (barycentric blend of the covering triangle).

        Args:
            verts: ``(..., N, C)`` numpy array or torch tensor (differentiable), any units.
        Returns:
            ``(..., C, S, S)`` of the same kind; 0 in uncovered cells. Float32 unless the input is float64.
        """
        n, s = self.n_vertices, self.size
        if _is_torch(verts):
            if verts.ndim < 2 or verts.shape[-2] != n:
                raise ValueError(f"vertices_to_map: expected (..., {n}, C), got {tuple(verts.shape)}")
            idx, w = self._torch("cell", verts)
            out = (verts[..., idx, :] * w[..., None]).sum(dim=-2)  # (..., S*S, C)
            return out.transpose(-1, -2).reshape(*verts.shape[:-2], verts.shape[-1], s, s)
        v = np.asarray(verts)
        if v.ndim < 2 or v.shape[-2] != n:
            raise ValueError(f"vertices_to_map: expected (..., {n}, C), got {v.shape}")
        dtype = np.float64 if v.dtype == np.float64 else np.float32
        lead, c = v.shape[:-2], v.shape[-1]
        x = np.moveaxis(v.reshape(-1, n, c), 1, 0).reshape(n, -1)  # (N, B*C)
        y = np.asarray(self.to_uv @ x.astype(np.float64))  # (S*S, B*C)
        y = y.reshape(s * s, -1, c).transpose(1, 2, 0)  # (B, C, S*S)
        return y.reshape(*lead, c, s, s).astype(dtype)

    def map_to_vertices(self, maps):
        """Sample maps at every vertex (bilinear over covered cells).

        Args:
            maps: ``(..., C, S, S)`` numpy array or torch tensor.
        Returns:
            ``(..., N, C)`` of the same kind.
        """
        return self._sample(maps, None, "map_to_vertices")

    def landmarks_from_map(self, maps):
        """The 68 landmarks read from maps, bilinear at the landmark vertices' exact cell coordinates.

        Args:
            maps: ``(..., C, S, S)`` numpy array or torch tensor.
        Returns:
            ``(..., 68, C)`` in the map's units, iBUG 300-W order.
        """
        return self._sample(maps, self.keypoints, "landmarks_from_map")

    def _sample(self, maps, rows: np.ndarray | None, what: str):
        s = self.size
        if maps.ndim < 3 or tuple(maps.shape[-2:]) != (s, s):
            raise ValueError(f"{what}: expected (..., C, {s}, {s}), got {tuple(maps.shape)}")
        lead, c = tuple(maps.shape[:-3]), maps.shape[-3]
        if _is_torch(maps):
            idx, w = self._torch("vertex" if rows is None else "keypoint", maps)
            flat = maps.reshape(*lead, c, s * s)
            out = (flat[..., idx] * w).sum(dim=-1)  # (..., C, K)
            return out.transpose(-1, -2)
        m = np.asarray(maps)
        dtype = np.float64 if m.dtype == np.float64 else np.float32
        mat = self.to_vertex if rows is None else self.to_vertex[rows]
        x = m.reshape(-1, c, s * s).transpose(2, 0, 1).reshape(s * s, -1)  # (S*S, B*C)
        y = np.asarray(mat @ x.astype(np.float64))  # (K, B*C)
        y = y.reshape(y.shape[0], -1, c).transpose(1, 0, 2)  # (B, K, C)
        return y.reshape(*lead, y.shape[1], c).astype(dtype)

    def _torch(self, which: str, like):
        """Gather indices and weights ("cell", "vertex" or "keypoint") as tensors on ``like``'s device and
        dtype (memoised per device and dtype)."""
        import torch

        key = (which, str(like.device), like.dtype)
        if key not in self._torch_cache:
            if which == "cell":
                idx, w = self.cell_vertices, self.cell_weights
            elif which == "vertex":
                idx, w = self.vertex_cells, self.vertex_cell_weights
            else:  # "keypoint"
                idx, w = self.vertex_cells[self.keypoints], self.vertex_cell_weights[self.keypoints]
            # copies: the layout's arrays are read-only and torch wants writable memory
            self._torch_cache[key] = (torch.tensor(np.array(idx), device=like.device),
                                      torch.tensor(np.array(w), device=like.device, dtype=like.dtype))
        return self._torch_cache[key]

    # ------------------------------------------------------------------ basis

    def basis_maps(self, face_model: FaceModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The face model resampled into UV, in shape-map units (model units × SHAPE_MAP_SCALE).

        The component maps are multiplied by the per-component std, so normalised coefficients combine
        directly: ``offset_map = Σ α̃_k·shape_maps[k] + Σ β̃_k·exp_maps[k]``, shape ``(3, S, S)``.

        Returns:
            ``mean_map (3, S, S)``, ``shape_maps (Ks, 3, S, S)``, ``exp_maps (Ke, 3, S, S)``, float32, 0 in
            uncovered cells.
        """
        if face_model.fingerprint != self.fingerprint:
            raise ValueError(f"basis_maps: this layout belongs to model {self.fingerprint}, "
                             f"got {face_model.name} ({face_model.fingerprint})")
        s = self.size
        mean_map = self.vertices_to_map(face_model.mean.astype(np.float64)) * SHAPE_MAP_SCALE

        def comp(basis: np.ndarray, std: np.ndarray) -> np.ndarray:
            b = np.moveaxis(basis.astype(np.float64), 2, 0) * (std.astype(np.float64) * SHAPE_MAP_SCALE)[:, None, None]
            return self.vertices_to_map(b).reshape(basis.shape[2], 3, s, s).astype(np.float32)

        return (mean_map.astype(np.float32), comp(face_model.shape_basis, face_model.shape_std),
                comp(face_model.exp_basis, face_model.exp_std))

    def __repr__(self) -> str:
        return (f"UVLayout(size={self.size}, fingerprint={self.fingerprint!r}, covered={int(self.covered.sum())}, "
                f"face={int(self.face_mask.sum())}, grid_triangles={len(self.grid_triangles)})")


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


#: the arrays a layout is made of (what the disk cache stores); the sparse matrices are assembled from them
LAYOUT_ARRAYS = ("keypoints", "vertex_uv", "cell_vertices", "cell_weights", "vertex_cells", "vertex_cell_weights",
          "covered", "face_mask", "weight_mask", "kpt_cells", "grid_triangles", "grid_triangle_is_face", "flip_perm")


def assemble_layout(size: int, fingerprint: str, arrays: dict[str, np.ndarray]) -> UVLayout:
    """The :class:`UVLayout` of the :data:`LAYOUT_ARRAYS` ``arrays`` (made read-only), with its sparse matrices."""
    s2 = size * size
    n = arrays["vertex_uv"].shape[0]
    cv, cw = arrays["cell_vertices"], arrays["cell_weights"]
    covered_flat = arrays["covered"].reshape(-1)
    indptr = np.concatenate([[0], np.cumsum(covered_flat.astype(np.int64) * 3)])
    to_uv = sp.csr_matrix((cw[covered_flat].astype(np.float64).reshape(-1), cv[covered_flat].reshape(-1), indptr),
                          shape=(s2, n))
    vc, vw = arrays["vertex_cells"], arrays["vertex_cell_weights"]
    to_vertex = sp.csr_matrix((vw.astype(np.float64).reshape(-1), vc.reshape(-1), np.arange(0, 4 * n + 1, 4)),
                              shape=(n, s2))
    for a in arrays.values():
        a.setflags(write=False)
    return UVLayout(size=size, fingerprint=fingerprint, to_uv=to_uv, to_vertex=to_vertex,
                    **{k: arrays[k] for k in LAYOUT_ARRAYS})
