"""Detector contract (every registered detector), yuface on the bundled sample, user boxes, registry."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dsfnet.assets import sample_image_path
from dsfnet.crop import BoxCalibration, box_from_detection
from dsfnet.detect import (
    DETECTORS,
    BoxesDetector,
    Detection,
    FaceDetector,
    YuFaceDetector,
    create_detector,
    list_detectors,
    load_boxes_file,
    parse_boxes,
)
from dsfnet.io import read_image


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return read_image(sample_image_path())


def _instance(name: str) -> FaceDetector:
    if name == "boxes":  # fixed boxes, one partly outside the image, given in increasing-score order
        return BoxesDetector([{"box": [-20, 10, 60, 90], "score": 0.4}, {"box": [100, 100, 200, 220], "score": 0.9}])
    return create_detector(name)


@pytest.mark.parametrize("name", list_detectors())
def test_contract(name, sample):
    det = _instance(name)
    assert isinstance(det.calibration, BoxCalibration)
    for image in (sample, sample[:300, :400].copy()):
        h, w = image.shape[:2]
        out = det.detect(image)
        assert isinstance(out, list) and out, name
        scores = [d.score for d in out]
        assert scores == sorted(scores, reverse=True)
        for d in out:
            assert isinstance(d, Detection) and d.box.dtype == np.float64 and 0.0 <= d.score <= 1.0
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert d.keypoints5 is None or d.keypoints5.shape == (5, 2)
            crop = box_from_detection(d.box, det.calibration)
            assert crop[2] - crop[0] == pytest.approx(crop[3] - crop[1])
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 RGB"):
        det.detect(sample[..., 0])


@pytest.mark.parametrize("name", [n for n in list_detectors() if n != "boxes"])
@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_face_gives_empty_list(name, kind):
    rng = np.random.default_rng(0)
    img = np.full((240, 320, 3), 127, np.uint8) if kind == "blank" else rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert create_detector(name).detect(img) == []


def test_yuface_finds_the_sample_face(sample):
    out = YuFaceDetector().detect(sample)
    assert len(out) == 1
    d = out[0]
    assert d.score > 0.8
    # the astronaut's face: about 90 x 112 px around (222, 118) in the 512 x 512 photo
    cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
    assert abs(cx - 222) < 10 and abs(cy - 118) < 12
    assert 70 < d.box[2] - d.box[0] < 110 and 90 < d.box[3] - d.box[1] < 135
    eyes = d.keypoints5[:2]
    assert eyes[0, 0] < eyes[1, 0] and abs(eyes[0, 1] - eyes[1, 1]) < 10  # image-left eye first, level


def test_yuface_downscales_large_images_and_maps_boxes_back(sample):
    big = np.ascontiguousarray(np.repeat(np.repeat(sample, 3, axis=0), 3, axis=1))  # 1536 x 1536
    small = YuFaceDetector().detect(sample)[0].box
    large = YuFaceDetector(max_side=800).detect(big)
    assert len(large) == 1
    np.testing.assert_allclose(large[0].box / 3, small, atol=6)


def test_yuface_arguments():
    with pytest.raises(ValueError, match="conf_threshold"):
        YuFaceDetector(conf_threshold=50)


def test_registry_lists_valid_names():
    assert set(DETECTORS) == {"yuface", "boxes"}
    with pytest.raises(ValueError, match="valid names: boxes, yuface"):
        create_detector("retinaface")
    det = YuFaceDetector()
    assert create_detector(det) is det


def test_boxes_keep_given_order_and_clip(sample):
    det = BoxesDetector([[300, 300, 400, 420], [10, 10, 100, 120], [-50, -50, 5000, 40]])
    out = det.detect(sample)
    assert [d.box.tolist() for d in out] == [[300, 300, 400, 420], [10, 10, 100, 120], [0, 0, 512, 40]]
    with pytest.raises(ValueError, match="x1 > x0"):
        BoxesDetector([[10, 10, 5, 20]])
    with pytest.raises(ValueError, match="4 finite numbers"):
        BoxesDetector([[1, 2, 3]])
    for score in ({"a": 1}, [1], None, float("nan"), True):  # used to raise TypeError or fail later in JSON
        with pytest.raises(ValueError, match="'score' must be a finite number"):
            BoxesDetector([{"box": [1, 2, 30, 40], "score": score}])
    for box in ([10, 10, 10 + 1e-9, 20], [0, 0, 1e30, 1e30]):  # silent garbage before
        with pytest.raises(ValueError, match="sides >= 2 px"):
            BoxesDetector([box])
    from dsfnet.detect.boxes import check_boxes_in_image

    outside = parse_boxes([[10, 10, 100, 120], [600, 600, 700, 700]])  # the second misses a 512 x 512 image
    with pytest.raises(ValueError, match=r"boxes\[1\]: box .* wholly outside the 512x512 image"):
        check_boxes_in_image(outside, 512, 512)
    check_boxes_in_image(out, 512, 512)


def test_boxes_file(tmp_path):
    p = tmp_path / "BOXES.json"
    p.write_text(json.dumps({"photos/a.jpg": [[1, 2, 30, 40]], "b.png": [{"box": [5, 5, 60, 70], "score": 0.5}]}))
    boxes = load_boxes_file(p)
    assert boxes["b.png"][0].score == 0.5
    det = BoxesDetector.from_file(p)
    assert det.lookup("photos/a.jpg")[0].box.tolist() == [1, 2, 30, 40]
    assert det.lookup("./photos/a.jpg") is not None       # normalised path
    assert det.lookup("/elsewhere/b.png")[0].score == 0.5  # by file name
    assert det.lookup("c.jpg") is None
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold an object"):
        load_boxes_file(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_boxes_file(tmp_path / "bad2.json")
    with pytest.raises(FileNotFoundError):
        load_boxes_file(tmp_path / "missing.json")
    (tmp_path / "deep.json").write_text('{"a.jpg": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(ValueError, match="nested too deeply"):
        load_boxes_file(tmp_path / "deep.json")


@pytest.mark.shared
def test_yuface_calibration_matches_landmark_crops(shared_dir):
    """On 24 ytf68 test faces the calibrated crop overlaps our landmark crop rule much better than 1.5x/no shift."""
    from dsfnet.crop import box_from_landmarks

    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        return ix * iy / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy)

    root = shared_dir / "data" / "ytf68"
    recs = [json.loads(line) for line in open(root / "landmarks.jsonl")]
    recs = [r for r in recs if r["split"] == "test"][::32][:24]
    det = YuFaceDetector()
    cal, raw = [], []
    for r in recs:
        pts = np.asarray(r["pts68"], dtype=np.float64)
        target = box_from_landmarks(pts)
        dets = det.detect(read_image(root / r["image"]))
        best = max(dets, key=lambda d: iou(d.box, target))
        cal.append(iou(box_from_detection(best.box, det.calibration), target))
        raw.append(iou(box_from_detection(best.box, BoxCalibration()), target))
    assert len(cal) == 24
    assert np.mean(cal) > 0.85 and np.mean(cal) > np.mean(raw) + 0.1


@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    ["insightface_samples/inspireface/bulk/view.jpg", "insightface_samples/inspireface/crop/no_face.jpg",
     "compreface_samples/017_0.jpg"],
)
def test_yuface_no_face_in_real_photos_without_faces(shared_dir, name):
    assert YuFaceDetector().detect(read_image(shared_dir / "data" / "wild" / name)) == []
