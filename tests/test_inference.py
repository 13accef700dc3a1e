"""FaceAligner pipeline end to end with a known UV map (no trained weights), runners, smoothing, tracking."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dsfnet.assets import sample_image_path
from dsfnet.crop import BoxCalibration, box_from_detection, box_from_landmarks, crop_matrix, invert_matrix, transform_points, warp_image
from dsfnet.detect import YUFACE_CALIBRATION, BoxesDetector, YuFaceDetector
from dsfnet.inference import (
    FaceAligner,
    FaceTracker,
    OneEuroFilter,
    WeightsNotFoundError,
    zbuffer_visibility,
)
from dsfnet.inference.visualize import draw_faces
from dsfnet.io import read_image
from dsfnet.model.weights import resolve_weights
from testing.aligner import toy_aligner

IMG = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
BOX = [100.0, 50.0, 220.0, 170.0]


def _expected(toy, crop_box, size=64):
    """Ground truth in image px: the posed toy face mapped back through the crop (nose-relative z)."""
    back = invert_matrix(crop_matrix(crop_box, size))
    posmap = toy.codec.encode(toy.vertices_crop).astype(np.float64)  # the runner hands float32; decode in float64
    v, lmk = toy.codec.decode(posmap), toy.codec.landmarks(posmap)
    v[:, 2] -= lmk[30, 2]  # the API makes depth relative to landmark 30 exactly
    lmk[:, 2] -= lmk[30, 2]
    exact_v, exact_l = transform_points(v, back), transform_points(lmk, back)
    truth = transform_points(toy.vertices_crop, back)
    return exact_v, exact_l, truth


def test_decode_end_to_end_exact_numbers():
    aligner, toy = toy_aligner(yaw=20.0)
    faces = aligner.predict(IMG, boxes=[BOX])
    assert len(faces) == 1
    f = faces[0]
    crop_box = box_from_detection(BOX, BoxCalibration())  # no detector: the landmark-box rule (1.5x, no shift)
    np.testing.assert_allclose(f.crop_box, crop_box)
    assert crop_box.tolist() == [70.0, 20.0, 250.0, 200.0]
    # the network saw exactly this crop
    np.testing.assert_array_equal(aligner.runner.last_crops[0], warp_image(IMG, crop_matrix(crop_box, 64), 64))
    exact_v, exact_l, truth = _expected(toy, crop_box)
    np.testing.assert_allclose(f.vertices, exact_v, atol=1e-9)
    np.testing.assert_allclose(f.landmarks_3d, exact_l, atol=1e-9)
    np.testing.assert_allclose(f.landmarks_2d, exact_l[:, :2], atol=1e-9)
    assert f.landmarks_3d[30, 2] == pytest.approx(0.0, abs=1e-9)  # z relative to the nose tip
    # and the decoded face is the posed face (UV resampling error of a 32x32 map only), k = 64/180
    err = np.linalg.norm(f.vertices[:, :2] - truth[:, :2], axis=1)
    assert np.median(err) < 0.15
    lerr = np.linalg.norm(f.landmarks_2d - truth[toy.face_model.keypoints, :2], axis=1)
    assert lerr.max() < 2.0 and lerr.mean() < 0.6
    # pose in degrees (Pose_Para convention) and the rotation itself
    assert (f.pose["yaw"], f.pose["pitch"], f.pose["roll"]) == pytest.approx((20.0, 0.0, 0.0), abs=1e-9)
    np.testing.assert_allclose(f.rotation, toy.rotation, atol=1e-12)
    np.testing.assert_array_equal(f.bbox, BOX)
    assert f.score == 1.0 and f.triangles.shape[1] == 3


def test_pose_angles_in_degrees():
    aligner, _ = toy_aligner(pitch=-10.0, yaw=35.0, roll=5.0)
    f = aligner.predict(IMG, boxes=[BOX])[0]
    assert (f.pose["pitch"], f.pose["yaw"], f.pose["roll"]) == pytest.approx((-10.0, 35.0, 5.0), abs=1e-9)


def test_faces_in_the_order_of_given_boxes():
    aligner, _ = toy_aligner()
    boxes = [[200, 100, 300, 200], [10, 10, 60, 70], [100, 150, 180, 250]]
    faces = aligner.predict(IMG, boxes=boxes)
    assert [f.bbox.tolist() for f in faces] == boxes
    centres = [f.landmarks_2d.mean(0) for f in faces]
    assert centres[0][0] > 200 and centres[1][0] < 60  # each face decoded in its own crop
    assert aligner.predict(IMG, boxes=[]) == []


def test_visibility_zbuffer_and_seg():
    frontal = toy_aligner(yaw=0.0)[0].predict(IMG, boxes=[BOX])[0]
    assert frontal.visibility.min() == 1.0
    turned = toy_aligner(yaw=60.0)[0].predict(IMG, boxes=[BOX])[0]
    hidden = np.flatnonzero(turned.visibility < 0.5)
    assert 1 <= len(hidden) <= 20
    # with yaw > 0 the subject's right side (jaw points 0..7) turns away; the left jaw (9..16) stays visible
    assert set(hidden) & set(range(0, 8)) and not set(hidden) & set(range(9, 17))
    seg = np.ones((64, 64), np.float32)
    seg[:, :32] = 0.0  # an occluder over the left half of the crop
    occl = toy_aligner(yaw=0.0, seg=seg)[0].predict(IMG, boxes=[BOX])[0]
    crop_x = transform_points(occl.landmarks_2d, crop_matrix(occl.crop_box, 64))[:, 0]
    # external visibility looks EXTERNAL_RADIUS * S = 0.96 -> 1 px around each point (cell centres at integers);
    # the jaw points are read JAW_INSET * S = 2.56 px further in, toward the face centre (to the right here)
    inner, jaw = np.arange(17, 68), np.arange(17)
    assert (occl.visibility[inner][crop_x[inner] < 30.0] == 0).all()
    assert (occl.visibility[inner][crop_x[inner] > 31.5] == 1).all()
    from dsfnet.inference.visibility import JAW_INSET, inset_jaw

    read_x = inset_jaw(transform_points(occl.landmarks_2d, crop_matrix(occl.crop_box, 64)), JAW_INSET * 64)[jaw, 0]
    centre = crop_x[inner].mean()
    assert (np.abs(read_x - centre) < np.abs(crop_x[jaw] - centre)).all()  # moved toward the face centre
    assert (occl.visibility[jaw][read_x > 31.5] == 1).all() and (occl.visibility[jaw][read_x < 30.0] == 0).all()
    assert (occl.self_visibility == 1).all()  # a frontal face hides none of its own points
    np.testing.assert_array_equal(occl.visibility, occl.self_visibility * occl.external_visibility)
    np.testing.assert_array_equal(turned.external_visibility, 1.0)  # no occluder: only the mesh hides points
    assert ((turned.self_visibility == 0) == (turned.visibility < 0.5)).all()
    assert turned.vertex_visibility.shape == (len(turned.vertices),)
    d = occl.to_dict()
    assert d["self_visibility"] == [1.0] * 68 and len(d["external_visibility"]) == 68


def test_external_visibility_reads_the_neighbourhood():
    from dsfnet.inference.visibility import external_visibility, inset_jaw, landmark_external_visibility

    seg = np.zeros((32, 32), np.float32)
    seg[:, :16] = 1.0                       # the face ends at column 15
    pts = np.array([[15.0, 10], [17.0, 10], [18.0, 10], [25.0, 10]])
    v = external_visibility(seg, pts, radius=2.0)
    assert v.tolist() == [1.0, 1.0, 0.0, 0.0]  # a point on the outline is seen; 3 px outside it is not
    assert external_visibility(np.full((8, 8), 0.3, np.float32), pts[:1]).tolist() == [pytest.approx(0.3)]  # as is
    # the jaw is read inside the outline: 3 px toward the inner points' centre
    lm = np.zeros((68, 2))
    lm[17:] = [10.0, 10.0]
    lm[:17] = [17.0, 10.0]
    np.testing.assert_allclose(inset_jaw(lm, 3.0)[:17], [[14.0, 10.0]] * 17)
    np.testing.assert_allclose(inset_jaw(lm, 30.0)[:17], [[10.0, 10.0]] * 17)  # never past the centre
    v = landmark_external_visibility(seg, lm, inset=3.0)
    assert (v[:17] == 1.0).all() and (v[17:] == 1.0).all()
    assert (landmark_external_visibility(seg, lm, inset=0.0)[:17] == 0.0).all()


def test_zbuffer_visibility_simple():
    # a square at z = 0 covering the crop; one point in front of it, one behind, one outside
    v = np.array([[-1, -1, 0], [20, -1, 0], [-1, 20, 0], [20, 20, 0.0]])
    t = np.array([[0, 1, 2], [1, 3, 2]])
    pts = np.array([[5, 5, 1.0], [5, 5, -3.0], [50, 50, -9.0]])
    assert zbuffer_visibility(v, t, pts, 16, tolerance=0.5).tolist() == [1.0, 0.0, 1.0]


def test_detector_path_uses_detector_calibration():
    aligner, toy = toy_aligner(detector="yuface")
    sample = read_image(sample_image_path())
    faces = aligner.predict(sample)
    det = YuFaceDetector().detect(sample)
    assert len(faces) == 1 and faces[0].score == pytest.approx(det[0].score)
    np.testing.assert_allclose(faces[0].crop_box, box_from_detection(det[0].box, YUFACE_CALIBRATION))
    # the same boxes given by hand go through the same calibration by default
    again = aligner.predict(sample, boxes=[det[0].box])[0]
    np.testing.assert_allclose(again.vertices, faces[0].vertices)
    f2 = aligner.predict(sample, boxes=BoxesDetector([det[0].box]))
    np.testing.assert_allclose(f2[0].crop_box, faces[0].crop_box)


def test_predict_from_landmarks_uses_landmark_crop():
    aligner, _ = toy_aligner()
    pts = np.array([[100.0, 80.0], [180.0, 80.0], [140.0, 170.0]])
    f = aligner.predict_from_landmarks(IMG, pts)
    np.testing.assert_allclose(f.crop_box, box_from_landmarks(pts))


def test_no_detector_needs_boxes():
    aligner, _ = toy_aligner()
    with pytest.raises(ValueError, match="boxes"):
        aligner.predict(IMG)


def test_to_dict_schema_and_json():
    aligner, _ = toy_aligner()
    f = aligner.predict(IMG, boxes=[BOX])[0]
    d = json.loads(json.dumps(f.to_dict(mesh="meshes/x.obj")))
    assert set(d) == {"bbox", "score", "landmarks_2d", "landmarks_3d", "visibility", "self_visibility",
                      "external_visibility", "pose", "mesh"}
    assert np.array(d["landmarks_2d"]).shape == (68, 2) and np.array(d["landmarks_3d"]).shape == (68, 3)
    assert len(d["visibility"]) == 68 and set(d["pose"]) == {"yaw", "pitch", "roll", "rotation"}
    assert np.array(d["pose"]["rotation"]).shape == (3, 3) and d["mesh"] == "meshes/x.obj"
    assert d["pose"]["yaw"] == 20.0


def test_nan_network_output_is_an_error():
    aligner, _ = toy_aligner()
    aligner.runner.face_uvm[0, 5, 5] = np.nan
    aligner.runner.face_uvm[:] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        aligner.predict(IMG, boxes=[BOX])


def test_missing_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DSFNET_WEIGHTS", raising=False)
    monkeypatch.setattr("dsfnet.model.weights.default_weights_dir", lambda: tmp_path / "pkg")
    with pytest.raises(WeightsNotFoundError, match="never runs with random weights") as e:
        FaceAligner(config="lite", detector=None)
    assert "--weights" in str(e.value) and "DSFNET_WEIGHTS" in str(e.value)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        FaceAligner(weights=tmp_path / "nope.pt", detector=None)
    with pytest.raises(WeightsNotFoundError, match="export-onnx"):
        resolve_weights("lite", "onnx")
    (tmp_path / "lite.pt").write_bytes(b"x")
    monkeypatch.setenv("DSFNET_WEIGHTS", str(tmp_path))
    assert resolve_weights("lite") == tmp_path / "lite.pt"
    with pytest.raises(ValueError, match="valid backends: torch, onnx"):
        resolve_weights("lite", "tflite")


def test_the_onnx_hint_works_when_followed(tmp_path, monkeypatch):
    """The error's suggested commands, run as written from the current folder, find the export (#19)."""
    import re

    monkeypatch.delenv("DSFNET_WEIGHTS", raising=False)
    monkeypatch.setattr("dsfnet.model.weights.default_weights_dir", lambda: tmp_path / "pkg")  # nothing shipped
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights("lite", "onnx")
    msg = str(e.value)
    out = re.search(r"dsfnet export-onnx --config lite -o (\S+)`", msg).group(1)
    passed = re.search(r"then pass `--weights (\S+)`", msg).group(1)
    assert out == passed and "searched (in this order)" in msg
    (tmp_path / out).mkdir()  # what `dsfnet export-onnx -o lite-onnx` creates
    for f in ("network.onnx", "meta.json"):
        (tmp_path / out / f).write_bytes(b"x")
    assert resolve_weights("lite", "onnx", passed).resolve() == tmp_path / out
    monkeypatch.setenv("DSFNET_WEIGHTS", out)
    assert resolve_weights("lite", "onnx") == Path(out)
    with pytest.raises(WeightsNotFoundError, match="'paper' model has no shipped weights"):
        resolve_weights("paper", "torch")


