"""The pixels of an image box, and how much of a box a mask covers (face-box coverage of occluders).

A box ``[x0, y0, x1, y1]`` is in image pixels with pixel centres at integer coordinates (``docs/CONVENTIONS.md``):
its pixels are those whose centres lie in the closed box, clipped to the image.

>>> box_coverage(np.eye(4, dtype=bool), [0, 0, 1, 1])
0.5
"""
from __future__ import annotations

import math

import numpy as np


def box_pixels(box, image_shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Row and column slices of the pixels whose centres lie in ``box`` ``[x0, y0, x1, y1]`` (clipped to an image of
    ``image_shape (H, W, ...)``); empty slices when the box holds no pixel."""
    x0, y0, x1, y1 = (float(v) for v in list(box)[:4])
    h, w = image_shape[:2]
    c0, c1 = max(0, math.ceil(x0)), min(w, math.floor(x1) + 1)
    r0, r1 = max(0, math.ceil(y0)), min(h, math.floor(y1) + 1)
    return slice(r0, r1), slice(c0, c1)


def box_coverage(mask: np.ndarray, box) -> float:
    """Fraction of the box's pixels (:func:`box_pixels`) where ``mask`` ``(H, W)`` is set, in [0, 1].

    Raises:
        ValueError: the box holds no pixel of the image.
    """
    rows, cols = box_pixels(box, mask.shape)
    region = np.asarray(mask, dtype=bool)[rows, cols]
    if region.size == 0:
        raise ValueError(f"box {list(box)} holds no pixel of the {mask.shape[1]}×{mask.shape[0]} image")
    return float(region.mean())
