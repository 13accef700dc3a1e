"""dsfnet: DSFNet (Li et al., CVPR 2023) occlusion-robust 3D dense face alignment, CPU-first.

Public names::

    from dsfnet import FaceAligner, Face, read_image, create_model, load_face_model

Conventions (frames, units, orders) are described once in ``docs/CONVENTIONS.md``. Heavy modules (torch)
are imported on first use, so ``import dsfnet`` stays cheap.
"""
from __future__ import annotations

from dsfnet._lazy import lazy_getattr
__version__ = "0.1.0"

_LAZY = {
    "FaceAligner": "dsfnet.inference",
    "Face": "dsfnet.inference",
    "read_image": "dsfnet.io.image",
    "create_model": "dsfnet.model",
    "load_face_model": "dsfnet.facemodel",
}

__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)
