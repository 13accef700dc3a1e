"""The output folder of a batch run (``dsfnet predict -o DIR``): refused when it holds a previous run, cleared with
``--overwrite``, continued with ``--resume``, locked against a second run, with ``results.jsonl`` written durably.

What a run writes in DIR (and ``--overwrite`` removes): ``results.jsonl``, ``meshes/``, ``*_overlay.jpg``,
``*_overlay.mp4``, ``*_depth.png`` and ``*_pncc.png``; anything else in DIR is left alone. The lock is
``DIR/.dsfnet.lock``, held with ``flock`` for the
run's lifetime (released by the OS if the process dies, so a killed run never leaves a stale lock) and removed
at the end.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from dsfnet.io.writers import DurableJsonl

__all__ = ["LOCK_NAME", "RESULTS_NAME", "FolderLock", "OutputFolder", "OutputFolderError"]

RESULTS_NAME = "results.jsonl"
LOCK_NAME = ".dsfnet.lock"
_OUTPUT_GLOBS = ("*_overlay.jpg", "*_overlay.mp4", "*_depth.png", "*_pncc.png")


class OutputFolderError(ValueError):
    """The output folder cannot be used as asked (the message says why and what to pass)."""


class FolderLock:
    """An exclusive ``flock`` on ``folder/.dsfnet.lock`` (its holder's pid inside), for one writer per folder.

    Released by the OS when the process dies (no stale locks); :meth:`release` removes the file while still
    holding the lock, so a run starting then either fails on the held lock or creates a fresh file.
    Raises OutputFolderError (from :meth:`acquire`) when another process holds it. No-op where ``fcntl`` is missing.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "--output") -> None:
        self.path = Path(folder) / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            self._fd = fd
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutputFolderError(f"{self.what} {self.path.parent} is in use by another dsfnet run (pid {other}); "
                                    "wait for it or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                self.path.unlink(missing_ok=True)
            finally:
                os.close(self._fd)
                self._fd = None


def problem_creating(out: Path) -> str | None:
    """Why ``out`` cannot become the output folder (nothing is created), or None."""
    if out.exists():
        if not out.is_dir():
            return "exists and is not a folder"
        return None if os.access(out, os.W_OK | os.X_OK) else "the folder is not writable"
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is a file, not a folder"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot be created: {parent} is not writable"


class OutputFolder:
    """Check, lock and prepare ``root`` for a run.

    Args:
        root: the output folder (created by :meth:`open` if needed).
        overwrite: remove a previous run's outputs first.
        resume: keep a previous run's complete records (:attr:`done` lists their inputs) and append to them.
    Raises (from :meth:`check`, before anything is created):
        OutputFolderError: ``root`` cannot be created or written, or holds a previous run and neither flag is set.
    """

    def __init__(self, root: str | os.PathLike, *, overwrite: bool = False, resume: bool = False) -> None:
        if overwrite and resume:
            raise OutputFolderError("--overwrite and --resume exclude each other")
        self.root = Path(root)
        self.overwrite, self.resume = overwrite, resume
        self.results: DurableJsonl | None = None
        self._lock = FolderLock(self.root)

    def previous_outputs(self) -> list[Path]:
        """The files and folders of an earlier run in :attr:`root`."""
        if not self.root.is_dir():
            return []
        found = [p for p in (self.root / RESULTS_NAME, self.root / "meshes") if p.exists()]
        for pattern in _OUTPUT_GLOBS:
            found += sorted(self.root.glob(pattern))
        return found

    def check(self) -> None:
        """Refuse an unusable folder, or one holding an earlier run without ``--overwrite``/``--resume``."""
        problem = problem_creating(self.root)
        if problem:
            raise OutputFolderError(f"--output {self.root}: {problem}")
        if self.previous_outputs() and not (self.overwrite or self.resume):
            raise OutputFolderError(
                f"--output {self.root} holds a previous run ({RESULTS_NAME}, overlays or meshes): pass --resume to "
                "skip the inputs it already has, --overwrite to replace it, or choose another folder")

    def open(self) -> DurableJsonl:
        """Create and lock the folder, clear or keep the previous run, and return the results writer."""
        self.check()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        if self.overwrite:
            for p in self.previous_outputs():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        self.results = DurableJsonl(self.root / RESULTS_NAME, resume=self.resume)
        return self.results

    def close(self) -> None:
        """Flush the results and release the lock (:meth:`FolderLock.release`)."""
        if self.results is not None:
            self.results.close()
        self._lock.release()

    def __enter__(self) -> DurableJsonl:
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
