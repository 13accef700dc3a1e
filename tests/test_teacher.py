"""3DDFA_V2 teacher: crop rules, conversion to our Pose_Para convention, strict loading, and its dev-set NME."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dsfnet.teacher import (
    TEACHER_SIZE,
    Teacher,
    affine_to_pose_para,
    cut_roi,
    load_param_stats,
    load_teacher_network,
    params_to_image_affine,
    roi_from_detection,
    roi_from_landmarks,
)
from dsfnet.geometry import pose_para_to_image, pose_para_to_matrix


@pytest.fixture(scope="module")
def face_model(bfm):
    return bfm


@pytest.fixture(scope="module")
def teacher(shared_dir, face_model):
    d = shared_dir / "data/teacher_3ddfa_v2"
    return Teacher(d / "mb05_120x120.pth", d / "param_mean_std_62d_120x120.pkl", face_model)


def test_roi_rules():
    # landmark rule: box 10 x 20 centred (5, 10) -> side sqrt(2) * 20
    roi = roi_from_landmarks(np.array([[0.0, 0.0], [10.0, 20.0], [3.0, 4.0]]))
    half = math.sqrt(2) * 10
    np.testing.assert_allclose(roi, [5 - half, 10 - half, 5 + half, 10 + half])
    # detector rule: s = 100, centre (50, 50 + 14), side int(158)
    np.testing.assert_allclose(roi_from_detection([0, 0, 100, 100]), [50 - 79, 64 - 79, 50 + 79, 64 + 79])
    with pytest.raises(ValueError):
        roi_from_detection([10, 0, 5, 10])
    with pytest.raises(ValueError):
        roi_from_landmarks(np.zeros((1, 2)))


def test_cut_roi_bgr_and_black_outside():
    img = np.zeros((60, 60, 3), dtype=np.uint8)
    img[..., 0] = 200  # red in RGB
    crop = cut_roi(img, [-60, 0, 60, 120])  # left half and bottom half outside the image
    assert crop.shape == (TEACHER_SIZE, TEACHER_SIZE, 3) and crop.dtype == np.uint8
    assert crop[10, 100, 2] == 200 and crop[10, 100, 0] == 0  # BGR: red is channel 2
    assert (crop[:, :55] == 0).all() and (crop[70:] == 0).all()
    with pytest.raises(ValueError):
        cut_roi(img.astype(np.float32), [0, 0, 10, 10])


def test_params_to_image_affine_known_point():
    """A model point through the teacher's 3x4 and 3DDFA_V2's un-cropping, written out by hand."""
    p = np.zeros(62)
    m = np.array([[2e-4, 1e-5, 0.0, 60.0], [0.0, 2e-4, 3e-5, 70.0], [1e-5, 0.0, 2e-4, 50.0]])
    p[:12] = m.reshape(-1)
    roi = [100.0, 50.0, 340.0, 290.0]  # side 240: k = 2
    a = params_to_image_affine(p, roi)
    v = np.array([1000.0, -2000.0, 3000.0])
    crop = m[:, :3] @ v + m[:, 3]
    expected = [2 * (crop[0] - 1) + 100, 2 * (120 - crop[1]) + 50, 2 * (crop[2] - 1)]
    np.testing.assert_allclose(a[:, :3] @ v + a[:, 3], expected)


def test_affine_to_pose_para_round_trip():
    """An exact similarity written in the Pose_Para convention comes back as the same 7 numbers."""
    pose = np.array([0.2, -0.7, 0.1, 220.0, 230.0, -100.0, 1.4e-3])
    h = 450
    pts = np.random.default_rng(0).normal(size=(50, 3)) * 5e4
    img = pose_para_to_image(pts, pose, h)
    lin, *_ = np.linalg.lstsq(np.c_[pts, np.ones(50)], img, rcond=None)  # image = [v, 1] @ lin
    affine = lin.T  # (3, 4)
    np.testing.assert_allclose(affine_to_pose_para(affine, h), pose, rtol=1e-7, atol=1e-7)
    # with a centroid / spread the answer is the same for an exact similarity
    np.testing.assert_allclose(affine_to_pose_para(affine, h, pts.mean(0), np.cov(pts.T)), pose, rtol=1e-6, atol=1e-6)
    assert np.allclose(pose_para_to_matrix(*pose[:3]) @ pose_para_to_matrix(*pose[:3]).T, np.eye(3))


def test_loading_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_teacher_network(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a loadable"):
        load_teacher_network(bad)
    import torch

    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(16, 3, 3, 3)}}, wrong)
    with pytest.raises(ValueError, match="missing"):
        load_teacher_network(wrong)
    with pytest.raises(FileNotFoundError):
        load_param_stats(tmp_path / "missing.pkl")


def test_teacher_dev_nme(shared_dir, teacher, face_model):
    """MEASURED.md: 3.40% mean 68-point NME on the 16 dev images with the landmark crop rule from pts68."""
    gt = np.load(shared_dir / "data/aflw2000_dev/gt.npz")
    from PIL import Image

    images = [np.asarray(Image.open(shared_dir / "data/aflw2000_dev" / str(n)).convert("RGB")) for n in gt["names"]]
    pts = [p.T.astype(np.float64) for p in gt["pts68"]]
    outs = teacher.predict_batch(images, [roi_from_landmarks(p) for p in pts], batch_size=8)
    nmes = []
    for o, p in zip(outs, pts):
        lo, hi = p[:, :2].min(0), p[:, :2].max(0)
        nmes.append(np.linalg.norm(o.landmarks[:, :2] - p[:, :2], axis=1).mean() / np.sqrt(np.prod(hi - lo)))
    assert 100 * np.mean(nmes) == pytest.approx(3.40, abs=0.05)

    # single-image path equals the batched one
    one = teacher.predict(images[3], roi_from_landmarks(pts[3]))
    np.testing.assert_allclose(one.landmarks, outs[3].landmarks, atol=1e-3)

    # the Pose_Para form reproduces the teacher's own mesh up to the non-rigid part of its 3x4 (about 1 px)
    o = outs[0]
    from dsfnet.geometry import decode_vertices

    model_v = decode_vertices(face_model.mean, face_model.shape_basis, face_model.exp_basis, o.shape, o.exp)
    diff = np.linalg.norm(pose_para_to_image(model_v, o.pose_para, 450) - o.vertices, axis=1)
    assert diff.mean() < 1.5  # measured 0.67 px on this image
    np.testing.assert_allclose(o.vertices[face_model.keypoints], o.landmarks, atol=1e-3)
    # poses follow the annotation's sign convention (a flipped sign would give errors of 2|yaw|)
    yaw_err = [abs(math.degrees(o.pose_para[1]) - y) for o, y in zip(outs, gt["yaw"])]
    assert max(yaw_err) < 11 and np.mean(yaw_err) < 4  # measured mean 3.0, max 10.2


class _BoxTeacher:
    """A stand-in teacher whose 68 landmarks are its roi's centre plus a fixed pattern × the roi side: the TTA mean
    is then known in closed form."""

    pattern = np.random.default_rng(0).uniform(-0.3, 0.3, size=(68, 3))

    def _out(self, roi):
        b = np.asarray(roi, dtype=np.float64)
        c, side = np.r_[(b[:2] + b[2:]) / 2, 0.0], b[2] - b[0]
        return type("Out", (), {"landmarks": c + self.pattern * side})()

    def predict(self, image, roi):
        return self._out(roi)

    def predict_batch(self, images, rois):
        return [self._out(r) for r in rois]


def test_teacher_tta_averages_jittered_crops_around_its_own_landmarks():
    from dsfnet.teacher import TTA_JITTER, jitter_roi, roi_from_landmarks, teacher_tta_landmarks

    t = _BoxTeacher()
    img = np.zeros((200, 200, 3), np.uint8)
    got = teacher_tta_landmarks(t, img, [40, 50, 140, 150])
    base = roi_from_landmarks(t.predict(img, [40, 50, 140, 150]).landmarks)
    want = np.mean([t._out(jitter_roi(base, *j)).landmarks for j in TTA_JITTER], axis=0)
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert len(TTA_JITTER) == 9
    np.testing.assert_allclose(jitter_roi([0, 0, 100, 100], 1.1, 0.1, -0.05), [5, -10, 115, 100])


def test_teacher_folder_lookup(tmp_path, monkeypatch):
    from dsfnet.teacher import ENV_TEACHER_DIR, TEACHER_STATS, TEACHER_WEIGHTS, resolve_teacher_dir, teacher_files

    monkeypatch.delenv(ENV_TEACHER_DIR, raising=False)
    assert resolve_teacher_dir(None) is None and resolve_teacher_dir("given") == "given"
    monkeypatch.setenv(ENV_TEACHER_DIR, str(tmp_path))
    assert resolve_teacher_dir(None) == str(tmp_path) and resolve_teacher_dir("given") == "given"
    with pytest.raises(FileNotFoundError, match=TEACHER_WEIGHTS):
        teacher_files(tmp_path)
    (tmp_path / TEACHER_WEIGHTS).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=TEACHER_STATS):
        teacher_files(tmp_path)
    (tmp_path / TEACHER_STATS).write_bytes(b"")
    assert teacher_files(tmp_path) == (tmp_path / TEACHER_WEIGHTS, tmp_path / TEACHER_STATS)


def test_teacher_network_is_the_mobilenet_body_with_the_checkpoints_names():
    import torch

    from dsfnet.model.mobilenet import MobileNetV1Body
    from dsfnet.teacher.network import TeacherNet

    net = TeacherNet().eval()
    assert isinstance(net, MobileNetV1Body)
    keys = set(net.state_dict())
    assert {"conv1.weight", "bn1.running_var", "dw2_1.conv_dw.weight", "dw6.bn_sep.bias", "fc_param.weight"} <= keys
    assert net(torch.zeros(2, 3, TEACHER_SIZE, TEACHER_SIZE)).shape == (2, 62)
