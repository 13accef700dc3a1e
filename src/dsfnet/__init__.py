"""dsfnet: DSFNet (Li et al., CVPR 2023) occlusion-robust 3D dense face alignment, CPU-first.

Conventions (frames, units, orders) are described once in ``docs/CONVENTIONS.md``.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
