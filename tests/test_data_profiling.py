"""Face profiling (dsfnet.data.profiling): the rendered new view puts landmarks where the new pose says."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dsfnet.data.profiling import profile_face, rotate_pose, vertex_visibility
from dsfnet.geometry import decode_vertices, pose_para_to_image
from testing.face_model import toy_face_model

H = 256
COLOURS = {30: (255, 0, 0), 36: (0, 255, 0), 45: (0, 0, 255), 48: (255, 255, 0), 54: (255, 0, 255),
           8: (0, 255, 255), 39: (255, 128, 0), 42: (128, 0, 255)}


@pytest.fixture(scope="module")
def model():
    return toy_face_model()


def dotted_photo(model, shape, exp, pose) -> np.ndarray:
    """A grey photo with a coloured disc (radius 3 px) at the projected position of some keypoint vertices."""
    yy, xx = np.mgrid[0:H, 0:H]
    img = np.stack([110 + 20 * np.sin(xx / 9.0), 110 + 20 * np.cos(yy / 11.0), np.full((H, H), 115.0)], -1)
    img = img.astype(np.uint8)
    v = pose_para_to_image(decode_vertices(model.mean, model.shape_basis, model.exp_basis, shape, exp), pose, H)
    for k, c in COLOURS.items():
        x, y = v[model.keypoints[k], :2]
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), 3 * 16, c, -1, cv2.LINE_AA, shift=4)
    return img


@pytest.mark.parametrize("delta", [(0.0, 0.35), (0.0, -0.3), (0.2, 0.25)])
def test_profiled_landmarks_land_on_the_rendered_face(model, delta):
    shape, exp = model.shape_std * 0.4, model.exp_std * 0.2
    pose = np.array([0.05, 0.1, 0.05, H / 2, H / 2, 0.0, 110 / 1.5e5])
    img = dotted_photo(model, shape, exp, pose)
    view = profile_face(img, model, shape, exp, pose, delta_pitch=delta[0], delta_yaw=delta[1])
    np.testing.assert_allclose(view.pose_para[:3], pose[:3] + [delta[0], delta[1], 0.0], atol=1e-12)
    assert view.pose_para[6] == pose[6]
    v_model = decode_vertices(model.mean, model.shape_basis, model.exp_basis, shape, exp)
    v_new = pose_para_to_image(v_model, view.pose_para, H)
    vis_new = vertex_visibility(v_new, model.triangles, H, H)
    # the face centre stays put
    v_old = pose_para_to_image(v_model, pose, H)
    np.testing.assert_allclose(v_new.mean(0)[:2], v_old.mean(0)[:2], atol=1e-6)
    checked = 0
    out = view.image.astype(np.float64)
    for k, c in COLOURS.items():
        vid = model.keypoints[k]
        if not (view.visible[vid] and vis_new[vid]):
            continue
        dist = np.linalg.norm(out - np.array(c, float), axis=-1)
        w = np.clip(80.0 - dist, 0, None)
        assert w.sum() > 0, k
        ys, xs = np.nonzero(w)
        centre = np.array([(xs * w[ys, xs]).sum(), (ys * w[ys, xs]).sum()]) / w[ys, xs].sum()
        err = np.linalg.norm(centre - v_new[vid, :2])
        assert err < 2.0, (k, err)
        checked += 1
    assert checked >= 5
    assert view.face_mask.mean() > 0.1


def test_rotate_pose_keeps_centre():
    p = np.array([0.1, 0.2, 0.3, 50.0, 60.0, 5.0, 1e-3])
    c = np.array([1e4, -2e4, 3e4])
    q = rotate_pose(p, c, delta_yaw=0.5)
    a = pose_para_to_image(c[None], p, 100)
    b = pose_para_to_image(c[None], q, 100)
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_inpaint_background_and_errors(model):
    shape, exp = np.zeros(model.n_shape), np.zeros(model.n_exp)
    pose = np.array([0.0, 0.0, 0.0, H / 2, H / 2, 0.0, 110 / 1.5e5])
    img = dotted_photo(model, shape, exp, pose)
    view = profile_face(img, model, shape, exp, pose, delta_yaw=0.4, background="inpaint")
    assert view.image.shape == img.shape and view.image.dtype == np.uint8
    # far from the face, the background is the photo
    np.testing.assert_array_equal(view.image[:10, :10], img[:10, :10])
    with pytest.raises(ValueError, match="background"):
        profile_face(img, model, shape, exp, pose, background="blur")
