"""Finding and reading the teacher's files: the folder (``--teacher-dir`` or ``$DSFNET_TEACHER_DIR``), the
parameter statistics pickle. The network weights are read by :mod:`dsfnet.teacher.network`."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from dsfnet.teacher.constants import ENV_TEACHER_DIR, N_PARAMS, TEACHER_STATS, TEACHER_WEIGHTS


def resolve_teacher_dir(given: str | os.PathLike | None) -> str | os.PathLike | None:
    """``given`` if set, else ``$DSFNET_TEACHER_DIR`` if set (non-empty), else None."""
    return given or os.environ.get(ENV_TEACHER_DIR) or None


def teacher_files(teacher_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, stats)`` paths in ``teacher_dir``.

    Raises:
        FileNotFoundError: naming the first missing file.
    """
    d = Path(teacher_dir)
    for name in (TEACHER_WEIGHTS, TEACHER_STATS):
        if not (d / name).is_file():
            raise FileNotFoundError(f"teacher file {d / name} not found (--teacher-dir / ${ENV_TEACHER_DIR} must hold "
                                    f"{TEACHER_WEIGHTS} and {TEACHER_STATS})")
    return d / TEACHER_WEIGHTS, d / TEACHER_STATS


def load_param_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (62,), std (62,))`` float64 from ``param_mean_std_62d_120x120.pkl``.

    Unpickled with a restricted unpickler (numpy arrays and plain containers only).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher parameter statistics not found: {path} "
                                f"(expected 3DDFA_V2's {TEACHER_STATS})")
    try:
        data = _SafeUnpickler(path.open("rb")).load()
    except Exception as exc:
        raise ValueError(f"{path}: not a readable pickle of numpy arrays ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or "mean" not in data or "std" not in data:
        raise ValueError(f"{path}: expected a dict with 'mean' and 'std', got "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    mean = np.asarray(data["mean"], dtype=np.float64).reshape(-1)
    std = np.asarray(data["std"], dtype=np.float64).reshape(-1)
    if mean.shape != (N_PARAMS,) or std.shape != (N_PARAMS,):
        raise ValueError(f"{path}: mean/std must be ({N_PARAMS},), got {mean.shape}, {std.shape}")
    return mean, std


class _SafeUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "dict"), ("builtins", "list"),
        ("collections", "OrderedDict"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
