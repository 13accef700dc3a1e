"""A leaky native call is contained: in-process first, then worker processes that are replaced (#19)."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from dsfnet.detect.recycling import RecyclingCaller


def test_calls_move_to_recycled_workers_with_the_same_results():
    caller = RecyclingCaller("numpy", "cumsum", in_process_calls=2, calls_per_worker=3)
    try:
        pids = []
        for i in range(8):
            x = np.arange(i + 3)
            np.testing.assert_array_equal(caller(x), np.cumsum(x))
            pids.append(caller.worker_pid)
        assert pids[:2] == [None, None]  # in-process
        workers = pids[2:]
        assert None not in workers and os.getpid() not in workers
        assert len(set(workers)) == 2 and workers[:3] == [workers[0]] * 3  # replaced after 3 calls
    finally:
        caller.close()
    assert caller.worker_pid is None


def test_exceptions_come_back_and_the_worker_survives_them():
    caller = RecyclingCaller("math", "sqrt", in_process_calls=0, calls_per_worker=10)
    try:
        with pytest.raises(ValueError, match="math domain error"):
            caller(-1.0)
        pid = caller.worker_pid
        assert caller(9.0) == 3.0 and caller.worker_pid == pid
    finally:
        caller.close()


def test_a_dead_worker_is_replaced():
    caller = RecyclingCaller("math", "sqrt", in_process_calls=0, calls_per_worker=10)
    try:
        assert caller(4.0) == 2.0
        caller._proc.kill()
        caller._proc.wait()
        assert caller(16.0) == 4.0
    finally:
        caller.close()


def test_threads_share_one_worker_safely():
    caller = RecyclingCaller("numpy", "sort", in_process_calls=0, calls_per_worker=1000)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=50) for _ in range(24)]
    out: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        for i in range(k, len(inputs), 4):
            out[i] = caller(inputs[i])

    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        caller.close()
    for i, x in enumerate(inputs):
        np.testing.assert_array_equal(out[i], np.sort(x))


def test_yuface_through_a_worker_finds_the_same_faces():
    pytest.importorskip("yuface")
    import importlib.resources as resources

    from dsfnet.detect.yuface_detector import quiet_detect
    from dsfnet.io import read_image

    bgr = np.ascontiguousarray(read_image(str(resources.files("dsfnet.assets") / "sample.jpg"))[:, :, ::-1])
    caller = RecyclingCaller("dsfnet.detect.yuface_detector", "quiet_detect", in_process_calls=0)
    try:
        for a, b in zip(caller(bgr, 0.5), quiet_detect(bgr, 0.5)):
            np.testing.assert_array_equal(a, b)
    finally:
        caller.close()
