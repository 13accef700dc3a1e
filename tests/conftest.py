"""Shared pytest fixtures.

`shared_dir` points at the project's ``../shared`` folder (data that is never shipped). Tests that need it
take this fixture and are skipped when it is absent; CI has it. `toy_network` registers the trainer tests' tiny
network (``testing/toy_network.py``) as model variant ``"toy"`` through the product's extension point,
``dsfnet.model.register_model``, for the duration of a test.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_shared() -> Path | None:
    env = os.environ.get("DSFNET_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared")
    for c in candidates:
        if (c / "data").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = _find_shared()
    if path is None:
        pytest.skip("../shared is not present")
    return path


@pytest.fixture(scope="session")
def bfm():
    """The built-in face model (downloaded and cached once per machine)."""
    from dsfnet.facemodel import load_face_model

    return load_face_model()


@pytest.fixture
def toy_network():
    """Model variant ``"toy"`` (:class:`testing.toy_network.ToyNet`) in the model registry during the test."""
    from testing.toy_network import registered_toy

    with registered_toy():
        yield
