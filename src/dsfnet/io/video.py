"""Video frames in and annotated videos out (OpenCV), frames as ``(H, W, 3)`` uint8 **RGB**.

A source is a video file (:data:`VIDEO_SUFFIXES`) or a camera index (``int`` or a string of digits, e.g.
``"0"``). :class:`VideoWriterRGB` writes ``mp4v`` to a temporary file and renames it at the end (atomic).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from dsfnet.io.writers import make_temp_file

__all__ = ["VIDEO_SUFFIXES", "VideoInfo", "VideoReadError", "VideoWriterRGB", "is_camera", "iter_video_frames", "open_video"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class VideoReadError(ValueError):
    """A video file or camera could not be opened or decoded."""


@dataclass(frozen=True)
class VideoInfo:
    """What OpenCV reports about an opened source (``frame_count`` is 0 when unknown, e.g. cameras)."""

    width: int
    height: int
    fps: float
    frame_count: int


def is_camera(source) -> bool:
    """True for a camera index: an ``int`` or a string of digits that is not an existing file."""
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return True
    return isinstance(source, str) and source.isdigit() and not Path(source).exists()


def open_video(source):
    """Open a video file or camera with ``cv2.VideoCapture``; returns ``(capture, VideoInfo)``.

    Raises:
        VideoReadError: missing file, or OpenCV cannot open / decode the source.
    """
    import cv2

    if is_camera(source):
        cap = cv2.VideoCapture(int(source))
        name = f"camera {int(source)}"
    else:
        path = Path(source)
        if not path.is_file():
            raise VideoReadError(f"video file not found: {path}")
        if path.stat().st_size == 0:
            raise VideoReadError(f"video file is empty (0 bytes): {path}")
        cap = cv2.VideoCapture(str(path))
        name = str(path)
    if not cap.isOpened():
        cap.release()
        raise VideoReadError(f"cannot open {name} with OpenCV (unsupported codec, corrupt file or no such camera)")
    info = VideoInfo(
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
        frame_count=max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))),
    )
    return cap, info


def iter_video_frames(source, max_frames: int | None = None, *, opened=None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, frame_rgb)`` from a video file or camera, index from 0; the capture is released at the
    end (also when the caller stops early).

    Args:
        source: a video file or a camera index (:func:`is_camera`).
        max_frames: stop after this many frames (None: until the source ends).
        opened: the ``(capture, VideoInfo)`` of :func:`open_video` for ``source``, when the caller needed the info
            first (fps, frame count); None opens ``source`` here.
    Raises:
        VideoReadError: the source cannot be opened, or it yields no frame at all.
    """
    cap, _ = open_video(source) if opened is None else opened
    try:
        i = 0
        while max_frames is None or i < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            yield i, np.ascontiguousarray(frame[:, :, ::-1])  # OpenCV decodes B, G, R
            i += 1
        if i == 0:
            raise VideoReadError(f"no frame could be decoded from {source}")
    finally:
        cap.release()


class VideoWriterRGB:
    """Write RGB frames to an ``.mp4`` (codec ``mp4v``) or ``.avi`` (``MJPG``) file, atomically.

    Frames go to a temporary file in the destination folder; :meth:`close` (or leaving the ``with``
    block without an exception) renames it to ``path``; on an exception the temporary file is deleted.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (".mp4", ".avi"):
            raise ValueError(f"annotated videos are written as .mp4 or .avi, got {self.path.name}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = make_temp_file(self.path.parent, self.path.stem, suffix)
        os.close(fd)
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if suffix == ".mp4" else "MJPG"))
        self.size = (int(size[0]), int(size[1]))  # (width, height)
        self._writer = cv2.VideoWriter(self._tmp, fourcc, float(fps) if fps and fps > 0 else 25.0, self.size)
        if not self._writer.isOpened():
            self._discard()
            raise ValueError(f"OpenCV cannot write video {self.path}")

    def write(self, frame_rgb: np.ndarray) -> None:
        f = np.asarray(frame_rgb)
        if f.shape != (self.size[1], self.size[0], 3) or f.dtype != np.uint8:
            raise ValueError(f"frame must be ({self.size[1]}, {self.size[0]}, 3) uint8, got {f.shape} {f.dtype}")
        self._writer.write(np.ascontiguousarray(f[:, :, ::-1]))

    def close(self) -> Path:
        self._writer.release()
        os.replace(self._tmp, self.path)
        self._tmp = None
        return self.path

    def _discard(self) -> None:
        self._writer.release() if hasattr(self, "_writer") else None
        if self._tmp and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        self._tmp = None

    def __enter__(self) -> "VideoWriterRGB":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._tmp is not None:
            self.close()
        else:
            self._discard()
