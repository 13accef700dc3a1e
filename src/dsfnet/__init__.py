"""dsfnet: DSFNet (Li et al., CVPR 2023) occlusion-robust 3D dense face alignment, CPU-first.

Public names::

    from dsfnet import FaceAligner, Face, read_image, create_model, load_face_model

Conventions (frames, units, orders) are described once in ``docs/CONVENTIONS.md``. Heavy modules (torch)
are imported on first use, so ``import dsfnet`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "FaceAligner": "dsfnet.inference",
    "Face": "dsfnet.inference",
    "read_image": "dsfnet.io.image",
    "create_model": "dsfnet.model",
    "load_face_model": "dsfnet.facemodel",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dsfnet' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
