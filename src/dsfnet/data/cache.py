"""A memory-mapped cache of precomputed training samples: one ``.npy`` per field, fixed shape per record.

Layout of a cache folder::

    meta.json          {"version": 1, "count": M, "fields": {name: {"shape": [...], "dtype": "..."}}, "attrs": {...}}
    <name>.npy         (M, *shape) array of that field (np.save format, opened with mmap_mode="r")

Defaults (:func:`default_fields`): ``image`` uint8; the dense maps (``posmap``, ``offset``, ``grid``,
``depth``, ``seg``) float16, which halves the size (float16 keeps ~3 significant digits: ≤ 0.07 crop px on
a position map at S = 128); small vectors (``shape``, ``exp``, ``tm``, ``landmarks``, ``pose``) float32,
because ``tm`` mixes entries of 1e-5 and 1e2 that float16 cannot hold together.

Writing (:class:`CacheWriter`) goes to ``<name>.npy.tmp`` files in the same folder; ``close()`` flushes them,
renames each into place with ``os.replace`` and writes ``meta.json`` last (also atomically), so a reader
never sees a half-written cache: no ``meta.json``, no cache. Reading (:class:`CropCache`) is by index and
returns float32 for every float field. Content depends only on what was written (deterministic).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from dsfnet.io.writers import atomic_write_text

CACHE_VERSION = 1
META = "meta.json"
#: crop size S and UV size U whose caches keep the plain folder names ``cache_train`` / ``cache_val``
DEFAULT_SIZES = (128, 128)


def lite_uv_size() -> int:
    """The ``lite`` model's UV size: the default of caches and ground-truth panels (imports torch, so call late)."""
    from dsfnet.model import get_config

    return get_config("lite").uv_size


def cache_folder_name(split: str, crop_size: int, uv_size: int) -> str:
    """A build's cache folder for one split: ``cache_{split}`` at :data:`DEFAULT_SIZES`, else
    ``cache_{split}_s{S}_u{U}``, so that caches of several sizes can sit side by side in one build folder."""
    if (int(crop_size), int(uv_size)) == DEFAULT_SIZES:
        return f"cache_{split}"
    return f"cache_{split}_s{int(crop_size)}_u{int(uv_size)}"


