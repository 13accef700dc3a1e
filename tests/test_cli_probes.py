"""A breaker's corpus, run through the real ``dsfnet predict``: bad ``--boxes`` files, checkpoints and ONNX files made
here. Each must end in one clear line (no traceback on stderr), the documented exit code, and no partial output
files (#19)."""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dsfnet.cli.main import main
from dsfnet.model.weights import default_weights_dir


def _boxes_corpus(tmp: Path) -> dict[str, str]:
    deep = "[" * 5000 + "]" * 5000
    files = {
        "nested": deep,
        "score-dict": json.dumps({"sample.jpg": [{"box": [10, 10, 100, 100], "score": {"a": 1}}]}),
        "score-nan": '{"sample.jpg": [{"box": [10, 10, 100, 100], "score": NaN}]}',
        "box-huge": json.dumps({"sample.jpg": [[0, 0, 1e30, 1e30]]}),
        "box-tiny": json.dumps({"sample.jpg": [[10, 10, 10 + 1e-9, 10 + 1e-9]]}),
        "not-json": "{{{",
        "array-top": json.dumps([[1, 2, 3, 4]]),
        "empty": "",
    }
    out = {}
    for name, text in files.items():
        p = tmp / f"{name}.json"
        p.write_text(text)
        out[name] = str(p)
    return out


def _checkpoint_corpus(tmp: Path) -> dict[str, str]:
    shipped = torch.load(default_weights_dir() / "lite.pt", map_location="cpu", weights_only=True)
    out = {}

    def save(name: str, obj) -> None:
        torch.save(obj, tmp / f"{name}.pt")
        out[name] = str(tmp / f"{name}.pt")

    save("meta-list", {**shipped, "meta": [1, 2, 3]})
    nan = {**shipped, "model": {k: (v.clone().fill_(float("nan")) if v.is_floating_point() else v)
                                for k, v in shipped["model"].items()}}
    save("weights-nan", nan)
    meta = dict(shipped["meta"])
    cfg = dict(meta.get("model_config", {}))
    cfg["uv_size"] = 100000
    save("uv-absurd", {**shipped, "meta": {**meta, "model_config": cfg, "uv_size": 100000}})

    class Evil:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('x')",))

    (tmp / "evil.pt").write_bytes(pickle.dumps(Evil()))
    out["evil"] = str(tmp / "evil.pt")
    data = (default_weights_dir() / "lite.pt").read_bytes()
    (tmp / "truncated.pt").write_bytes(data[: len(data) // 3])
    out["truncated"] = str(tmp / "truncated.pt")
    (tmp / "text.pt").write_text("hello")
    out["text"] = str(tmp / "text.pt")
    return out


def _onnx_corpus(tmp: Path) -> dict[str, str]:
    import onnx
    from onnx import TensorProto, helper

    out = {}
    shipped = default_weights_dir() / "lite-onnx"
    for name, meta in (("meta-array", "[1, 2]"), ("meta-broken", "{oops"), ("meta-other-variant", json.dumps(
            {**json.loads((shipped / "meta.json").read_text()), "variant": "paper"}))):
        d = tmp / name
        d.mkdir()
        (d / "network.onnx").symlink_to((shipped / "network.onnx").resolve())
        (d / "meta.json").write_text(meta)
        out[name] = str(d)
    d = tmp / "foreign"
    d.mkdir()
    inp = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 3, 128, 128])
    res = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 128, 128])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["x"])], "g", [inp], [res])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(d / "network.onnx"))
    (d / "meta.json").write_text((shipped / "meta.json").read_text())
    out["foreign"] = str(d)
    d = tmp / "garbage"
    d.mkdir()
    (d / "network.onnx").write_bytes(b"\x00" * 100)
    (d / "meta.json").write_text((shipped / "meta.json").read_text())
    out["garbage"] = str(d)
    return out


def _check_clean(code: int, err: str, out: Path, expected: set[int]) -> None:
    assert code in expected, (code, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith(("dsfnet", "  ")) for line in lines), err  # our lines, saying what is wrong
    leftovers = [p for p in out.rglob(".*")] if out.exists() else []
    assert leftovers == [], leftovers


@pytest.mark.slow
def test_bad_boxes_files(tmp_path, capsys):
    for name, path in _boxes_corpus(tmp_path).items():
        out = tmp_path / f"out-{name}"
        code = main(["predict", "--sample", "-o", str(out), "--boxes", path])
        _check_clean(code, capsys.readouterr().err, out, {1, 2})
        assert not (out / "results.jsonl").exists() or name in ("box-huge", "box-tiny"), name


@pytest.mark.slow
def test_bad_checkpoints(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, path in _checkpoint_corpus(tmp_path).items():
        out = tmp_path / f"out-{name}"
        code = main(["predict", "--sample", "-o", str(out), "--weights", path, "--backend", "torch"])
        _check_clean(code, capsys.readouterr().err, out, {2})
        assert not (out / "results.jsonl").exists(), name
    assert not (tmp_path / "PWNED").exists()  # no code ran


@pytest.mark.slow
def test_bad_onnx_exports(tmp_path, capsys):
    for name, path in _onnx_corpus(tmp_path).items():
        out = tmp_path / f"out-{name}"
        code = main(["predict", "--sample", "-o", str(out), "--weights", path, "--backend", "onnx"])
        _check_clean(code, capsys.readouterr().err, out, {2})
        assert not (out / "results.jsonl").exists(), name
