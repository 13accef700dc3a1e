"""AFLW2000-3D evaluation end to end: the GT predictor scores exactly 0; the CLI writes JSON and a plot."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dsfnet.cli.eval import parse_coverages
from dsfnet.eval.aflw2000 import AFLW2000Folder
from dsfnet.eval.predictor import GroundTruthPredictor, Prediction, Predictor, TeacherPredictor
from dsfnet.eval.runner import format_table, run


@pytest.fixture(scope="module")
def face_model(bfm):
    return bfm


@pytest.fixture(scope="module")
def dev(shared_dir, face_model):
    return AFLW2000Folder(shared_dir / "data/aflw2000_dev", face_model=face_model)


def test_folder_reading(dev, face_model):
    assert len(dev) == 16
    s = dev[0]
    assert s.name == "image00050.jpg" and s.image.shape == (450, 450, 3) and s.image.dtype == np.uint8
    assert s.landmark_source == "pt3d_68" and s.landmarks.shape == (68, 3)
    assert s.landmarks_reannotated.shape == (68, 2)  # from gt.npz
    assert s.vertices.shape == (face_model.mean.shape[0], 3)
    assert 30000 < len(dev.region) < face_model.mean.shape[0]
    assert np.isin(face_model.keypoints, dev.region).all()  # the 68 landmarks lie in the face region
    np.testing.assert_allclose(s.face_box, [*s.landmarks[:, :2].min(0), *s.landmarks[:, :2].max(0)])


def test_gt_predictor_scores_zero(dev):
    gt = GroundTruthPredictor()
    assert isinstance(gt, Predictor)
    res = run([gt], dev)
    s = res["runs"][0]["summary"]
    assert s["nme_2d"]["mean_pct"] == 0.0 and s["nme_2d"]["balanced_pct"] == 0.0
    assert all(v == 0.0 for v in s["nme_2d"]["bins_pct"].values())
    assert s["nme_2d"]["counts"] == {"[0,30]": 10, "(30,60]": 4, "(60,90]": 2}
    assert s["dense_nme_3d_pct"] == 0.0 and s["dense_nme_2d_pct"] == 0.0
    assert s["rec_pct"] == pytest.approx(0.0, abs=1e-9)
    pm = s["pose_mae_deg"]
    assert pm["n_used"] == 16 and pm["mean"] == pytest.approx(0.0, abs=1e-9)
    # the re-annotated landmarks differ from pt3d_68: a real, non-zero number (2.76% measured)
    assert 1.0 < s["nme_2d_reannotated"]["mean_pct"] < 5.0
    assert "gt" in format_table(res)


def test_gt_predictor_needs_sample():
    with pytest.raises(RuntimeError):
        GroundTruthPredictor().predict_from_landmarks(np.zeros((10, 10, 3), np.uint8), np.zeros((68, 2)))
    with pytest.raises(ValueError):
        Prediction(landmarks=np.zeros((5, 3)))


def test_parse_coverages():
    assert parse_coverages(None) == (0.0,)
    assert parse_coverages("sweep") == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    assert parse_coverages("0.3") == (0.3,) and parse_coverages("30%") == (0.3,) and parse_coverages("30") == (0.3,)
    with pytest.raises(ValueError):
        parse_coverages("lots")
    with pytest.raises(ValueError):
        parse_coverages("150")


def test_cli_gt_smoke(shared_dir, tmp_path, capsys):
    from dsfnet.cli.main import main

    out_json, out_png = tmp_path / "gt.json", tmp_path / "ced.png"
    code = main(["eval", str(shared_dir / "data/aflw2000_dev"), "--predictor", "gt", "--json", str(out_json),
                 "--plot", str(out_png), "--limit", "4", "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "NME[0,30]" in text and "dense GT" in text
    data = json.loads(out_json.read_text())  # strict JSON (no NaN)
    run0 = data["runs"][0]
    assert data["n_images"] == 4 and run0["predictor"] == "gt" and len(run0["per_image"]) == 4
    assert all(r["nme_2d"] == 0.0 and r["dense_nme_3d"] == 0.0 for r in run0["per_image"])
    import cv2

    img = cv2.imread(str(out_png))
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100


def test_cli_teacher_needs_dir(shared_dir, monkeypatch, capsys):
    from dsfnet.cli.main import main

    monkeypatch.delenv("DSFNET_TEACHER_DIR", raising=False)
    assert main(["eval", str(shared_dir / "data/aflw2000_dev"), "--predictor", "teacher", "--quiet"]) == 2
    assert "DSFNET_TEACHER_DIR" in capsys.readouterr().err


def test_teacher_predictor_occluded_sweep_small(shared_dir, dev, face_model):
    tp = TeacherPredictor.from_dir(shared_dir / "data/teacher_3ddfa_v2", face_model)
    assert isinstance(tp, Predictor)
    res = run([tp], AFLW2000Folder(dev.folder, face_model=face_model, limit=3), coverages=(0.0, 0.4))
    clean, occluded = (r["summary"] for r in res["runs"])
    assert clean["nme_2d"]["mean_pct"] < 6.0 and clean["dense_nme_3d_pct"] < 8.0
    assert occluded["nme_2d"]["mean_pct"] > clean["nme_2d"]["mean_pct"]
    for r in res["runs"][1]["per_image"]:
        assert abs(r["coverage_measured"] - 0.4) <= 0.02
