"""Input/output: image reading (the one place BGR is converted), atomic writers, video frames, overlays."""
from __future__ import annotations

from dsfnet.io.image import MAX_PIXELS, ImageNotFoundError, ImageReadError, image_suffixes, read_image
from dsfnet.io.video import VIDEO_SUFFIXES, VideoInfo, VideoReadError, VideoWriterRGB, is_camera, iter_video_frames, open_video
from dsfnet.io.writers import (
    MESH_FORMATS,
    AtomicFile,
    DurableJsonl,
    atomic_write_bytes,
    atomic_write_text,
    read_jsonl,
    read_jsonl_complete,
    write_image,
    write_mesh,
    write_obj,
    write_ply,
)

__all__ = [
    "MAX_PIXELS",
    "MESH_FORMATS",
    "VIDEO_SUFFIXES",
    "AtomicFile",
    "ImageNotFoundError",
    "DurableJsonl",
    "ImageReadError",
    "VideoInfo",
    "VideoReadError",
    "VideoWriterRGB",
    "atomic_write_bytes",
    "atomic_write_text",
    "image_suffixes",
    "is_camera",
    "iter_video_frames",
    "open_video",
    "read_image",
    "read_jsonl",
    "read_jsonl_complete",
    "write_image",
    "write_mesh",
    "write_obj",
    "write_ply",
]
