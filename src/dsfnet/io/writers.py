"""Atomic file writers: JSON Lines, meshes (OBJ, PLY ASCII / binary little-endian) and images (PNG, JPEG).

Every writer creates a temporary file in the destination folder and renames it over the destination with
``os.replace`` only once it is complete, so an interrupted run never leaves a half-written file behind (the
temporary file is removed on error). Meshes are written in the coordinates they are given; the caller
chooses the frame and says so through ``comment``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

import numpy as np

__all__ = [
    "AtomicFile",
    "DurableJsonl",
    "read_jsonl",
    "read_jsonl_complete",
    "MESH_FORMATS",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_image",
    "write_mesh",
    "write_obj",
    "write_ply",
]

MESH_FORMATS = ("obj", "ply")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_file(folder: Path, name: str, suffix: str = ".tmp") -> tuple[int, str]:
    """``mkstemp`` in ``folder`` with the permissions a normal ``open()`` would give (mkstemp uses 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=folder)
    os.chmod(tmp, 0o666 & ~_umask())
    return fd, tmp


class AtomicFile:
    """Context manager: a temporary file next to ``path`` that replaces ``path`` on a clean exit.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with AtomicFile(p, "w") as f:
    ...     _ = f.write("hi")
    >>> p.read_text()
    'hi'
    """

    def __init__(self, path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> None:
        if mode not in ("w", "wb"):
            raise ValueError(f"AtomicFile mode must be 'w' or 'wb', got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.encoding = encoding if encoding is not None else ("utf-8" if mode == "w" else None)
        self._file: IO | None = None
        self._tmp: str | None = None

    def __enter__(self) -> IO:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = make_temp_file(folder, self.path.name)
        self._file = os.fdopen(fd, self.mode, encoding=self.encoding)
        return self._file

    def commit(self) -> None:
        """Flush, fsync and move the temporary file over the destination."""
        assert self._file is not None and self._tmp is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        self._tmp = None

    def discard(self) -> None:
        """Close and delete the temporary file; the destination is left untouched (also when closing fails,
        e.g. on a full disk: the buffered data cannot be flushed, the temporary file is removed anyway)."""
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            finally:
                self.discard()
        else:
            self.discard()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with AtomicFile(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    with AtomicFile(path, "w") as f:
        f.write(text)
    return Path(path)


def _check_mesh(vertices, triangles, colors) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be (N, 3), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or infinity")
    t = np.asarray(triangles)
    if t.size == 0:
        t = t.reshape(0, 3)
    if t.ndim != 2 or t.shape[1] != 3 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"triangles must be an integer (T, 3) array, got shape {t.shape} dtype {t.dtype}")
    if t.size and (t.min() < 0 or t.max() >= len(v)):
        raise ValueError(f"triangle indices must be in [0, {len(v)}), got [{t.min()}, {t.max()}]")
    c = None
    if colors is not None:
        c = np.asarray(colors)
        if c.shape != v.shape:
            raise ValueError(f"colors must be (N, 3) like the vertices {v.shape}, got {c.shape}")
        c = _colors_to_uint8(c)
    return v, t.astype(np.int64), c


def _colors_to_uint8(c: np.ndarray) -> np.ndarray:
    """Per-vertex colours: uint8 as is; floats are taken in [0, 1]."""
    if c.dtype == np.uint8:
        return c
    c = np.asarray(c, dtype=np.float64)
    if not np.isfinite(c).all() or c.min() < -1e-6 or c.max() > 1 + 1e-6:
        raise ValueError("float vertex colours must be finite and in [0, 1] (or pass uint8 0..255)")
    return np.round(np.clip(c, 0, 1) * 255).astype(np.uint8)


def _comment_lines(comment: str | None, prefix: str) -> str:
    if not comment:
        return ""
    return "".join(f"{prefix}{line}\n" for line in comment.splitlines())


def write_obj(path: str | os.PathLike, vertices, triangles, colors=None, *, comment: str | None = None) -> Path:
    """Wavefront OBJ: ``v x y z [r g b]`` (colours as floats in [0, 1]) and 1-based ``f a b c``.

    The text is formatted in one ``%`` pass per block (no per-line Python loop); the ``f`` block of a topology is
    kept (:func:`_face_block`), since every face of a model shares it.

    Args:
        vertices: ``(N, 3)`` float, any frame (say which in ``comment``).
        triangles: ``(T, 3)`` int, 0-based vertex indices.
        colors: optional ``(N, 3)`` uint8 0..255 or float in [0, 1].
    """
    v, t, c = _check_mesh(vertices, triangles, colors)
    if c is None:
        vblock = ("v %.6f %.6f %.6f\n" * len(v)) % tuple(v.reshape(-1).tolist())
    else:
        vc = np.concatenate([v, c / 255.0], axis=1)
        vblock = ("v %.6f %.6f %.6f %.4f %.4f %.4f\n" * len(v)) % tuple(vc.reshape(-1).tolist())
    return atomic_write_text(path, _comment_lines(comment, "# ") + vblock + _face_block(t))


_FACE_BLOCKS: dict[bytes, str] = {}


def _face_block(t: np.ndarray) -> str:
    """The ``f a b c`` lines (1-based) of ``(T, 3)`` int64 triangles; the last few topologies are memoised."""
    key = hashlib.blake2b(t.tobytes(), digest_size=16).digest() + str(t.shape).encode()
    block = _FACE_BLOCKS.get(key)
    if block is None:
        block = ("f %d %d %d\n" * len(t)) % tuple((t + 1).reshape(-1).tolist())
        if len(_FACE_BLOCKS) >= 4:
            _FACE_BLOCKS.pop(next(iter(_FACE_BLOCKS)))
        _FACE_BLOCKS[key] = block
    return block


def write_ply(
    path: str | os.PathLike, vertices, triangles, colors=None, *, binary: bool = True, comment: str | None = None
) -> Path:
    """Stanford PLY, binary little-endian (default) or ASCII.

    Vertex properties ``float x, y, z`` (+ ``uchar red, green, blue`` when ``colors`` is given); faces as
    ``list uchar int vertex_indices`` (0-based). Arguments as :func:`write_obj`.
    """
    v, t, c = _check_mesh(vertices, triangles, colors)
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0"]
    header += [f"comment {line}" for line in (comment or "").splitlines() if line]
    header += [f"element vertex {len(v)}", "property float x", "property float y", "property float z"]
    if c is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(t)}", "property list uchar int vertex_indices", "end_header"]
    head = ("\n".join(header) + "\n").encode("ascii")
    if binary:
        vfields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("red", "u1"), ("green", "u1"), ("blue", "u1")] if c is not None else [])
        va = np.empty(len(v), dtype=vfields)
        va["x"], va["y"], va["z"] = v[:, 0], v[:, 1], v[:, 2]
        if c is not None:
            va["red"], va["green"], va["blue"] = c[:, 0], c[:, 1], c[:, 2]
        fa = np.empty(len(t), dtype=[("n", "u1"), ("i", "<i4", (3,))])
        fa["n"] = 3
        fa["i"] = t
        return atomic_write_bytes(path, head + va.tobytes() + fa.tobytes())
    if c is None:
        body = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in v)
    else:
        body = "".join(f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b}\n" for (x, y, z), (r, g, b) in zip(v, c))
    body += "".join(f"3 {a} {b} {d}\n" for a, b, d in t)
    return atomic_write_bytes(path, head + body.encode("ascii"))


