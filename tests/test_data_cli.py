"""``dsfnet data show`` / ``dsfnet data build`` dispatch."""
from __future__ import annotations

import pytest

from dsfnet.cli.main import main


def test_show_writes_a_panel(shared_dir, tmp_path):
    try:
        from dsfnet.facemodel.model import load_face_model

        load_face_model()
    except Exception as e:  # noqa: BLE001 - the built-in model needs a one-time download
        pytest.skip(f"built-in face model not available: {e}")
    import cv2

    out = tmp_path / "panel.png"
    img = shared_dir / "data" / "aflw2000_dev" / "image00050.jpg"
    assert main(["data", "show", str(img), "--output", str(out)]) == 0
    panel = cv2.imread(str(out))
    # one row: caption bar + 2x zoomed 128 crop; 8 tiles (crop, posmap, offset, grid, seg, depth, landmarks, occluded)
    assert panel.shape == (18 + 256, 8 * 256, 3)
    seg_tile = panel[18:, 4 * 256:5 * 256]
    assert 0.3 < (seg_tile > 127).all(-1).mean() < 0.7


def test_show_bad_input(tmp_path, capsys):
    assert main(["data", "show", str(tmp_path / "nope.mat"), "--output", str(tmp_path / "x.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "show", "a.mat", "--output", str(tmp_path / "x.jpg")]) == 1


def test_build_passes_everything_through():
    with pytest.raises(SystemExit) as e:
        main(["data", "build", "--help"])
    assert e.value.code == 0
