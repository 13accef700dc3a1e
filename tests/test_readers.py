"""300W-LP / AFLW2000-3D .mat reader: parsing, errors, and parameters → landmarks against the dataset's own points."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from dsfnet.data.readers import annotation_landmarks, annotation_vertices, read_mat


@pytest.fixture(scope="module")
def face_model(bfm):
    return bfm


def _nme(pred, gt):
    lo, hi = gt[:, :2].min(0), gt[:, :2].max(0)
    return np.linalg.norm(pred[:, :2] - gt[:, :2], axis=1).mean() / np.sqrt(np.prod(hi - lo))


def test_read_mat_fields_aflw2000(shared_dir):
    path = shared_dir / "data/aflw2000_dev/image00050.mat"
    ann = read_mat(path)
    assert ann.image_size == (450, 450)  # from the .jpg next to it
    assert ann.pose_para.shape == (7,) and ann.shape.shape == (40,) and ann.exp.shape == (10,)
    assert ann.pt3d_68.shape == (68, 3) and ann.pt2d.shape == (21, 2) and ann.roi.shape == (4,)
    raw = scipy.io.loadmat(str(path))
    np.testing.assert_allclose(ann.pose_para, raw["Pose_Para"].reshape(-1))
    np.testing.assert_allclose(ann.shape, raw["Shape_Para"][:40, 0])
    np.testing.assert_allclose(ann.exp, raw["Exp_Para"][:10, 0])
    np.testing.assert_allclose(ann.pt3d_68, raw["pt3d_68"].T)
    assert read_mat(path, n_shape=199, n_exp=29).shape.shape == (199,)
    gt = np.load(shared_dir / "data/aflw2000_dev/gt.npz")
    # gt.npz's yaw (3DDFA) equals Pose_Para yaw in degrees
    assert np.degrees(ann.pose_para[1]) == pytest.approx(float(gt["yaw"][0]), abs=1e-4)


def test_parameters_reproduce_pt3d_68(shared_dir, face_model):
    """The 68 model landmarks from (Pose_Para, first 40/10 coefficients) land on pt3d_68 within 1.5% NME."""
    paths = sorted((shared_dir / "data/aflw2000_dev").glob("*.mat"))
    assert len(paths) == 16
    errs, px = [], []
    for p in paths:
        ann = read_mat(p)
        lm = annotation_landmarks(face_model, ann)
        errs.append(_nme(lm, ann.pt3d_68))
        px.append(np.linalg.norm(lm[:, :2] - ann.pt3d_68[:, :2], axis=1).mean())
        # z is in the same frame (no offset): mean z difference well under a pixel-scale error
        assert abs(np.mean(lm[:, 2] - ann.pt3d_68[:, 2])) < 1.0
    assert max(errs) < 0.015
    assert 0.5 < np.mean(px) < 2.5  # measured 1.66 px mean on 450 px images (truncation to 40/10)


def test_dense_vertices_contain_landmarks(shared_dir, face_model):
    ann = read_mat(shared_dir / "data/aflw2000_dev/image00081.mat")
    v = annotation_vertices(face_model, ann)
    assert v.shape == (face_model.mean.shape[0], 3)
    np.testing.assert_allclose(v[face_model.keypoints], annotation_landmarks(face_model, ann), atol=1e-3)


def test_w300lp_sample(shared_dir, face_model):
    ann = read_mat(shared_dir / "data/w300lp_sample/IBUG_image_008_1_0.mat")
    assert ann.pt3d_68 is None and ann.pt2d.shape == (68, 2) and ann.image_size == (450, 450)
    assert np.degrees(ann.pose_para[1]) == pytest.approx(-44.0, abs=0.1)
    lm = annotation_landmarks(face_model, ann)
    # pt2d follows the 2D (visible contour) convention: compare the 51 inner points only (measured 2.3%)
    assert _nme(lm[17:], ann.pt2d[17:]) < 0.035


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_mat(tmp_path / "nope.mat")
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match="not a readable"):
        read_mat(bad, image_size=(10, 10))
    partial = tmp_path / "partial.mat"
    scipy.io.savemat(str(partial), {"roi": np.zeros((1, 4)), "Pose_Para": np.zeros((1, 7))})
    with pytest.raises(ValueError, match="Shape_Para"):
        read_mat(partial, image_size=(10, 10))
    ok = tmp_path / "ok.mat"
    scipy.io.savemat(str(ok), {"Pose_Para": np.zeros((1, 7)), "Shape_Para": np.zeros((199, 1)),
                               "Exp_Para": np.zeros((29, 1))})
    with pytest.raises(FileNotFoundError, match="image_size"):
        read_mat(ok)  # no image next to it
    assert read_mat(ok, image_size=(100, 80)).image_size == (100, 80)
    short = tmp_path / "short.mat"
    scipy.io.savemat(str(short), {"Pose_Para": np.zeros((1, 6)), "Shape_Para": np.zeros((199, 1)),
                                  "Exp_Para": np.zeros((29, 1))})
    with pytest.raises(ValueError, match="Pose_Para"):
        read_mat(short, image_size=(10, 10))