def test_preprocess_matches_model_standardize():
    torch = pytest.importorskip("torch")
    from dsfnet.model import preprocess, standardize

    crops = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    ref = standardize(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255).numpy()
    np.testing.assert_allclose(preprocess(crops), ref, atol=1e-5)


def test_one_euro_filter_numbers():
    dt = 1 / (2 * math.pi)  # makes alpha(1 Hz) exactly 1/2
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0, d_cutoff=1.0)
    assert [float(f(x, i * dt)) for i, x in enumerate([0.0, 1.0, 1.0, 1.0])] == pytest.approx([0.0, 0.5, 0.75, 0.875])
    g = OneEuroFilter(min_cutoff=1.0, beta=1 / math.pi, d_cutoff=1.0)
    g(0.0, 0.0)
    # dx = 2*pi, dx_hat = pi (alpha_d = 1/2), cutoff = 1 + pi/pi = 2 Hz, alpha = 1/(1 + 1/2) = 2/3
    assert float(g(1.0, dt)) == pytest.approx(2 / 3)
    h = OneEuroFilter()
    np.testing.assert_array_equal(h(np.array([[1.0, 2.0]]), 0.0), [[1.0, 2.0]])
    with pytest.raises(ValueError, match="time must increase"):
        h(np.array([[1.0, 2.0]]), 0.0)
    with pytest.raises(ValueError, match="shape"):
        h(np.zeros(3), 1.0)


