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


@pytest.fixture(scope="session")
def onnx_image_stage():
    """``stage(model) -> callable``: the model's image stage exported alone to ONNX and run by ONNX Runtime
    (``(B, 3, S, S)`` torch tensor → dict of torch tensors, ``ImageStage.OUTPUTS``), to compare the backends' heads."""
    import io

    import torch

    from dsfnet.inference.onnx import ort_session
    from dsfnet.model.dsfnet import ImageStage

    def export(model):
        s, names = model.config.input_size, list(ImageStage.OUTPUTS)  # the stage's dict, flattened in this order
        buf = io.BytesIO()
        with torch.no_grad():
            torch.onnx.export(model.image_stage, (torch.zeros(1, 3, s, s),), buf, input_names=["image"],
                              output_names=names, opset_version=17, dynamo=False,
                              dynamic_axes={k: {0: "batch"} for k in ["image", *names]})
        session = ort_session(buf.getvalue(), 1)

        def run(x):
            return {k: torch.from_numpy(v) for k, v in zip(names, session.run(None, {"image": x.detach().cpu().numpy()}))}

        return run

    return export
