"""The UV codec: posed vertices in crop pixels ↔ position maps, one object for targets and decoding.

Units (``docs/CONVENTIONS.md``, owned by ``dsfnet.geometry.posmap``): a position map stores crop pixels divided by
``pos_scale = crop_size · 280 / 256`` (280 for a 256 crop, 140 for 128), with **nose-relative** depth:
``z − z_nose``, ``z_nose`` the map's z at landmark 30's UV cell. x, y stay absolute (crop frame, y down). Cells
the UV layout does not cover are 0.

Encoding then decoding returns the vertices up to UV interpolation error and the nose-depth shift.
"""
from __future__ import annotations

import numpy as np

from dsfnet.geometry.posmap import nose_cell, nose_relative, pos_scale


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
        self.pos_scale = pos_scale(self.crop_size)
        self.nose_cell = nose_cell(layout.kpt_cells)  # (row, col)
        self._covered = np.asarray(layout.covered, dtype=bool)

    def encode(self, vertices_crop: np.ndarray) -> np.ndarray:
        """Posed vertices ``(..., N, 3)`` in crop pixels → position map ``(..., 3, S, S)`` float32, pm units.

        z becomes nose-relative; uncovered cells are 0.
        """
        maps = np.asarray(self.layout.vertices_to_map(np.asarray(vertices_crop, dtype=np.float64)), dtype=np.float64)
        maps = nose_relative(maps / self.pos_scale, self.nose_cell)
        maps *= self._covered
        return maps.astype(np.float32)

    def decode(self, posmap):
        """Position map ``(..., 3, S, S)`` (numpy or torch) → vertices ``(..., N, 3)`` crop px, nose-relative z."""
        return self.layout.map_to_vertices(posmap) * self.pos_scale

    def landmarks(self, posmap):
        """Position map ``(..., 3, S, S)`` → the 68 landmarks ``(..., 68, 3)`` crop px, nose-relative z."""
        return self.layout.landmarks_from_map(posmap) * self.pos_scale
