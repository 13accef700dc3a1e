"""Read any image-like input into the one in-memory format: ``(H, W, 3)`` uint8 **RGB**.

Conventions (``docs/CONVENTIONS.md``): images in memory are ``H×W×3 uint8 RGB``; BGR exists only inside
``io`` and ``detect``. This module is the single place that normalises inputs:

* **files** (``str`` / ``os.PathLike``) and encoded ``bytes`` are decoded with Pillow, the EXIF orientation is
  applied (a phone photo comes out upright), and OpenCV is the fallback for formats Pillow cannot identify;
* **numpy arrays** are taken as RGB (pass ``bgr=True`` for arrays from OpenCV): ``uint8``, ``uint16``
  (scaled by 255/65535) or float in ``[0, 1]`` (a ``bool`` array is a mask, not a photo: refused); shapes
  ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)``, ``(H, W, 4)`` (alpha is dropped);
* **PIL images** in any mode (grey, palette, RGBA, premultiplied ``La``/``RGBa``, CMYK, 16-bit, float; a 32-bit
  ``I`` image is 16-bit when it comes from a PNG or holds values above 255, else 8-bit); a multi-page or animated
  image gives its first frame, with a warning.

:func:`image_suffixes` lists the file suffixes this module decodes, so folder scans find what a named file reads.

Every failure raises :class:`ImageReadError` (a ``ValueError``; the missing-file case is also a
``FileNotFoundError``) whose message names the input and says what was expected.
"""
from __future__ import annotations

import io as _io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np

__all__ = ["MAX_PIXELS", "ImageNotFoundError", "ImageReadError", "ImageSource", "image_suffixes", "read_image"]

#: Inputs with more pixels than this are refused (50 megapixels; a face aligner never needs more).
MAX_PIXELS = 50_000_000

ImageSource = Union[str, os.PathLike, bytes, np.ndarray, "PIL.Image.Image"]  # noqa: F821


class ImageReadError(ValueError):
    """An input could not be turned into an ``(H, W, 3)`` uint8 RGB image; the message says why."""


class ImageNotFoundError(ImageReadError, FileNotFoundError):
    """The image path does not exist (both a :class:`ImageReadError` and a ``FileNotFoundError``)."""


#: photo formats a folder scan looks for; each is used when this machine's Pillow (or OpenCV) can open it
_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
                   ".avif", ".avifs", ".heic", ".heif", ".jp2", ".j2k", ".jpx", ".pbm", ".pgm", ".ppm", ".pnm", ".tga",
                   ".qoi", ".psd", ".ico")
_OPENCV_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".pbm", ".pgm", ".ppm",
                    ".pnm", ".jp2")


def image_suffixes() -> tuple[str, ...]:
    """Lower-case suffixes (with the dot) of the photo files :func:`read_image` decodes on this machine: the usual
    formats, plus ``.gif``, ``.avif``, ``.heic`` (when its Pillow plugin is installed), ... as Pillow can open them.

    >>> {".jpg", ".png", ".gif"} <= set(image_suffixes())
    True
    """
    from PIL import Image

    Image.init()
    pillow = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return tuple(s for s in _PHOTO_SUFFIXES if s in pillow or s in _OPENCV_SUFFIXES)


def read_image(source: ImageSource, *, bgr: bool = False, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Load ``source`` as an ``(H, W, 3)`` uint8 RGB array (C-contiguous).

    Args:
        source: a file path, encoded image ``bytes``, a numpy array (RGB unless ``bgr``) or a PIL image.
        bgr: the array's channels are in OpenCV's B, G, R order (arrays only; an error for other inputs).
        max_pixels: refuse images with more than this many pixels (``H*W``).
    Returns:
        ``(H, W, 3)`` uint8 RGB. A uint8 RGB C-contiguous array input is returned as is (no copy).
    Raises:
        ImageReadError: missing / empty / truncated / non-image file, unsupported dtype or shape, values
            out of range, NaN, or an image larger than ``max_pixels``.

    >>> read_image(np.zeros((2, 3), dtype=np.float32)).shape
    (2, 3, 3)
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, bgr=bgr, max_pixels=max_pixels, what="array")
    if bgr:
        raise ImageReadError(f"bgr=True only applies to numpy arrays, got {type(source).__name__}")
    if isinstance(source, (str, os.PathLike)):
        return _from_file(Path(source), max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(source), "<bytes>", max_pixels)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(source, Image.Image):
        try:
            source.load()  # a lazily opened image decodes here: truncated or closed files fail cleanly
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(f"cannot decode the PIL image (truncated, corrupt or closed): {exc}") from exc
        _warn_if_many_frames(source, "PIL image")
        return _from_pil(source, max_pixels, "PIL image")
    raise ImageReadError(
        "expected an image path, encoded bytes, a numpy array (H, W[, 1|3|4]) or a PIL image, "
        f"got {type(source).__name__}"
    )


