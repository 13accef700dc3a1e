"""Training datasets for the trainer: sample caches, on-the-fly ground truth, synthetic faces.

Every dataset yields training-sample dicts (fields: :func:`dsfnet.data.cache.default_fields`) and exposes ``sample(index, rng)`` so
the trainer's :class:`~dsfnet.train.loaders.SeededSamples` can make augmentation depend on ``(seed, epoch, index)``.

``--data`` / ``data.train`` may name:

* a sample cache folder (``meta.json``; :class:`dsfnet.data.cache.CropCache`), e.g. ``OUT/cache_train`` of
  ``dsfnet data build --cache``;
* a JSON-lines index (``*.jsonl``; :func:`dsfnet.data.sample.read_index`): ground truth built on the fly;
* a ``dsfnet data build`` output folder: its cache for the model's crop and UV sizes if present
  (``cache_train_s{S}_u{U}``, or ``cache_train``; :func:`dsfnet.data.cache.cache_folder_name`), else
  ``train.jsonl`` (``val`` likewise);
* a list of any of these (``data.train: [A, B]`` in YAML, ``dsfnet train --data A --data B``): the sources are
  concatenated in order (:class:`ConcatSamples`); the Tm statistics (``run.tm_stats: data``) then come from
  the concatenation. Without ``data.val``, the validation set is the concatenated ``val`` splits of the build
  folders among them.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset


class CacheDataset(Dataset):
    """Precomputed samples (:class:`~dsfnet.data.cache.CropCache`), optionally augmented."""

    def __init__(self, folder: str | Path, augmenter: Any | None = None) -> None:
        from dsfnet.data.cache import CropCache

        self.cache = CropCache(folder)
        self.arrays = self.cache.arrays
        self.augmenter = augmenter

    def __len__(self) -> int:
        return len(self.cache)

    def sample(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        s = self.cache[index]
        return self.augmenter(s, rng) if self.augmenter is not None else s

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.sample(index, np.random.default_rng(index))


class IndexDataset(Dataset):
    """:class:`~dsfnet.data.sample.FaceSample` records with ground truth built on the fly by a ``TargetBuilder``."""

    def __init__(self, samples: list, builder: Any, augmenter: Any | None = None) -> None:
        self.samples, self.builder, self.augmenter = list(samples), builder, augmenter

    def __len__(self) -> int:
        return len(self.samples)

    def sample(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        s = self.builder.build_sample(self.samples[index])
        return self.augmenter(s, rng) if self.augmenter is not None else s

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.sample(index, np.random.default_rng(index))


class ConcatSamples(Dataset):
    """Several sample datasets one after the other (index ``i`` of the whole → a part and an index in it).

    Keeps ``sample(index, rng)`` (seeded augmentation) and, when every part has ``arrays['tm']`` (caches,
    synthetic faces), exposes ``arrays = {"tm": concatenated}`` so the Tm statistics cover all parts; otherwise
    ``arrays`` is None and the trainer samples ``tm`` over the whole concatenation.
    """

    def __init__(self, parts: list) -> None:
        if not parts:
            raise ValueError("ConcatSamples needs at least one dataset")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        tms = [getattr(p, "arrays", None) for p in self.parts]
        self.arrays = ({"tm": np.concatenate([np.asarray(a["tm"], dtype=np.float64).reshape(-1, 12) for a in tms])}
                       if all(isinstance(a, Mapping) and "tm" in a for a in tms) else None)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """``(part, index in that part)`` of a global index (negative indices count from the end)."""
        n = len(self)
        i = int(index) + n if int(index) < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return k, i - int(self.offsets[k])

    def sample(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        k, i = self.locate(index)
        part = self.parts[k]
        return part.sample(i, rng) if hasattr(part, "sample") else part[i]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        k, i = self.locate(index)
        return self.parts[k][i]


def data_sources(value: str | Path | list | tuple | None) -> list[str]:
    """``data.train`` / ``data.val`` as a list of sources (``None`` → ``[]``)."""
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)]
    return [str(v) for v in value]


class SyntheticFaces(Dataset):
    """``n`` synthetic faces: random coefficients and pose, a shaded render over a noisy background.

    Deterministic per ``(seed, index)``; built once and kept in memory (meant for a few to a few hundred samples).
    Poses: yaw U(±60°), pitch U(±20°), roll U(±15°); coefficients N(0, 1) normalised (× the model's stds raw).
    """

    def __init__(self, n: int, builder: Any, seed: int = 0, image_size: int = 256) -> None:
        if n < 1:
            raise ValueError(f"need at least 1 synthetic sample, got {n}")
        self.builder = builder
        self.items = [self._make(builder, np.random.default_rng([seed, i]), image_size) for i in range(n)]
        self.arrays = {"tm": np.stack([it["tm"] for it in self.items])}

    @staticmethod
    def _make(b: Any, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
        from dsfnet.render import render_colors

        fm = b.face_model
        shape = rng.normal(0, 1, fm.n_shape) * fm.shape_std
        exp = rng.normal(0, 1, fm.n_exp) * fm.exp_std
        angles = np.radians([rng.uniform(-20, 20), rng.uniform(-60, 60), rng.uniform(-15, 15)])
        model_v = b.model_vertices(shape, exp)
        width = float(np.ptp(model_v[:, 0]))
        s = size * 0.45 / width
        centre = model_v.mean(0)
        pose = np.array([*angles, 0.0, 0.0, 0.0, s])
        v0 = b.image_vertices(shape, exp, pose, size)
        c_img = v0[:, :2].mean(0)
        pose[3:5] = [size / 2 - c_img[0] + rng.uniform(-10, 10), -(size / 2 - c_img[1]) + rng.uniform(-10, 10)]
        del centre
        verts = b.image_vertices(shape, exp, pose, size)
        # shading from model depth plus a per-sample tint, over smooth noise
        z = (model_v[:, 2] - model_v[:, 2].min()) / max(np.ptp(model_v[:, 2]), 1e-9)
        y = (model_v[:, 1] - model_v[:, 1].min()) / max(np.ptp(model_v[:, 1]), 1e-9)
        tint = rng.uniform(0.6, 1.0, 3)
        colors = np.stack([0.3 + 0.7 * z, 0.2 + 0.5 * z + 0.3 * y, 0.2 + 0.6 * (1 - y)], 1) * tint * 255
        bg = rng.uniform(0, 255, (8, 8, 3)).astype(np.float32)
        import cv2

        bg = cv2.resize(bg, (size, size), interpolation=cv2.INTER_CUBIC)
        img = render_colors(verts.astype(np.float32), np.asarray(fm.triangles), colors.astype(np.float32), size, size,
                            background=-1.0)
        img = np.where(img < 0, bg, img)
        img = np.clip(img, 0, 255).astype(np.uint8)
        return b.build(img, shape, exp, pose)

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:  # noqa: ARG002
        return {k: v.copy() for k, v in self.items[index].items()}

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.sample(index, np.random.default_rng(index))


def target_builder_for(model: Any, face_model: Any | None = None, layout: Any | None = None):
    """A ``TargetBuilder`` matching ``model`` (face model fingerprint, input size, UV size)."""
    from dsfnet.data.targets import TargetBuilder
    from dsfnet.facemodel import get_uv_layout, load_face_model

    fm = face_model if face_model is not None else load_face_model(n_shape=model.n_shape, n_exp=model.n_exp)
    want = model.face_model_fingerprint
    if want is not None and fm.fingerprint != want:
        raise ValueError(f"the model was built for face model {want}, the data's face model is {fm.fingerprint}")
    lay = layout if layout is not None else get_uv_layout(fm, model.config.uv_size)
    return TargetBuilder(fm, lay, model.config.input_size)


def _augmenter(builder: Any, enabled: bool, occlusion: dict | None = None, pool: list | None = None) -> Any | None:
    """The training augmenter, or None. ``occlusion``: ``{"occlude_anchored": p, "occluder_templates": folder}``;
    ``pool``: photos (``(h, w, 3)`` uint8 RGB) to cut occluder fills from."""
    if not enabled:
        return None
    from dsfnet.data.augment import AugmentConfig, Augmenter

    occ = occlusion or {}
    templates = None
    if occ.get("occluder_templates"):
        from dsfnet.data.anchored_occluders import MaskTemplates

        templates = MaskTemplates(occ["occluder_templates"])
    return Augmenter(builder, AugmentConfig(occlude_anchored=float(occ.get("occlude_anchored", 0.0))),
                     pool=pool or None, templates=templates)


def open_dataset(path: str | Path, model: Any, *, augment: bool, builder: Any | None = None,
                 split: str = "train", occlusion: dict | None = None) -> Dataset:
    """A dataset from a cache folder, a ``.jsonl`` index or a ``dsfnet data build`` folder (module docstring).

    ``occlusion`` (augmented caches): ``{"occlude_anchored", "occluder_templates", "occluder_pool"}`` as in
    :class:`~dsfnet.train.config.DataSection`; the pool is that many of this source's own crops, evenly spaced."""
    from dsfnet.data.cache import cache_folder_name

    p = Path(path)
    s, u = model.config.input_size, model.config.uv_size
    if p.is_dir() and not (p / "meta.json").is_file():
        for cand in (p / cache_folder_name(split, s, u), p / f"cache_{split}", p / f"{split}.jsonl"):
            if (cand / "meta.json").is_file() or cand.is_file():  # a finished cache, or an index
                p = cand
                break
    if p.is_dir() and (p / "meta.json").is_file():
        ds = CacheDataset(p)
        attrs = ds.cache.attrs
        fs = ds.cache.fields
        if fs.get("image", ((0,),))[0][0] != s or fs.get("posmap", ((0, 0),))[0][1] != u:
            raise ValueError(f"cache {p} holds crops {fs.get('image')} / UV {fs.get('posmap')}; the model needs S={s}, "
                             f"U={u} (add a cache of that size with 'dsfnet data build ... --cache --crop-size {s} "
                             f"--uv-size {u}')")
        fp = attrs.get("face_model_fingerprint") or attrs.get("face_model")
        want = model.face_model_fingerprint
        if fp and want and fp != want:
            raise ValueError(f"cache {p} was built with face model {fp}, the model uses {want}")
        if augment:
            n_pool = min(int((occlusion or {}).get("occluder_pool") or 0), len(ds))
            pool = [ds.cache[int(i)]["image"] for i in np.linspace(0, len(ds) - 1, n_pool).astype(int)] if n_pool else None
            ds.augmenter = _augmenter(builder or target_builder_for(model), True, occlusion, pool)
        return ds
    if p.is_file() and p.suffix == ".jsonl":
        from dsfnet.data.sample import read_index

        b = builder or target_builder_for(model)
        return IndexDataset(read_index(p), b, _augmenter(b, augment, occlusion))
    raise FileNotFoundError(f"no training data at {path}: expected a sample cache folder (meta.json), a .jsonl index, "
                            f"or a 'dsfnet data build' folder with cache_{split}/ or {split}.jsonl")


def make_datasets(config: Any, model: Any) -> tuple[Dataset, Dataset | None]:
    """``(train, val)`` for ``config.data`` (see :class:`~dsfnet.train.config.DataSection`)."""
    d = config.data
    if d.synthetic > 0:
        b = target_builder_for(model)
        train = SyntheticFaces(d.synthetic, b, seed=config.run.seed)
        return train, train
    sources = data_sources(d.train)
    if not sources:
        raise ValueError("no training data: set --data DIR (data.train) or data.synthetic=N")
    occlusion = {"occlude_anchored": d.occlude_anchored, "occluder_templates": d.occluder_templates,
                 "occluder_pool": d.occluder_pool}
    train = _concat([open_dataset(src, model, augment=d.augment, split="train", occlusion=occlusion)
                     for src in sources])
    vals = []
    if d.val:
        vals = [open_dataset(src, model, augment=False, split="val") for src in data_sources(d.val)]
    else:
        for src in sources:
            if Path(src).is_dir() and not (Path(src) / "meta.json").is_file():  # a build folder: its val split
                try:
                    vals.append(open_dataset(src, model, augment=False, split="val"))
                except FileNotFoundError:
                    pass
    return train, (_concat(vals) if vals else None)


def _concat(parts: list) -> Dataset:
    """One dataset as itself, several as :class:`ConcatSamples`."""
    return parts[0] if len(parts) == 1 else ConcatSamples(parts)


def tm_statistics(dataset: Dataset, limit: int = 512) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean/std ``(12,)`` of ``tm`` over the dataset (a cache's ``arrays['tm']`` when available, else ``limit``
    evenly spaced samples); None when there are fewer than 2 samples or the values are not finite. The std is
    floored at ``max(1e-3 |mean|, 1e-9)`` (z-scores of a constant entry stay finite)."""
    arrays = getattr(dataset, "arrays", None) or getattr(getattr(dataset, "base", None), "arrays", None)
    if isinstance(arrays, Mapping) and "tm" in arrays:
        tm = np.asarray(arrays["tm"], dtype=np.float64).reshape(-1, 12)
    elif hasattr(dataset, "tm_statistics"):
        return dataset.tm_statistics()
    else:
        n = min(len(dataset), limit)  # type: ignore[arg-type]
        if n < 2:
            return None
        idx = np.linspace(0, len(dataset) - 1, n).astype(int)  # type: ignore[arg-type]
        tm = np.stack([np.asarray(dataset[int(i)]["tm"], dtype=np.float64).reshape(12) for i in idx])
    mean, std = tm.mean(0), tm.std(0)
    if not np.isfinite(mean).all() or not np.isfinite(std).all():
        return None
    floor = np.maximum(np.abs(mean) * 1e-3, 1e-9)
    return mean, np.maximum(std, floor)
