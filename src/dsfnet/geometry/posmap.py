"""Units of the UV maps and their depth reference (``docs/CONVENTIONS.md``, frames *position map* and *shape map*).

* **Position maps** (the posed maps ``P``, ``K``, the lifted ``d_uv``, network outputs): crop pixels divided by
  ``pos_scale = S · 280/256`` (:func:`pos_scale`: 140 for a 128 crop, 280 for 256), crop frame (y down).
* **Nose-relative depth**: wherever a network sees or predicts depth, z is taken relative to the nose tip,
  landmark :data:`NOSE_LANDMARK` (iBUG 68-point order), i.e. minus the z of that landmark's UV cell
  (:func:`nose_relative`); outputs in image pixels are relative to the landmark itself.
* **Shape maps** (offset / shape maps ``O``, ``mean_map``): model units × :data:`SHAPE_MAP_SCALE` (magnitudes ≈ 1),
  model frame (y up).

>>> pos_scale(128), pos_scale(256)
(140.0, 280.0)
>>> m = np.zeros((3, 4, 4)); m[2] = 5.0; m[2, 1, 2] = 7.0
>>> float(nose_relative(m, (1, 2))[2, 0, 0])
-2.0
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: crop px per position-map unit, per crop px of side (DSFNet's divisor 280 for a 256-pixel crop)
POSMAP_RATE = 280.0 / 256.0
#: model units → shape-map units (DSFNet's OFFSET_FIX_RATE)
SHAPE_MAP_SCALE = 1.5e-5
#: index of the nose tip among the 68 landmarks: the reference of nose-relative depth
NOSE_LANDMARK = 30


def pos_scale(input_size: int | float) -> float:
    """Crop px per position-map unit for an ``input_size``-pixel crop: ``input_size · 280 / 256``."""
    return input_size * POSMAP_RATE


def nose_cell(kpt_cells: Any) -> tuple[int, int]:
    """``(row, col)`` UV cell of the nose tip, from a layout's ``kpt_cells (68, 2)`` (row, col)."""
    return tuple(int(v) for v in kpt_cells[NOSE_LANDMARK])


def nose_relative(maps: Any, cell: tuple[int, int]) -> Any:
    """Maps ``(..., 3, U, U)`` with z made relative to the z at ``cell`` (row, col); x, y unchanged.

    NumPy arrays give a new array; torch tensors a new tensor (differentiable).
    """
    r, c = cell
    if type(maps).__module__.startswith("torch"):
        import torch

        z = maps[..., 2:3, :, :] - maps[..., 2:3, r:r + 1, c:c + 1]
        return torch.cat([maps[..., :2, :, :], z], dim=-3)
    out = np.array(maps, copy=True)
    out[..., 2, :, :] -= out[..., 2, r, c][..., None, None]
    return out