def test_tracker_detects_once_then_tracks():
    aligner, _ = toy_aligner(detector=BoxesDetector([BOX]))
    tr = FaceTracker(aligner, smooth=False)
    first = tr.update(IMG, 0.0)
    assert len(first) == 1 and tr.detections_run == 1
    second = tr.update(IMG, 0.04)
    assert tr.detections_run == 1  # tracked: crop from the previous landmarks
    np.testing.assert_allclose(second[0].crop_box, box_from_landmarks(first[0].landmarks_2d))
    tr.update(IMG, 0.08)
    assert tr.detections_run == 1
    smooth = FaceTracker(toy_aligner(detector=BoxesDetector([BOX]))[0], smooth=True)
    a = smooth.update(IMG, 0.0)[0]
    np.testing.assert_allclose(a.landmarks_3d, first[0].landmarks_3d)  # first sample passes unchanged


def test_tracker_redetects_when_lost():
    aligner, _ = toy_aligner(detector=BoxesDetector([BOX]))
    tr = FaceTracker(aligner, smooth=False, min_face=1e6)  # every track counts as lost
    tr.update(IMG, 0.0)
    tr.update(IMG, 0.04)
    assert tr.detections_run == 2


def test_draw_faces_styles():
    aligner, _ = toy_aligner()
    faces = aligner.predict(IMG, boxes=[BOX])
    base = np.zeros_like(IMG)
    for style in ("shaded", "wireframe", "points", "none"):
        out = draw_faces(base, faces, mesh=style)
        assert out.shape == base.shape and out.sum() > 0 and base.sum() == 0
    with pytest.raises(ValueError, match="valid"):
        draw_faces(base, faces, mesh="glossy")


