"""TorchRunner: strict weight loading and the real network's outputs through the pipeline (toy face model)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dsfnet.decode import UVCodec  # noqa: E402
from dsfnet.facemodel.uv import get_uv_layout  # noqa: E402
from dsfnet.inference import FaceAligner, TorchRunner  # noqa: E402
from dsfnet.model import create_model  # noqa: E402
from testing.face_model import toy_face_model  # noqa: E402


@pytest.fixture(scope="module")
def toy():
    fm = toy_face_model()
    layout = get_uv_layout(fm, 32, disk_cache=False)
    torch.manual_seed(0)
    model = create_model("lite", fm, layout=layout, input_size=64, uv_size=32, fusion_input_stride=4)
    return fm, layout, model


def test_create_model_with_weights_rebuilds_recorded_config_and_loads_strictly(toy, tmp_path):
    from dsfnet.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    fm, layout, model = toy
    path = save_checkpoint(tmp_path / "lite.pt", model)
    runner = TorchRunner(create_model("lite", fm, layout=layout, weights=path))
    assert (runner.input_size, runner.uv_size) == (64, 32)  # from the checkpoint, not the registry's 128
    for a, b in zip(runner.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    folder = create_model("lite", fm, layout=layout, weights=tmp_path)  # a folder holding lite.pt
    for a, b in zip(folder.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="variant='lite', but 'paper'"):
        create_model("paper", fm, weights=path)
    # fine-tuning at another UV size starts from the same weights: none of them depends on U
    other = create_model("lite", fm, layout=get_uv_layout(fm, 64, disk_cache=False), input_size=64, uv_size=64,
                         fusion_input_stride=4)
    with pytest.raises(CheckpointError, match="uv_size=32, but 64"):
        load_checkpoint(path, model=other)
    load_checkpoint(path, model=other, any_uv_size=True)
    for a, b in zip(other.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a dsfnet checkpoint"):
        create_model("lite", fm, weights=tmp_path / "plain.pt")


def test_model_from_checkpoint_rebuilds_the_recorded_model(toy, tmp_path):
    from dsfnet.model.checkpoint import CheckpointError, model_from_checkpoint, save_checkpoint

    fm, layout, model = toy
    path = save_checkpoint(tmp_path / "lite.pt", model, config={"run": 1})
    wrong_size = get_uv_layout(fm, 16, disk_cache=False)  # not the recorded UV size: a 32² layout is built instead
    for given in (layout, wrong_size):
        rebuilt, ckpt = model_from_checkpoint(path, "lite", face_model=fm, layout=given)
        assert (rebuilt.config.input_size, rebuilt.config.uv_size, rebuilt.config.fusion_input_stride) == (64, 32, 4)
        assert ckpt["config"] == {"run": 1} and rebuilt.training
        for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()):
            assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="variant='lite', but 'paper'"):
        model_from_checkpoint(path, "paper", face_model=fm)


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


def test_onnx_export_and_runner_match_torch(toy, tmp_path):
    pytest.importorskip("onnxruntime")
    from dsfnet.cli.export_onnx import export_folder
    from dsfnet.inference import OnnxRunner

    fm, layout, model = toy
    folder, diff = export_folder(model, tmp_path / "lite-onnx", "lite", face_model=fm)
    assert diff < 1e-3
    names = ["meta.json", "network.onnx"]
    assert sorted(p.name for p in folder.iterdir()) == names
    assert [p.name for p in tmp_path.iterdir()] == ["lite-onnx"]  # no temp folder left
    onnx = OnnxRunner.from_weights("lite", folder, face_model=fm)
    crops = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    a, b = onnx(crops), TorchRunner(model)(crops)
    np.testing.assert_allclose(a["face_uvm"], b["face_uvm"], atol=1e-3)
    np.testing.assert_allclose(a["rotation"], b["rotation"], atol=1e-4)
    np.testing.assert_allclose(a["seg"], b["seg"], atol=1e-4)
    with pytest.raises(FileExistsError):
        export_folder(model, folder, "lite", face_model=fm)
    with pytest.raises(ValueError, match="holds the 'lite' model, not 'paper'"):
        OnnxRunner(folder, "paper", face_model=fm)
    # an export of an older dsfnet (the three part graphs, no network.onnx) is refused with the advice to re-export
    (folder / "network.onnx").unlink()
    for part in ("image_stage.onnx", "pointnet.onnx", "fusion.onnx"):
        (folder / part).write_bytes(b"")
    from dsfnet.model.weights import resolve_weights

    assert resolve_weights("lite", "onnx", folder) == folder
    with pytest.raises(ValueError, match="no network.onnx .*re-export it with `dsfnet export-onnx`"):
        OnnxRunner(folder, "lite", face_model=fm)


def test_single_file_onnx_export_carries_its_metadata(toy, tmp_path):
    pytest.importorskip("onnxruntime")
    from dsfnet.cli.export_onnx import export_folder
    from dsfnet.inference import OnnxRunner
    from dsfnet.model.weights import resolve_weights

    fm, layout, model = toy
    path, diff = export_folder(model, tmp_path / "model.onnx", "lite", face_model=fm)
    assert diff < 1e-3 and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temp folder left
    assert resolve_weights("lite", "onnx", path) == path
    onnx = OnnxRunner.from_weights("lite", path, face_model=fm)
    crops = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    a, b = onnx(crops), TorchRunner(model)(crops)
    np.testing.assert_allclose(a["face_uvm"], b["face_uvm"], atol=1e-3)
    np.testing.assert_allclose(a["rotation"], b["rotation"], atol=1e-4)
    with pytest.raises(ValueError, match="holds the 'lite' model, not 'paper'"):
        OnnxRunner(path, "paper", face_model=fm)
    bare = tmp_path / "bare.onnx"  # a graph without our metadata is refused with a clear message
    import onnx

    m = onnx.load(str(path))
    del m.metadata_props[:]
    bare.write_bytes(m.SerializeToString())
    with pytest.raises(ValueError, match="no dsfnet metadata"):
        OnnxRunner(bare, "lite", face_model=fm)


def test_damaged_checkpoints_are_refused_before_anything_is_built(toy, tmp_path):
    from dsfnet.model.checkpoint import CheckpointError, model_from_checkpoint, read_checkpoint, save_checkpoint

    fm, layout, model = toy
    good = torch.load(save_checkpoint(tmp_path / "lite.pt", model), weights_only=True)

    def variant(name, change):
        ck = {**good, "meta": dict(good["meta"]), "model": dict(good["model"])}
        change(ck)
        torch.save(ck, tmp_path / name)
        return tmp_path / name

    key = next(k for k, v in good["model"].items() if v.is_floating_point())
    nan = variant("nan.pt", lambda ck: ck["model"].__setitem__(key, torch.full_like(ck["model"][key], float("nan"))))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        read_checkpoint(nan)
    with pytest.raises(CheckpointError, match="'meta' must be a mapping"):
        read_checkpoint(variant("meta.pt", lambda ck: ck.__setitem__("meta", [1, 2])))
    huge = variant("huge.pt", lambda ck: ck["meta"].__setitem__(
        "model_config", {**ck["meta"]["model_config"], "uv_size": 200_000}))
    with pytest.raises(CheckpointError, match="uv_size=200000 is not an integer"):
        model_from_checkpoint(huge, "lite", face_model=fm)  # refused before a 200,000² layout is attempted
    with pytest.raises(CheckpointError, match="input_size='64'"):
        read_checkpoint(variant("str.pt", lambda ck: ck["meta"].__setitem__("input_size", "64")))
