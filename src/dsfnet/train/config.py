"""Training configuration: nested dataclasses loaded from YAML, overridden by ``--set key=value``.

Resolution order: the dataclass defaults, then the YAML file (a named package config ``lite``/``paper``/
``overfit`` from ``dsfnet/configs/`` or a path), then each ``--set a.b.c=value`` (value parsed as YAML; list
items addressed by index, e.g. ``loss.stages.2.lr_scale=0.3``). Unknown keys raise ValueError listing the valid
ones. :func:`save_config` writes the resolved config (atomically) next to the checkpoints so a run can be rebuilt
from its folder alone (``TrainConfig.load(run_dir / "config.yaml")``).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import yaml

from dsfnet.io.writers import AtomicFile
from dsfnet.model.config import coerce_value
from dsfnet.train.losses import LossConfig, LossWeights, Stage

#: named configs shipped in ``dsfnet/configs``
NAMED_CONFIGS = ("lite", "paper", "overfit")


@dataclass
class ModelSection:
    """Network: a registered variant (``dsfnet.model.list_models()``) and the fields of its config to change.

    ``overrides`` is checked against the variant's typed config when the section is built (an unknown variant or
    field and values of the wrong type raise ValueError, see :func:`dsfnet.model.config.with_overrides`; sizes
    are validated when the network is built) and kept as the coerced plain values; :attr:`config` is the
    resolved frozen config. YAML: ``model: {variant: lite, overrides: {uv_size: 48}}``; ``--set
    model.overrides.uv_size=48``.
    """

    variant: str = "lite"
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from dsfnet.model.registry import get_config

        typed = get_config(self.variant, validate=False, **self.overrides)  # unknown variant, field or type
        self.overrides = {k: _plain(getattr(typed, k)) for k in self.overrides}

    @property
    def config(self) -> Any:
        """The variant's frozen config with the overrides applied and validated (a
        :class:`~dsfnet.model.config.ModelConfig` for the built-in variants)."""
        from dsfnet.model.registry import get_config

        return get_config(self.variant, **self.overrides)


@dataclass
class DataSection:
    """Data: ``train``/``val`` sources, batch sizes, workers, augmentation.

    ``train`` and ``val`` are each one source (a sample cache folder, a ``.jsonl`` index or a ``dsfnet data build``
    folder; see :mod:`dsfnet.train.data`) or a list of sources, concatenated in order.
    ``synthetic > 0`` trains (and validates) on that many synthetic faces instead of ``train``: renders of the
    built-in face model (:class:`~dsfnet.train.data.SyntheticFaces`), for the shipped ``overfit`` config's check
    that a network can memorise a few faces (a product feature, not a test double);
    ``val_max`` caps the validation samples (0 = all).
    """

    train: str | list[str] | None = None
    val: str | list[str] | None = None
    batch_size: int = 16
    val_batch_size: int = 32
    num_workers: int = 2
    augment: bool = True
    #: of the occluded training samples, the fraction with a landmark-anchored occluder (face mask, hand, glasses, ...)
    occlude_anchored: float = 0.0
    #: MaskTheFace-style folder of face-mask templates for those occluders (None: procedural masks only)
    occluder_templates: str | None = None
    #: training crops (per source, evenly spaced) whose patches fill the generic occluders: objects cut from other
    #: photos (0: procedural fills only)
    occluder_pool: int = 0
    synthetic: int = 0
    val_max: int = 512


@dataclass
class OptimSection:
    """Adam with linear warm-up ``lr_base → lr_peak`` over ``warmup_epochs`` then ×``decay`` per epoch
    (the shape of SADRNet's schedule; the steps: :mod:`dsfnet.train.schedule`)."""

    epochs: float = 10.0
    lr_base: float = 1e-5
    lr_peak: float = 1e-4
    warmup_epochs: float = 1.0
    decay: float = 0.85
    grad_clip: float = 5.0
    weight_decay: float = 0.0
    betas: list = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class RunSection:
    """Run control. ``max_steps``/``max_minutes``: stop early (after saving; 0/None = no limit).

    ``checkpoint_minutes``: periodic ``last.pt``; ``log_every``: steps between CSV rows; ``val_every``: epochs
    between validations; ``threads``: torch threads of the main process (None = torch default);
    ``tm_stats``: ``"data"`` (Tm z-score statistics from the training set) or ``"model"`` (keep the model's);
    ``teacher_init``: path of 3DDFA_V2 MobileNet weights for the lite backbone;
    ``init_weights``: a DSFNet checkpoint or released weights file to start from (fine-tuning: model weights and
    Tm statistics are taken from it; schedule and step start afresh); ``init_optimizer``: also take the
    optimiser's state (Adam's moments) from that checkpoint when it has one, so that the first steps of a
    fine-tune do not move every weight by about the learning rate; ``keep_epochs``: also keep each epoch's
    end-of-epoch checkpoint as ``epoch_NNN.pt`` (for checkpoint averaging; ~3× the model size each);
    ``precise_bn_batches``: at each epoch end, before validation and saving, replace the BatchNorm running statistics
    by their average over this many augmented training batches (:mod:`dsfnet.train.batchnorm`; 0 = off).
    """

    seed: int = 0
    checkpoint_minutes: float = 10.0
    log_every: int = 10
    val_every: float = 1.0
    max_steps: int | None = None
    max_minutes: float | None = None
    threads: int | None = None
    tm_stats: str = "data"
    teacher_init: str | None = None
    init_weights: str | None = None
    init_optimizer: bool = False
    keep_epochs: bool = False
    precise_bn_batches: int = 0
    device: str = "cpu"
    progress: bool = True


@dataclass
class TrainConfig:
    """The whole training configuration (see the module docstring)."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict:
        """Plain nested dict (YAML / checkpoint ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Build from a (possibly partial) nested dict; missing keys keep their defaults."""
        cfg = _build(cls, data, "")
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, source: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> "TrainConfig":
        """Defaults ← YAML (``source``: a named config or a file; None = defaults only) ← ``overrides``."""
        data = _read_yaml(source) if source is not None else {}
        base = dataclasses.asdict(cls())
        merged = _deep_merge(base, data)
        for item in overrides:
            _apply_override(merged, item)
        return cls.from_dict(merged)

    def validate(self) -> None:
        """ValueError on inconsistent values."""
        d, o, r = self.data, self.optim, self.run
        if d.batch_size < 1 or d.val_batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got {d.batch_size}/{d.val_batch_size}")
        for name in ("train", "val"):
            v = getattr(d, name)
            if v is not None and not isinstance(v, str) and not (
                    isinstance(v, list) and v and all(isinstance(x, str) and x for x in v)):
                raise ValueError(f"data.{name} must be a path or a non-empty list of paths, got {v!r}")
        if d.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {d.num_workers}")
        if o.epochs <= 0:
            raise ValueError(f"optim.epochs must be > 0, got {o.epochs}")
        if not (0 < o.lr_base and 0 < o.lr_peak):
            raise ValueError(f"learning rates must be > 0, got lr_base={o.lr_base}, lr_peak={o.lr_peak}")
        if o.warmup_epochs < 0 or not 0 < o.decay <= 1.0:
            raise ValueError(f"need warmup_epochs >= 0 and 0 < decay <= 1, got {o.warmup_epochs}, {o.decay}")
        if r.tm_stats not in ("data", "model"):
            raise ValueError(f"run.tm_stats must be 'data' or 'model', got {r.tm_stats!r}")
        if r.log_every < 1:
            raise ValueError(f"run.log_every must be >= 1, got {r.log_every}")
        self.loss.validate()


def config_path(name: str) -> Path:
    """Path of a named package config (``lite``, ``paper``, ``overfit``)."""
    ref = resources.files("dsfnet").joinpath("configs", f"{name}.yaml")
    return Path(str(ref))


def _read_yaml(source: str | os.PathLike) -> dict:
    src = str(source)
    path = Path(src)
    if not path.suffix and src in NAMED_CONFIGS:
        path = config_path(src)
    elif not path.is_file():
        raise FileNotFoundError(f"config {src!r} is neither a named config {list(NAMED_CONFIGS)} nor an existing YAML file")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


def save_config(config: TrainConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(path, "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    return path


# ---------------------------------------------------------------------------------------------- helpers

def _deep_merge(base: dict, update: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in out:
            raise ValueError(f"unknown config key {where + str(key)!r}; valid here: {sorted(out)}")
        if isinstance(out[key], dict) and isinstance(value, dict) and (where, key) != ("model.", "overrides"):
            out[key] = _deep_merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _apply_override(data: dict, item: str) -> None:
    """Apply one ``--set a.b.c=value`` (value parsed as YAML) to the merged dict; ``model.overrides.FIELD`` may add
    a field (checked against the variant's config when the section is built)."""
    if "=" not in item:
        raise ValueError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: i + 1]))
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    elif isinstance(node, dict):
        if last not in node and parts[:-1] != ["model", "overrides"]:
            raise ValueError(f"unknown config key {key!r}; valid here: {sorted(node)}")
        node[last] = value
    else:
        raise ValueError(f"cannot set {key!r}: {'.'.join(parts[:-1])} is a value, not a section")


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if isinstance(node, dict):
        if part not in node:
            raise ValueError(f"unknown config key {path!r}; valid here: {sorted(node)}")
        return node[part]
    raise ValueError(f"cannot descend into {path!r}: it is a value")