def test_eval_predictor_adapter():
    from dsfnet.eval.predictor import AlignerPredictor, Prediction, Predictor

    aligner, _ = toy_aligner()
    pred = AlignerPredictor(aligner)
    assert isinstance(pred, Predictor) and pred.name == "dsfnet"
    lmk = aligner.predict(IMG, boxes=[BOX])[0].landmarks_2d
    p = pred.predict_from_landmarks(IMG, lmk)
    assert isinstance(p, Prediction) and p.landmarks.shape == (68, 3) and p.vertices.shape[1] == 3
    np.testing.assert_allclose(p.rotation, aligner.runner.rotation)


def test_grid_zbuffer_visibility_agrees_with_the_full_mesh(shared_dir):
    """The self-occlusion test on the UV-grid mesh (~15k triangles) flags the same landmarks as on the full
    53k-vertex mesh (~100k triangles) for >= 99% of them (#18), on the dev photos (all yaws) and their mirror."""
    from dsfnet.crop import box_from_landmarks
    from dsfnet.eval.aflw2000 import AFLW2000Folder
    from dsfnet.inference.aligner import decode_face

    aligner = FaceAligner(detector=None)
    size = aligner.runner.input_size
    same = total = hidden = 0
    for sample in AFLW2000Folder(shared_dir / "data" / "aflw2000_dev"):
        img, gt = sample.image, sample.landmarks[:, :2]
        mirrored = gt.copy()
        mirrored[:, 0] = img.shape[1] - 1 - mirrored[:, 0]
        for image, pts in ((img, gt), (np.ascontiguousarray(img[:, ::-1]), mirrored)):
            box = box_from_landmarks(pts)
            out = aligner.runner(warp_image(image, crop_matrix(box, size), size)[None])
            flags = [decode_face(out, 0, box, aligner.codec, aligner.triangles, bbox=box, score=1.0,
                                 visibility_mesh=mesh).self_visibility for mesh in ("grid", "full")]
            same += int((flags[0] == flags[1]).sum())
            total += len(flags[0])
            hidden += int((flags[1] < 0.5).sum())
    assert hidden > 0.05 * total  # profiles are in the set: the test is not vacuous
    print(f"grid vs full z-buffer: {same}/{total} landmark flags agree, {hidden} hidden")
    assert same / total >= 0.99, (same, total)


