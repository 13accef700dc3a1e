"""Reading 68 landmarks from a file (``dsfnet fit --landmarks``)."""
from __future__ import annotations

import numpy as np


def load_landmarks(path) -> np.ndarray:
    """Read 68 landmarks (image pixels, x right, y down) from a file.

    Formats (by suffix): ``.json`` (``[[x, y], ...]`` or ``{"landmarks": [...]}``/``{"pts68": [...]}``),
    ``.pts`` / ``.txt`` (iBUG ``.pts``: ``version``/``n_points`` header and ``{ ... }`` braces, or plain
    ``x y`` rows), ``.npy`` (``(68, 2|3)`` or ``(2|3, 68)``), ``.mat`` (``pt3d_68`` (3, 68), else ``pt2d``
    (2, 68)).

    Returns:
        ``(68, 2)`` float64.
    Raises:
        FileNotFoundError, ValueError (unknown suffix, not 68 points).
    """
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"landmark file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, dict):
            for key in ("landmarks", "pts68", "points"):
                if key in data:
                    data = data[key]
                    break
        arr = np.asarray(data, dtype=np.float64)
    elif suffix in (".pts", ".txt"):
        rows = []
        for line in p.read_text().splitlines():
            parts = line.replace(",", " ").split()
            if not parts or parts[0] in ("{", "}") or ":" in line:
                continue
            try:
                rows.append([float(v) for v in parts[:3]])
            except ValueError:
                continue
        arr = np.asarray(rows, dtype=np.float64) if rows else np.zeros((0, 2))
    elif suffix == ".npy":
        arr = np.asarray(np.load(p, allow_pickle=False), dtype=np.float64)
    elif suffix == ".mat":
        import scipy.io

        mat = scipy.io.loadmat(str(p))
        key = "pt3d_68" if "pt3d_68" in mat else "pt2d" if "pt2d" in mat else None
        if key is None:
            raise ValueError(f"{p}: no 'pt3d_68' or 'pt2d' in the .mat (has {sorted(k for k in mat if not k.startswith('__'))})")
        arr = np.asarray(mat[key], dtype=np.float64)
    else:
        raise ValueError(f"{p}: unsupported landmark file; expected .json, .pts, .txt, .npy or .mat")
    if arr.ndim == 2 and arr.shape[0] in (2, 3) and arr.shape[1] == 68:
        arr = arr.T
    if arr.ndim != 2 or arr.shape[0] != 68 or arr.shape[1] < 2:
        raise ValueError(f"{p}: expected 68 points (68, 2|3), got an array of shape {arr.shape}")
    return arr[:, :2].copy()