def _index(node: list, part: str, path: str) -> int:
    try:
        idx = int(part)
    except ValueError:
        raise ValueError(f"{path!r}: list items are addressed by index, got {part!r}") from None
    if not -len(node) <= idx < len(node):
        raise ValueError(f"{path!r}: index {idx} outside a list of {len(node)}")
    return idx


def _plain(value: Any) -> Any:
    """A config value as YAML writes it (tuples as lists)."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"config section {where or '<root>'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config key(s) {[where + u for u in unknown]}; valid: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        kwargs[f.name] = _coerce(hints[f.name], data[f.name], where + f.name)
    return cls(**kwargs)


_SECTIONS = {ModelSection, DataSection, OptimSection, RunSection, LossConfig, LossWeights, Stage}


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in _SECTIONS:
        return _build(tp, value, where + ".")
    if origin is list and args and args[0] in _SECTIONS:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {type(value).__name__}")
        return [_build(args[0], v, f"{where}.{i}.") for i, v in enumerate(value)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where) if len(inner) == 1 else value
    if tp in (float, int, bool, str) or origin is tuple:
        return coerce_value(tp, value, where)
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {type(value).__name__}")
        if args and args[0] is float:
            return [_coerce(float, v, where) for v in value]
        return list(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {type(value).__name__}")
        return dict(value)
    return value