def test_shipped_onnx_export_matches_the_shipped_checkpoint_and_is_the_cpu_default(tmp_path, monkeypatch):
    """``weights/lite-onnx`` must be re-exported whenever ``weights/lite.pt`` changes (scripts/release_weights.py
    does both); ``backend="auto"`` runs it on the CPU and torch elsewhere or for ``.pt`` files (#18)."""
    from dsfnet.model.weights import choose_backend, default_weights_dir

    monkeypatch.delenv("DSFNET_WEIGHTS", raising=False)
    assert (default_weights_dir() / "lite-onnx" / "network.onnx").is_file()
    img = read_image(sample_image_path())
    auto, torch_ = FaceAligner(passes=1), FaceAligner(backend="torch", passes=1)
    assert auto.backend == "onnx" and torch_.backend == "torch"
    fa, ft = auto.predict(img), torch_.predict(img)
    assert len(fa) == len(ft) == 1
    np.testing.assert_allclose(fa[0].landmarks_3d, ft[0].landmarks_3d, atol=1e-2)  # image px
    auto.passes = torch_.passes = 2  # the second crop follows each backend's own first pass: still within 0.05 px
    np.testing.assert_allclose(auto.predict(img)[0].landmarks_3d, torch_.predict(img)[0].landmarks_3d, atol=5e-2)
    np.testing.assert_array_equal(fa[0].self_visibility, ft[0].self_visibility)
    assert choose_backend("lite", default_weights_dir() / "lite.pt") == "torch"
    assert choose_backend("lite", None, device="cuda") == "torch"
    assert choose_backend("paper") == "torch"  # no ONNX weights: torch (which then says what is missing)
    monkeypatch.setenv("DSFNET_WEIGHTS", str(tmp_path))  # the user's own .pt folder: never the shipped ONNX
    assert choose_backend("lite") == "torch"