def _from_file(path: Path, max_pixels: int) -> np.ndarray:
    if not path.exists():
        raise ImageNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"expected an image file, got a directory: {path}")
    if not path.is_file():  # a FIFO, socket or device: reading it could block forever
        raise ImageReadError(f"expected a regular image file, got a special file (FIFO, socket or device): {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read image file {path}: {exc}") from exc
    if not data:
        raise ImageReadError(f"image file is empty (0 bytes): {path}")
    return _decode_bytes(data, str(path), max_pixels)


def _decode_bytes(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode with Pillow (EXIF orientation applied); fall back to OpenCV if Pillow cannot identify it."""
    if not data:
        raise ImageReadError(f"image data is empty: {name}")
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(_io.BytesIO(data))
            _check_size(img.size[1], img.size[0], max_pixels, name)  # header only: nothing decoded yet
            img.load()
            _warn_if_many_frames(img, name)
            img = ImageOps.exif_transpose(img)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        return _decode_cv2(data, name, max_pixels)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"image is too large to decode safely: {name} ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or isinstance(exc, (OSError, SyntaxError)):
            raise ImageReadError(f"image file is truncated or corrupt: {name} ({msg})") from exc
        raise ImageReadError(f"cannot decode image {name}: {msg}") from exc
    return _from_pil(img, max_pixels, name)


def _decode_cv2(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None:
        raise ImageReadError(
            f"not an image (neither Pillow nor OpenCV can decode it): {name}; expected JPEG, PNG, BMP, TIFF, WebP, ..."
        )
    # OpenCV decodes colour as B, G, R(, A).
    return _from_array(arr, bgr=arr.ndim == 3 and arr.shape[2] >= 3, max_pixels=max_pixels, what=name)


def _warn_if_many_frames(img, name: str) -> None:
    frames = int(getattr(img, "n_frames", 1) or 1)
    if frames > 1:
        warnings.warn(f"{name} has {frames} frames (multi-page or animated); using the first", stacklevel=4)


def _from_pil(img, max_pixels: int, name: str) -> np.ndarray:
    _check_size(img.size[1], img.size[0], max_pixels, name)
    if img.mode in ("La", "RGBa"):  # premultiplied alpha: Pillow converts these only to their straight forms
        img = img.convert({"La": "LA", "RGBa": "RGBA"}[img.mode])
    mode = img.mode
    if mode in ("RGB", "L", "RGBA"):
        arr = np.asarray(img)
    elif mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img)
        if mode == "I":  # 32-bit ints: 16-bit PNGs arrive as mode "I"; so do 8-bit values in 32-bit TIFFs
            if arr.size and (arr.min() < 0 or arr.max() > 65535):
                raise ImageReadError(f"32-bit integer image with values outside 0..65535: {name}")
            sixteen_bit = getattr(img, "format", None) == "PNG" or (arr.size and arr.max() > 255)
            arr = arr.astype(np.uint16 if sixteen_bit else np.uint8)
        elif mode == "F":
            arr = arr.astype(np.float32)
            if arr.size and np.nanmax(arr) > 1.0:  # float TIFFs on a 0..255 scale
                arr = arr / 255.0
        else:
            arr = arr.astype(np.uint16)
    elif mode in ("LA", "PA") or (mode == "P" and "transparency" in img.info):
        arr = np.asarray(img.convert("RGBA"))
    else:  # "1", "P", "CMYK", "YCbCr", "LAB", "HSV", ...
        arr = np.asarray(img.convert("RGB"))
    return _from_array(arr, bgr=False, max_pixels=max_pixels, what=name)


def _check_size(height: int, width: int, max_pixels: int, name: str) -> None:
    if height <= 0 or width <= 0:
        raise ImageReadError(f"image has no pixels ({width}x{height}): {name}")
    if height * width > max_pixels:
        raise ImageReadError(
            f"image is too large: {width}x{height} = {height * width / 1e6:.1f} MP exceeds the limit of "
            f"{max_pixels / 1e6:.0f} MP ({name}); downscale it first"
        )


def _from_array(arr: np.ndarray, *, bgr: bool, max_pixels: int, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageReadError(f"expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape} ({what})")
    _check_size(a.shape[0], a.shape[1], max_pixels, what)
    a = _to_uint8(a, what)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]  # alpha dropped: the colour channels are kept as stored
    if bgr:
        a = a[:, :, ::-1]
    return np.ascontiguousarray(a)


def _to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        raise ImageReadError(f"a boolean array is a mask, not an image ({what}); pass uint8 RGB "
                             "(e.g. mask.astype(np.uint8) * 255 if a black-and-white picture is really meant)")
    if a.dtype == np.uint16:
        return np.round(a.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageReadError(f"float image contains NaN or infinity ({what})")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ImageReadError(
                f"float images must have values in [0, 1], got [{lo:.4g}, {hi:.4g}] ({what}); "
                "divide by 255 or pass uint8"
            )
        return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 255:
            raise ImageReadError(
                f"integer images of dtype {a.dtype} must have values in 0..255, got {lo}..{hi} ({what}); "
                "use uint16 for 16-bit data"
            )
        return a.astype(np.uint8)
    raise ImageReadError(f"unsupported image dtype {a.dtype} ({what}); expected uint8, uint16 or float in [0, 1]")