def write_mesh(path: str | os.PathLike, vertices, triangles, colors=None, *, fmt: str | None = None, comment: str | None = None) -> Path:
    """Write an OBJ or (binary) PLY mesh, chosen by ``fmt`` or the file suffix; see :data:`MESH_FORMATS`."""
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    if fmt == "obj":
        return write_obj(path, vertices, triangles, colors, comment=comment)
    if fmt == "ply":
        return write_ply(path, vertices, triangles, colors, comment=comment)
    raise ValueError(f"unknown mesh format {fmt!r}; valid formats: {', '.join(MESH_FORMATS)}")


def write_image(path: str | os.PathLike, image_rgb: np.ndarray, *, quality: int = 92) -> Path:
    """Write an ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey) image as PNG or JPEG (by suffix), atomically."""
    import cv2

    img = np.asarray(image_rgb)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"write_image expects (H, W, 3) or (H, W) uint8, got {img.shape} {img.dtype}")
    suffix = Path(path).suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"write_image writes .png, .jpg or .jpeg files, got {suffix or 'no suffix'!r} ({path})")
    bgr = img if img.ndim == 2 else np.ascontiguousarray(img[:, :, ::-1])  # OpenCV encodes B, G, R
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if suffix != ".png" else []
    ok, buf = cv2.imencode(suffix, bgr, params)
    if not ok:  # pragma: no cover
        raise ValueError(f"OpenCV could not encode {path}")
    return atomic_write_bytes(path, buf.tobytes())


class DurableJsonl:
    """JSON Lines file that records are appended to as they are produced, each line flushed to the OS at once, so
    a killed process loses at most the record it was writing (``dsfnet predict``'s ``results.jsonl``).

    ``resume=False`` starts an empty file; ``resume=True`` keeps the complete records already in it (a final line
    cut by a kill is dropped, see :func:`read_jsonl_complete`) and appends after them.
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool = False) -> None:
        self.path = Path(path)
        self.count = 0
        self.kept: list[dict] = []
        if resume and self.path.exists():
            self.kept, size = read_jsonl_complete(self.path)
            with open(self.path, "r+b") as f:
                f.truncate(size)
        else:
            self.path.write_bytes(b"")
        self._file = open(self.path, "a", encoding="utf-8", errors="surrogateescape")

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line and flush it (``allow_nan=False``: NaN/inf raise ``ValueError``)."""
        line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
        self._file.write(line)
        self._file.flush()
        self.count += 1

    def rewrite(self, records: list[dict]) -> None:
        """Replace the file's content by ``records`` atomically (e.g. to drop the ones a resumed run redoes)."""
        self._file.close()
        atomic_write_text(self.path, "".join(json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n"
                                             for r in records))
        self.kept = list(records)
        self._file = open(self.path, "a", encoding="utf-8", errors="surrogateescape")

    def close(self) -> None:
        """Flush to disk (fsync) and close."""
        if not self._file.closed:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()

    def __enter__(self) -> "DurableJsonl":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def read_jsonl_complete(path: str | os.PathLike) -> tuple[list[dict], int]:
    """The records of a JSON Lines file up to the first line that is cut or not valid JSON, and the byte size of
    that complete part (what a resumed writer keeps)."""
    records, size = [], 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                text = raw.decode("utf-8", errors="surrogateescape").strip()
                if text:
                    records.append(json.loads(text))
            except ValueError:
                break
            size += len(raw)
    return records, size


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Read a JSON Lines file back (one dict per non-empty line)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
