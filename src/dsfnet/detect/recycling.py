"""Call a leaky native function with bounded memory: in-process at first, then in a worker process recycled
every few thousand calls.

Why: ``yuface.detect`` (libfacedetection's C extension) leaks its ~30 KB result buffer on every call; a video
or a folder of 100k photos would grow the process by gigabytes. The first ``in_process_calls`` calls run
in-process (a single photo pays nothing); after that, calls go to a child process (``spawn`` start method, so
no torch or thread state is inherited) that is replaced every ``calls_per_worker`` calls, which returns its
leaked memory to the system. Arguments and results are pickled through a pipe (about 2 ms for an 800² image).
"""
from __future__ import annotations

import atexit
import importlib
import multiprocessing as mp
import threading
from typing import Any

__all__ = ["RecyclingCaller"]


def _resolve(module: str, name: str):
    return getattr(importlib.import_module(module), name)


def _worker_loop(conn, module: str, name: str) -> None:  # pragma: no cover - runs in the child process
    fn = _resolve(module, name)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        args, kwargs = msg
        try:
            conn.send(("ok", fn(*args, **kwargs)))
        except Exception as exc:  # noqa: BLE001 - the parent re-raises it
            conn.send(("error", exc))


class RecyclingCaller:
    """``caller(*args, **kwargs)`` runs ``module.name(*args, **kwargs)`` with the memory policy above.

    Args:
        module, name: the function to call, importable in a fresh interpreter.
        in_process_calls: calls made in this process before switching to worker processes.
        calls_per_worker: a worker is replaced after this many calls.

    Thread-safe (one call at a time goes through the pipe). Exceptions raised by the function are re-raised
    here; a worker that dies is replaced and the call retried once.
    """

    def __init__(self, module: str, name: str, *, in_process_calls: int = 1000, calls_per_worker: int = 2000) -> None:
        if in_process_calls < 0 or calls_per_worker < 1:
            raise ValueError(f"in_process_calls must be >= 0 and calls_per_worker >= 1, got {in_process_calls}, "
                             f"{calls_per_worker}")
        self.module, self.name = module, name
        self.in_process_calls = int(in_process_calls)
        self.calls_per_worker = int(calls_per_worker)
        self.calls = 0
        self._fn = None
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self._worker_calls = 0
        atexit.register(self.close)

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current worker (None while calls run in-process)."""
        return self._proc.pid if self._proc is not None else None

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.calls += 1
            if self.calls <= self.in_process_calls:
                if self._fn is None:
                    self._fn = _resolve(self.module, self.name)
                return self._fn(*args, **kwargs)
            for attempt in (0, 1):
                if self._proc is None or self._worker_calls >= self.calls_per_worker:
                    self._restart()
                try:
                    self._conn.send((args, kwargs))
                    status, value = self._conn.recv()
                except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                    self._stop()
                    if attempt:
                        raise RuntimeError(f"the {self.module}.{self.name} worker process died twice") from None
                    continue
                self._worker_calls += 1
                if status == "error":
                    raise value
                return value

    def _restart(self) -> None:
        self._stop()
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker_loop, args=(child, self.module, self.name), daemon=True,
                           name=f"dsfnet-{self.module}")
        proc.start()
        child.close()
        self._proc, self._conn, self._worker_calls = proc, parent, 0

    def _stop(self) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            try:
                conn.send(None)
            except (OSError, BrokenPipeError):
                pass
            conn.close()
        if proc is not None:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2)

    def close(self) -> None:
        """Stop the worker process, if any (also called at interpreter exit)."""
        with self._lock:
            self._stop()
