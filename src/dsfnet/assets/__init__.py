"""Package data: the bundled sample photo (see ``README.md`` in this folder for its origin)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["sample_image_path"]


def sample_image_path() -> Path:
    """Path of the bundled sample photo ``sample.jpg`` (512x512 RGB JPEG with one face)."""
    path = Path(__file__).resolve().parent / "sample.jpg"
    if not path.is_file():  # pragma: no cover - only for a broken install
        raise FileNotFoundError(f"the bundled sample photo is missing from the installation: {path}")
    return path