def test_second_pass_crops_from_the_first_pass_landmarks():
    """passes=2: the second crop is the training crop rule applied to the first pass's landmarks (#15)."""
    one, _ = toy_aligner(yaw=20.0, passes=1)
    two, _ = toy_aligner(yaw=20.0, passes=2)
    first = one.predict(IMG, boxes=[BOX])[0]
    second = two.predict(IMG, boxes=[BOX])[0]
    np.testing.assert_allclose(second.crop_box, box_from_landmarks(first.landmarks_2d))
    assert two.runner.calls == 2 and second.score == first.score
    np.testing.assert_allclose(second.bbox, first.bbox)  # the face keeps its detection box
    with pytest.raises(ValueError, match="passes must be >= 1"):
        toy_aligner(passes=0)


def test_default_passes_three_for_given_boxes_one_for_own_detections():
    from dsfnet.inference.aligner import BOX_PASSES, DETECTOR_PASSES

    aligner, _ = toy_aligner(passes=None)
    aligner.predict(IMG, boxes=[BOX])
    assert aligner.runner.calls == BOX_PASSES == 3
    det_aligner, _ = toy_aligner(detector="yuface", passes=None)
    det_aligner.predict(read_image(sample_image_path()))
    assert det_aligner.runner.calls == DETECTOR_PASSES == 1


def test_predict_takes_a_list_batched_across_images_and_a_stream():
    aligner, _ = toy_aligner(passes=1)
    aligner.batch_size = 8
    single = aligner.predict(IMG, boxes=[BOX])
    calls = aligner.runner.calls
    many = aligner.predict([IMG, IMG, IMG], boxes=[[BOX], [BOX, BOX], None if aligner.detector else [BOX]])
    assert [len(f) for f in many] == [1, 2, 1]
    assert aligner.runner.calls == calls + 1  # the four crops of three images: one network batch
    np.testing.assert_allclose(many[1][1].landmarks_3d, single[0].landmarks_3d)
    stream = aligner.predict(iter([IMG, IMG]))
    assert not isinstance(stream, list)  # lazy: nothing is computed until asked
    with pytest.raises(ValueError, match="no detector configured"):
        next(stream)  # the toy aligner has no detector: each image is processed when reached
    with pytest.raises(ValueError, match="one entry per image"):
        aligner.predict([IMG, IMG], boxes=[[BOX]])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sideways_and_upside_down_photos_are_aligned_upright_and_mapped_back(k):
    """The sample turned by k·90°: the face is found upright in the right copy and reported in the photo's frame:
    landmarks on the upright result's (turned), roll turned by k·90° (#15)."""
    from dsfnet.inference.orientation import unrotate_points

    img = read_image(sample_image_path())
    aligner = FaceAligner()
    up = aligner.predict(img)[0]
    turned = np.ascontiguousarray(np.rot90(img, k))
    faces = aligner.predict(turned)
    assert len(faces) == 1
    f = faces[0]
    expected = unrotate_points(up.landmarks_2d, -k % 4, *turned.shape[:2])  # the upright landmarks, turned with the photo
    size = np.sqrt(np.prod(up.bbox[2:] - up.bbox[:2]))
    assert np.linalg.norm(f.landmarks_2d - expected, axis=1).mean() < 0.03 * size
    d_roll = (f.pose["roll"] - up.pose["roll"]) % 360
    assert min(abs(d_roll - (90 * k) % 360), abs(d_roll - (-90 * k) % 360)) < 8  # turned by k·90°
    assert np.linalg.norm(np.asarray(f.vertices)[:, :2].mean(0) - f.landmarks_2d.mean(0)) < 0.2 * size
    no_search = FaceAligner(orientation_search=False).predict(turned)
    assert all(float(np.mean(g.external_visibility)) < 0.85 for g in no_search)  # without it: confident garbage
