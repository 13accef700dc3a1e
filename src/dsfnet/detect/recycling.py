"""Call a leaky native function with bounded memory: in-process at first, then in a worker process recycled
every few thousand calls.

Why: ``yuface.detect`` (libfacedetection's C extension) leaks its ~30 KB result buffer on every call; a video
or a folder of 100k photos would grow the process by gigabytes. The first ``in_process_calls`` calls run
in-process (a single photo pays nothing); after that, calls go to a child process (``spawn`` start method, so
no torch or thread state is inherited) that is replaced every ``calls_per_worker`` calls, which returns its
leaked memory to the system. The worker is a fresh ``python`` started with this process's ``sys.path`` (so it
works under any ``__main__``: a console script, ``python -c``, stdin, a notebook); arguments and results are
pickled through its stdin/stdout (about 2 ms for an 800² image).
"""
from __future__ import annotations

import atexit
import importlib
import os
import pickle
import struct
import subprocess
import sys
import threading
from typing import IO, Any

__all__ = ["RecyclingCaller"]


def _resolve(module: str, name: str):
    return getattr(importlib.import_module(module), name)


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the worker's pipe closed")
    (n,) = struct.unpack("<Q", head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("the worker's pipe closed mid-message")
    return pickle.loads(data)


def serve(module: str, name: str) -> None:  # pragma: no cover - runs in the worker process
    """Worker side: answer ``(args, kwargs)`` requests on stdin with ``(status, value)`` on stdout until EOF."""
    fn = _resolve(module, name)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the pipe
    while True:
        try:
            args, kwargs = _recv(inp)
        except EOFError:
            return
        try:
            _send(out, ("ok", fn(*args, **kwargs)))
        except Exception as exc:  # noqa: BLE001 - the parent re-raises it
            _send(out, ("error", exc))


class RecyclingCaller:
    """``caller(*args, **kwargs)`` runs ``module.name(*args, **kwargs)`` with the memory policy above.

    Args:
        module, name: the function to call, importable in a fresh interpreter.
        in_process_calls: calls made in this process before switching to worker processes.
        calls_per_worker: a worker is replaced after this many calls.

    Thread-safe: in-process calls run concurrently; one call at a time goes through the worker's pipe. Arguments, results and exceptions must pickle. Exceptions raised by the function are re-raised
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
        self._proc: subprocess.Popen | None = None
        self._worker_calls = 0
        atexit.register(self.close)

    @property
    def worker_pid(self) -> int | None:
        """Process id of the current worker (None while calls run in-process)."""
        return self._proc.pid if self._proc is not None else None

    def __call__(self, *args, **kwargs):
        with self._lock:
            self.calls += 1
            in_process = self.calls <= self.in_process_calls
            if in_process and self._fn is None:
                self._fn = _resolve(self.module, self.name)
        if in_process:  # outside the lock: threads run the native call side by side (it releases the GIL)
            return self._fn(*args, **kwargs)
        with self._lock:
            for attempt in (0, 1):
                if self._proc is None or self._worker_calls >= self.calls_per_worker:
                    self._restart()
                try:
                    _send(self._proc.stdin, (args, kwargs))
                    status, value = _recv(self._proc.stdout)
                except (EOFError, BrokenPipeError, ConnectionResetError, OSError, pickle.UnpicklingError):
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
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        code = f"from dsfnet.detect.recycling import serve; serve({self.module!r}, {self.name!r})"
        self._proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      env=env)
        self._worker_calls = 0

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()  # EOF on stdin ends the worker's loop
            except OSError:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=2)

    def close(self) -> None:
        """Stop the worker process, if any (also called at interpreter exit)."""
        with self._lock:
            self._stop()
