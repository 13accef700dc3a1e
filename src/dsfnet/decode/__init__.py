"""UV maps → mesh, landmarks and pose: the UV codec shared by ground-truth making and inference."""
from __future__ import annotations

from dsfnet.decode.codec import UVCodec

__all__ = ["UVCodec"]
