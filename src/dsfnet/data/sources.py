"""The photo sets a training set is built from, as :class:`Item` s (one face each) with identity-disjoint splits.

Two kinds of source folder (``dsfnet data build``, :mod:`dsfnet.data.build`):

* **ytf68 layout**: ``landmarks.jsonl`` with one ``{"image", "identity", "split", "pts68"}`` per line (68 2D
  landmarks, image paths relative to the folder), :func:`read_items`;
* **a folder of images**: every image below it (recursive, sorted; suffixes
  :data:`dsfnet.data.readers.IMAGE_SUFFIXES`) is one unlabelled item whose identity is a hash of its decoded pixels
  (:func:`pixel_identity`), :func:`read_image_items`.

The validation split is ours: a fixed fraction of the identities chosen by a hash of the name
(:func:`identity_split`).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Item:
    """One annotated face of the source set.

    Attributes:
        key: unique file-name-safe id (the image path without suffix, ``/`` → ``__``).
        image: absolute image path.
        identity: person id (``--pseudo``: a hash of the decoded pixels, :func:`pixel_identity`).
        split: ``"train"`` or ``"val"`` (ours, identity-disjoint).
        landmarks: ``(68, 2)`` image pixels (2D convention); ``None`` for a ``--pseudo`` image (labelled by the
            detect + label stages).
        source: the samples' ``source`` tag (``"ytf68"``; ``--pseudo``: ``--source-name`` or the folder name).
    """

    key: str
    image: str
    identity: str
    split: str
    landmarks: np.ndarray | None = field(default=None, repr=False)
    source: str = "ytf68"


def identity_split(identity: str, val_fraction: float) -> str:
    """``"val"`` for a deterministic ``val_fraction`` of identities (SHA-1 of the name), else ``"train"``."""
    h = int.from_bytes(hashlib.sha1(identity.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64
    return "val" if h < val_fraction else "train"


def read_items(source: str | os.PathLike, splits: tuple[str, ...] = ("training",), val_fraction: float = 0.1,
               limit: int | None = None) -> list[Item]:
    """Read ``landmarks.jsonl`` of a ytf68-style folder (module docstring) into :class:`Item` s.

    Raises:
        FileNotFoundError: no ``landmarks.jsonl``; ValueError: a malformed line (its number is given).
    """
    src = Path(source)
    index = src / "landmarks.jsonl"
    if not index.is_file():
        raise FileNotFoundError(f"{index} not found: expected a ytf68-style folder with landmarks.jsonl")
    items = []
    with open(index, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                pts = np.asarray(obj["pts68"], dtype=np.float64)
                rel, identity, split = str(obj["image"]), str(obj["identity"]), str(obj.get("split", "training"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{index}:{no}: expected {{image, identity, split, pts68}}, got an error: {exc}") from None
            if pts.shape != (68, 2):
                raise ValueError(f"{index}:{no}: pts68 must be (68, 2), got {pts.shape}")
            if split not in splits:
                continue
            key = str(Path(rel).with_suffix("")).replace("/", "__").replace("\\", "__")
            items.append(Item(key, str((src / rel).resolve()), identity, identity_split(identity, val_fraction), pts))
    items.sort(key=lambda it: it.key)
    return items[:limit] if limit else items


def pixel_identity(image: np.ndarray, prefix: str = "") -> str:
    """``"<prefix>/<16 hex>"``: SHA-1 of a decoded image's shape and pixels (pixel-identical images share it)."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha1(f"{a.shape}|{a.dtype}|".encode())
    h.update(a.tobytes())
    return f"{prefix}/{h.hexdigest()[:16]}" if prefix else h.hexdigest()[:16]


def list_images(source: str | os.PathLike, exclude: tuple[str | os.PathLike, ...] = ()) -> list[Path]:
    """Image files below ``source`` (recursive, sorted; suffixes :data:`dsfnet.data.readers.IMAGE_SUFFIXES`),
    skipping anything under the ``exclude`` folders (e.g. ``--out`` inside the source)."""
    from dsfnet.data.readers import IMAGE_SUFFIXES

    src = Path(source)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder of images")
    skip = [Path(e).resolve() for e in exclude]
    out = []
    for p in sorted(src.rglob("*")):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        rp = p.resolve()
        if any(rp == e or e in rp.parents for e in skip):
            continue
        out.append(p)
    return out


def read_image_items(source: str | os.PathLike, val_fraction: float = 0.1, limit: int | None = None,
                     source_name: str | None = None,
                     exclude: tuple[str | os.PathLike, ...] = ()) -> list[Item]:
    """Every image below ``source`` as an unlabelled :class:`Item` (``dsfnet data build --pseudo``).

    Keys are the relative path without suffix (``/`` → ``__``; the suffix is kept, ``.`` → ``_``, where two
    files would clash). Identities hash the decoded pixels (:func:`pixel_identity`); an unreadable image gets
    the identity ``<source>/unreadable/<key>`` and fails when it is processed.
    """
    from dsfnet.io.image import read_image

    src = Path(source)
    name = source_name or src.resolve().name
    paths = list_images(src, exclude)
    rels = [p.relative_to(src) for p in paths]
    stems = [str(r.with_suffix("")).replace("/", "__").replace("\\", "__") for r in rels]
    clash = {k for k, n in Counter(stems).items() if n > 1}
    keyed = []
    for p, r, k in zip(paths, rels, stems):
        if k in clash:
            k = str(r).replace(".", "_").replace("/", "__").replace("\\", "__")
        keyed.append((k, p))
    keyed.sort()
    if limit:
        keyed = keyed[:limit]
    items = []
    for key, p in keyed:
        try:
            identity = pixel_identity(read_image(p), name)
        except Exception:  # noqa: BLE001 - the failure is recorded when the item is processed
            identity = f"{name}/unreadable/{key}"
        items.append(Item(key, str(p.resolve()), identity, identity_split(identity, val_fraction), None, name))
    return items
