"""``dsfnet predict --engine ray`` gives the local engine's results (same faces, numbers to 1e-5), a corrupt file
among the images is reported, not fatal (#17). Skipped when the optional extra (``ray``) is not installed."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dsfnet.assets import sample_image_path
from dsfnet.cli.main import main
from dsfnet.io import read_image

ray = pytest.importorskip("ray", reason='the Ray engine is an optional extra: pip install "dsfnet[ray]"')


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _close(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(a - b) <= 1e-5, (where, a, b)
    else:
        assert a == b, (where, a, b)


@pytest.mark.slow
def test_ray_engine_matches_the_local_engine_and_reports_bad_files(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    img = read_image(sample_image_path())
    cv2.imwrite(str(src / "a.jpg"), img[:, :, ::-1])
    cv2.imwrite(str(src / "b.png"), np.ascontiguousarray(img[:, ::-1, ::-1]))  # mirrored
    (src / "broken.jpg").write_text("not an image")
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(["predict", str(src), "-o", str(local), "--save-mesh", "ply", "--quiet"]) == 1  # one bad input
    assert main(["predict", str(src), "-o", str(remote), "--save-mesh", "ply", "--quiet",
                 "--engine", "ray", "--workers", "2"]) == 1
    a, b = _records(local / "results.jsonl"), _records(remote / "results.jsonl")
    assert [r["image"] for r in a] == [r["image"] for r in b]  # input order kept
    _close(a, b)
    assert [Path(r["image"]).name for r in b if "error" in r] == ["broken.jpg"]
    assert sum(len(r.get("faces", [])) for r in b) == 2
    assert sorted(p.name for p in (remote / "meshes").iterdir()) == sorted(p.name for p in (local / "meshes").iterdir())


def test_ray_engine_without_the_extra_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("dsfnet.inference.ray_engine.ray_available", lambda: False)
    assert main(["predict", "--sample", "-o", str(tmp_path / "o"), "--engine", "ray"]) == 2
    assert 'pip install "dsfnet[ray]"' in capsys.readouterr().err
