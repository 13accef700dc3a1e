"""TorchRunner: strict weight loading and the real network's outputs through the pipeline (toy face model)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dsfnet.decode import UVCodec  # noqa: E402
from dsfnet.facemodel.synthetic import toy_face_model  # noqa: E402
from dsfnet.facemodel.uv import get_uv_layout  # noqa: E402
from dsfnet.inference import FaceAligner, TorchRunner  # noqa: E402
from dsfnet.model import create_model  # noqa: E402


@pytest.fixture(scope="module")
def toy():
    fm = toy_face_model()
    layout = get_uv_layout(fm, 32, disk_cache=False)
    torch.manual_seed(0)
    model = create_model("lite", fm, layout=layout, input_size=64, uv_size=32)
    return fm, layout, model


def test_from_weights_strict(toy, tmp_path):
    fm, layout, model = toy
    path = tmp_path / "lite.pt"
    torch.save({"state_dict": model.state_dict(), "config": "lite"}, path)
    small = {"input_size": 64, "uv_size": 32}
    runner = TorchRunner.from_weights("lite", path, face_model=fm, layout=layout, model_overrides=small)
    torch.save({"state_dict": model.state_dict(), "config": "paper"}, tmp_path / "paper_as_lite.pt")
    with pytest.raises(ValueError, match="holds weights of the 'paper' model"):
        TorchRunner.from_weights("lite", tmp_path / "paper_as_lite.pt", face_model=fm, layout=layout, model_overrides=small)
    state = dict(model.state_dict())
    state.pop(next(iter(state)))
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="missing keys"):
        TorchRunner.from_weights("lite", tmp_path / "partial.pt", face_model=fm, layout=layout, model_overrides=small)
    for a, b in zip(runner.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_runner_outputs_and_pipeline(toy):
    fm, layout, model = toy
    runner = TorchRunner(model)
    assert (runner.input_size, runner.uv_size) == (64, 32)
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    out = runner(crops)
    assert out["face_uvm"].shape == (2, 3, 32, 32) and out["rotation"].shape == (2, 3, 3)
    assert out["seg"].shape == (2, 1, 64, 64) and 0 <= out["seg"].min() and out["seg"].max() <= 1
    np.testing.assert_allclose(out["rotation"][0] @ out["rotation"][0].T, np.eye(3), atol=1e-5)
    again = runner(crops)
    np.testing.assert_array_equal(again["face_uvm"], out["face_uvm"])  # deterministic
    with pytest.raises(ValueError, match=r"\(B, 64, 64, 3\) uint8"):
        runner(crops[:, :32])
    aligner = FaceAligner(detector=None, runner=runner, codec=UVCodec(layout, 64), triangles=fm.triangles)
    faces = aligner.predict(np.zeros((120, 160, 3), np.uint8), boxes=[[40, 20, 100, 90]])
    assert len(faces) == 1 and np.isfinite(faces[0].vertices).all() and faces[0].visibility.shape == (68,)
