"""The UV codec: posed vertices in crop pixels ↔ position maps, one object for targets and decoding.

Units (``docs/CONVENTIONS.md``): a position map stores crop pixels divided by
``pos_scale = crop_size · POSMAP_RATE / 256`` (280 for a 256 crop, 140 for 128), with **nose-relative**
depth: ``z − z_nose``, ``z_nose`` the map's z at landmark 30's UV cell. x, y stay absolute (crop frame,
y down). Cells the UV layout does not cover are 0.

Encoding then decoding returns the vertices up to UV interpolation error and the nose-depth shift.
"""
from __future__ import annotations

import numpy as np
import torch

#: DSFNet's position-map divisor for a 256-pixel crop (spec §1.2); scales with the crop size.
POSMAP_RATE = 280.0
NOSE_TIP = 30  # iBUG 68-point index of the nose tip


class UVCodec:
    """Encode/decode posed position maps for one UV layout and crop size.

    Args:
        layout: a :class:`dsfnet.facemodel.uv.UVLayout` (``size`` S, ``kpt_cells``, ``covered``,
            ``vertices_to_map``, ``map_to_vertices``, ``landmarks_from_map``).
        crop_size: network input size in pixels.
    """

    def __init__(self, layout, crop_size: int):
        if crop_size <= 0:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        self.layout = layout
        self.crop_size = int(crop_size)
        self.pos_scale = self.crop_size * POSMAP_RATE / 256.0
        self.nose_cell = tuple(int(v) for v in layout.kpt_cells[NOSE_TIP])  # (row, col)
        self._covered = np.asarray(layout.covered, dtype=bool)

    def encode(self, vertices_crop: np.ndarray) -> np.ndarray:
        """Posed vertices ``(..., N, 3)`` in crop pixels → position map ``(..., 3, S, S)`` float32, pm units.

        z becomes nose-relative; uncovered cells are 0.
        """
        maps = np.asarray(self.layout.vertices_to_map(np.asarray(vertices_crop, dtype=np.float64)), dtype=np.float64)
        maps = maps / self.pos_scale
        r, c = self.nose_cell
        maps[..., 2, :, :] -= maps[..., 2, r, c][..., None, None]
        maps *= self._covered
        return maps.astype(np.float32)

    def decode(self, posmap):
        """Position map ``(..., 3, S, S)`` (numpy or torch) → vertices ``(..., N, 3)`` crop px, nose-relative z."""
        return self.layout.map_to_vertices(posmap) * self.pos_scale

    def landmarks(self, posmap):
        """Position map ``(..., 3, S, S)`` → the 68 landmarks ``(..., 68, 3)`` crop px, nose-relative z."""
        return self.layout.landmarks_from_map(posmap) * self.pos_scale

    def nose_relative(self, posmap: torch.Tensor) -> torch.Tensor:
        """Torch: subtract the nose cell's z from a ``(B, 3, S, S)`` map (differentiable)."""
        r, c = self.nose_cell
        z = posmap[:, 2:3] - posmap[:, 2:3, r : r + 1, c : c + 1]
        return torch.cat([posmap[:, :2], z], dim=1)