def default_fields(crop_size: int, uv_size: int, n_shape: int, n_exp: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Field name → (per-record shape, dtype) of the training-sample dict (keys, units: :mod:`dsfnet.data.sample`)."""
    s, u = int(crop_size), int(uv_size)
    return {
        "image": ((s, s, 3), "uint8"),
        "posmap": ((3, u, u), "float16"),
        "offset": ((3, u, u), "float16"),
        "grid": ((2, s, s), "float16"),
        "seg": ((s, s), "float16"),
        "depth": ((s, s), "float16"),
        "shape": ((n_shape,), "float32"),
        "exp": ((n_exp,), "float32"),
        "tm": ((3, 4), "float32"),
        "landmarks": ((68, 3), "float32"),
        "pose": ((3,), "float32"),
    }


class CacheWriter:
    """Write ``count`` records into a new cache folder. Use as a context manager or call :meth:`close`.

    Args:
        folder: target folder (created); an existing cache there is replaced only when ``close()`` succeeds.
        fields: name → (per-record shape, dtype string), e.g. :func:`default_fields`.
        count: number of records ``M``.
        attrs: JSON-serialisable metadata stored in ``meta.json`` (crop size, face model id, ...).
    """

    def __init__(self, folder: str | os.PathLike, fields: Mapping[str, tuple[tuple[int, ...], str]], count: int,
                 attrs: dict | None = None) -> None:
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        if not fields:
            raise ValueError("no fields given")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = int(count)
        self.fields = {k: (tuple(int(d) for d in shp), np.dtype(dt).name) for k, (shp, dt) in fields.items()}
        self.attrs = dict(attrs or {})
        self._written = np.zeros(self.count, dtype=bool)
        self._tmp: dict[str, Path] = {}
        self._maps: dict[str, np.memmap] = {}
        for name, (shp, dt) in self.fields.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".npy.tmp", dir=self.folder)
            os.close(fd)
            self._tmp[name] = Path(tmp)
            self._maps[name] = np.lib.format.open_memmap(tmp, mode="w+", dtype=dt, shape=(self.count, *shp))
        self._closed = False

    def __setitem__(self, index: int, record: Mapping[str, np.ndarray]) -> None:
        """Store one record (a dict with every field; extra keys are ignored)."""
        if not 0 <= index < self.count:
            raise IndexError(f"record index {index} outside [0, {self.count})")
        missing = [k for k in self.fields if k not in record]
        if missing:
            raise ValueError(f"record {index} lacks fields {missing}")
        for name, (shp, _) in self.fields.items():
            value = np.asarray(record[name])
            if value.shape != shp:
                raise ValueError(f"record {index} field {name!r}: expected shape {shp}, got {value.shape}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(f"record {index} field {name!r} contains NaN/inf")
            self._maps[name][index] = value
        self._written[index] = True

    def close(self) -> None:
        """Flush, move every field into place, then write ``meta.json``. Fails if a record was never written."""
        if self._closed:
            return
        if not self._written.all():
            missing = np.flatnonzero(~self._written)
            self.abort()
            raise ValueError(f"{missing.size} records were never written (first: {missing[:5].tolist()})")
        for name, m in self._maps.items():
            m.flush()
            del m
        self._maps.clear()
        meta_path = self.folder / META
        if meta_path.exists():  # invalidate the old cache before its arrays are replaced
            meta_path.unlink()
        for name, tmp in self._tmp.items():
            os.replace(tmp, self.folder / f"{name}.npy")
        meta = {"version": CACHE_VERSION, "count": self.count,
                "fields": {k: {"shape": list(s), "dtype": d} for k, (s, d) in self.fields.items()},
                "attrs": self.attrs}
        atomic_write_text(meta_path, json.dumps(meta, indent=1))
        self._closed = True

    def abort(self) -> None:
        """Drop the temporary files (nothing of an existing cache is touched)."""
        self._maps.clear()
        for tmp in self._tmp.values():
            if tmp.exists():
                tmp.unlink()
        self._closed = True

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class CropCache:
    """Read a cache folder written by :class:`CacheWriter` (memory-mapped; cheap to open in workers).

    ``cache[i]`` returns a dict of per-record arrays: uint8 fields as uint8, float fields as float32 copies.
    ``cache.arrays[name]`` is the raw ``(M, *shape)`` memmap.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / META
        if not meta_path.is_file():
            raise FileNotFoundError(f"no sample cache at {self.folder} (missing {META}; unfinished or not a cache)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"{meta_path}: cache version {meta.get('version')}, this code reads {CACHE_VERSION}")
        self.count = int(meta["count"])
        self.attrs = meta.get("attrs", {})
        self.fields = {k: (tuple(v["shape"]), v["dtype"]) for k, v in meta["fields"].items()}
        self.arrays: dict[str, np.ndarray] = {}
        for name, (shp, dt) in self.fields.items():
            arr = np.load(self.folder / f"{name}.npy", mmap_mode="r")
            if arr.shape != (self.count, *shp) or arr.dtype != np.dtype(dt):
                raise ValueError(f"{self.folder}/{name}.npy: expected {(self.count, *shp)} {dt}, "
                                 f"got {arr.shape} {arr.dtype}")
            self.arrays[name] = arr

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not -self.count <= index < self.count:
            raise IndexError(f"record index {index} outside [0, {self.count})")
        out = {}
        for name, arr in self.arrays.items():
            v = arr[index]
            out[name] = np.array(v, dtype=np.float32) if v.dtype.kind == "f" else np.array(v)
        return out
