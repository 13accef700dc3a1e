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


def test_build_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "build", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: dsfnet data build") and "--annotation-correction JSON" in text
    assert "mb05_120x120.pth" in text and "$DSFNET_TEACHER_DIR" in text


def test_build_reports_bad_options_and_sources(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DSFNET_TEACHER_DIR", raising=False)
    out = str(tmp_path / "o")
    assert main(["data", "build", str(tmp_path), "--out", out]) == 1
    assert "use --pseudo" in capsys.readouterr().err
    assert main(["data", "build", str(tmp_path), "--out", out, "--pseudo"]) == 1
    assert "--pseudo labels with the teacher alone" in capsys.readouterr().err
    assert main(["data", "build", str(tmp_path), "--out", out, "--val-fraction", "1.5"]) == 1
    assert "--val-fraction must be in [0, 1)" in capsys.readouterr().err
    assert main(["data", "build", str(tmp_path), "--out", out, "--pseudo", "--teacher-dir", str(tmp_path)]) == 1
    assert "no images in" in capsys.readouterr().err


def test_convention_needs_a_teacher(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DSFNET_TEACHER_DIR", raising=False)
    assert main(["data", "convention", str(tmp_path), "--out", str(tmp_path / "c.json")]) == 1
    assert "--teacher-dir" in capsys.readouterr().err
    assert main(["data", "convention", str(tmp_path), "--out", str(tmp_path / "c.json"),
                 "--teacher-dir", str(tmp_path)]) == 1
    assert "landmarks.jsonl" in capsys.readouterr().err and not (tmp_path / "c.json").exists()


def test_convention_on_ytf68_finds_the_annotation_offset(shared_dir, tmp_path):
    """ytf68's annotations sit lower-right and wider than the teacher's placement (docs/training.md, session 7):
    40 faces already show it."""
    from dsfnet.data.convention import AnnotationCorrection

    try:
        from dsfnet.facemodel.model import load_face_model

        load_face_model()
    except Exception as e:  # noqa: BLE001 - the built-in model needs a one-time download
        pytest.skip(f"built-in face model not available: {e}")
    out = tmp_path / "c.json"
    assert main(["data", "convention", str(shared_dir / "data" / "ytf68"), "--out", str(out), "--limit", "40",
                 "--teacher-dir", str(shared_dir / "data" / "teacher_3ddfa_v2")]) == 0
    c = AnnotationCorrection.load(out)
    assert 0.95 < c.scale < 0.99 and -0.03 < c.shift[0] < -0.008 and -0.03 < c.shift[1] < -0.008


def test_cli_start_up_imports_neither_numpy_nor_torch():
    """The parsers read BuildConfig and the teacher's file names; the packages behind them import the rest lazily."""
    import subprocess
    import sys

    code = ("import sys; from dsfnet.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('numpy', 'torch', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
