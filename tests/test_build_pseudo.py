"""`dsfnet data build --pseudo`: a folder of bare images labelled by detector + teacher (fake stages, toy model)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dsfnet.cli.data import add_build_arguments, build_config
from dsfnet.data.build import (
    BuildConfig,
    Fit,
    Pipeline,
    build,
    build_pipeline,
    make_detect_stage,
    make_profile_stage,
    make_teacher_label,
)
from dsfnet.data.sources import pixel_identity, read_image_items
from dsfnet.teacher import roi_from_calibrated_detection

SIZE = 160


@pytest.fixture(scope="module")
def toy():
    from testing.face_model import toy_face_model

    return toy_face_model()


def _image(seed: int, dark: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dark:
        return np.zeros((SIZE, SIZE, 3), np.uint8)
    img = np.full((SIZE, SIZE, 3), 60 + 20 * seed, np.uint8)
    img[40:120, 50:110] = rng.integers(100, 255, 3, dtype=np.uint8)
    return img


def _make_folder(tmp_path) -> Path:
    """Five images + one unreadable file; ``b.png`` and ``sub/b_copy.png`` have the same pixels, not the same bytes."""
    import cv2

    src = tmp_path / "faces"
    (src / "sub").mkdir(parents=True)
    for name, img in (("a.png", _image(1)), ("b.png", _image(2)), ("c.png", _image(3)), ("dark.png", _image(0, True))):
        cv2.imwrite(str(src / name), img[:, :, ::-1])
    cv2.imwrite(str(src / "sub" / "b_copy.png"), _image(2)[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    (src / "broken.jpg").write_bytes(b"not an image")
    (src / "notes.txt").write_text("not an image either")
    return src


def _pose(toy, yaw: float) -> np.ndarray:
    s = 70.0 / np.ptp(toy.mean[:, 0])
    return np.array([0.05, yaw, 0.0, 0.0, 0.0, 0.0, s])


def _fake_stages(toy):
    """Detector: one box unless the image is black; label: a frontal-ish toy face whose yaw follows the brightness."""
    from dsfnet.detect import Detection

    calls = {"detect": 0, "label": []}

    def detect(image):
        calls["detect"] += 1
        return None if image.max() < 10 else Detection(np.array([50.0, 40.0, 110.0, 120.0]), 0.9)

    def label(image, box):
        calls["label"].append(np.asarray(box).tolist())
        pose = _pose(toy, yaw=float(image.mean()) / 255.0 - 0.2)
        # centre the face in the image: translation so that the mean vertex lands at (80, 80)
        pose[3], pose[4] = SIZE / 2 - pose[6] * toy.mean[:, 0].mean(), SIZE / 2 - pose[6] * toy.mean[:, 1].mean()
        return Fit(pose, np.zeros(toy.n_shape), np.zeros(toy.n_exp), None, None, {"teacher_pass_nme": 0.01})

    return detect, label, calls


def _config(src, out, *extra) -> BuildConfig:
    parser = add_build_arguments(argparse.ArgumentParser())
    return build_config(parser.parse_args([str(src), "--out", str(out), "--workers", "0", *extra]))


def test_pixel_identity_and_image_items(tmp_path):
    src = _make_folder(tmp_path)
    (src / "out").mkdir()
    import cv2

    cv2.imwrite(str(src / "out" / "x.png"), _image(5)[:, :, ::-1])  # an output folder inside the source: skipped
    items = read_image_items(src, val_fraction=0.5, exclude=(src / "out",))
    keys = [it.key for it in items]
    assert keys == ["a", "b", "broken", "c", "dark", "sub__b_copy"]
    by = {it.key: it for it in items}
    assert all(it.landmarks is None and it.source == "faces" for it in items)
    assert by["b"].identity == by["sub__b_copy"].identity and by["b"].split == by["sub__b_copy"].split
    assert by["a"].identity != by["b"].identity and by["a"].identity.startswith("faces/")
    assert by["broken"].identity == "faces/unreadable/broken"
    assert pixel_identity(_image(2)) == by["b"].identity.split("/")[1]
    assert read_image_items(src, limit=2, source_name="fm")[1].identity.startswith("fm/")
    # names that only differ by suffix keep the suffix in the key
    cv2.imwrite(str(src / "a.jpg"), _image(1)[:, :, ::-1])
    assert {"a_png", "a_jpg"} <= {it.key for it in read_image_items(src, exclude=(src / "out",))}


def test_pseudo_build_records_failures_profiles_and_caches(tmp_path, toy, capsys):
    from dsfnet.data.build import project_keypoints
    from dsfnet.data.cache import CropCache
    from dsfnet.data.sample import read_index

    src = _make_folder(tmp_path)
    out = tmp_path / "out"
    detect, label, calls = _fake_stages(toy)
    pipe = Pipeline(face_model=toy, detect=detect, label=label, profile=make_profile_stage(toy, 1, max_pitch_deg=20))
    cfg = _config(src, out, "--pseudo", "--views", "1", "--val-fraction", "0.4", "--cache", "--crop-size", "64",
                  "--uv-size", "32")
    assert build(cfg, pipeline=pipe)["samples"] > 0
    report = json.loads((out / "report.json").read_text())
    assert report["faces"] == 6 and report["ok"] == 4 and report["failed"] == 2
    assert report["samples"] == 8 and report["pseudo_labelled"] == 4 and report["fit_nme_mean"] is None
    assert abs(report["teacher_pass_nme_mean"] - 0.01) < 1e-12
    errors = {f["key"]: f["error"] for f in report["failures"]}
    assert errors["dark"] == "ValueError: no face detected" and errors["broken"].startswith("ImageReadError")
    assert calls["detect"] == 5 and calls["label"][0] == [50.0, 40.0, 110.0, 120.0]
    rec = json.loads((out / "items" / "a.json").read_text())
    assert rec["label"] == "teacher" and rec["fit_nme"] is None and rec["teacher_nme"] is None
    assert "no landmark fit" in rec["label_note"] and rec["detection"] == {"box": [50.0, 40.0, 110.0, 120.0],
                                                                          "score": 0.9}
    assert [s["source"] for s in rec["samples"]] == ["faces", "faces/profiled"]
    dup = [json.loads((out / "items" / f"{k}.json").read_text()) for k in ("b", "sub__b_copy")]
    assert dup[0]["identity"] == dup[1]["identity"] and dup[0]["split"] == dup[1]["split"]
    # the samples' landmarks are the keypoint vertices projected with the label (3D convention)
    samples = read_index(out / "train.jsonl") + read_index(out / "val.jsonl")
    assert len(samples) == 8 and {s.landmark_convention for s in samples} == {"3d"}
    for s in samples:
        lm = project_keypoints(toy, s.shape, s.exp, s.pose_para, s.height())
        assert np.abs(lm - s.landmarks).max() < 1e-3
    assert len({s.identity for s in samples}) == 3
    caches = [CropCache(out / f"cache_{k}_s64_u32") for k in ("train", "val") if (out / f"cache_{k}_s64_u32").is_dir()]
    assert sum(len(c) for c in caches) == 8
    assert "pseudo-labelled by the teacher alone" in capsys.readouterr().out
    # resumable like the ytf68 path
    assert build(cfg, pipeline=pipe)["samples"] > 0
    assert json.loads((out / "report.json").read_text())["built_now"] == 0


def test_pseudo_records_match_the_ytf68_format(tmp_path, toy):
    """Same item-record and index-line keys as the ytf68 path (plus the pseudo-label fields)."""
    from test_build import _make_source

    ytf = _make_source(tmp_path, toy, n_ids=1, per_id=1)
    cfg = _config(ytf, tmp_path / "y", "--no-teacher", "--val-fraction", "0")
    assert cfg.views == 1 and cfg.max_yaw == 90.0 and cfg.teacher_dir is None
    assert build(cfg, pipeline=build_pipeline(cfg, face_model=toy))["samples"] > 0
    detect, label, _ = _fake_stages(toy)
    src = _make_folder(tmp_path)
    pipe = Pipeline(face_model=toy, detect=detect, label=label, profile=make_profile_stage(toy, 1))
    assert build(_config(src, tmp_path / "p", "--pseudo", "--val-fraction", "0"), pipeline=pipe)["samples"] > 0
    y_rec = json.loads(next((tmp_path / "y" / "items").glob("*.json")).read_text())
    p_rec = json.loads((tmp_path / "p" / "items" / "a.json").read_text())
    assert set(p_rec) - set(y_rec) == {"label", "label_note", "detection", "teacher_pass_nme"}
    assert set(y_rec) <= set(p_rec)
    assert [set(s) for s in p_rec["samples"]] == [set(s) for s in y_rec["samples"]]
    y_line = json.loads((tmp_path / "y" / "train.jsonl").read_text().splitlines()[0])
    p_line = json.loads((tmp_path / "p" / "train.jsonl").read_text().splitlines()[0])
    assert set(p_line) == set(y_line)


def test_pseudo_needs_a_teacher_and_ytf68_needs_landmarks(tmp_path, monkeypatch):
    monkeypatch.delenv("DSFNET_TEACHER_DIR", raising=False)
    src = _make_folder(tmp_path)
    with pytest.raises(ValueError, match="--pseudo labels with the teacher alone"):
        build(_config(src, tmp_path / "o", "--pseudo"))
    with pytest.raises(FileNotFoundError, match="use --pseudo"):
        build(_config(src, tmp_path / "o"))
    with pytest.raises(ValueError, match="teacher"):
        build_pipeline(BuildConfig(src, tmp_path / "o", pseudo=True, views=0), face_model=object())


def test_detect_stage_keeps_the_largest_face():
    from dsfnet.detect import BoxesDetector

    det = BoxesDetector([{"box": [0, 0, 20, 20], "score": 0.99}, {"box": [30, 30, 90, 100], "score": 0.6}])
    best = make_detect_stage(det)(np.zeros((120, 120, 3), np.uint8))
    assert best.box.tolist() == [30.0, 30.0, 90.0, 100.0] and best.score == 0.6
    assert make_detect_stage(BoxesDetector([]))(np.zeros((20, 20, 3), np.uint8)) is None


def test_teacher_label_runs_two_passes_from_the_detector_box():
    from dsfnet.crop import BoxCalibration
    from dsfnet.teacher import roi_from_detection, roi_from_landmarks

    box = np.array([40.0, 50.0, 100.0, 130.0])
    assert np.allclose(roi_from_calibrated_detection(box), roi_from_detection(box))
    roi = roi_from_calibrated_detection(box, BoxCalibration(1.5, 0.0, 0.1))
    assert np.allclose(roi[2] - roi[0], np.sqrt(2) * 70.0) and np.allclose(roi[3] - roi[1], roi[2] - roi[0])
    assert np.allclose([(roi[0] + roi[2]) / 2, (roi[1] + roi[3]) / 2], [70.0, 90.0 + 7.0])

    rois = []
    lm1 = np.random.default_rng(0).uniform(50, 110, (68, 3))

    class FakeTeacher:
        def predict(self, image, roi_box):
            rois.append(np.asarray(roi_box))
            lm = lm1 if len(rois) == 1 else lm1 + 1.0
            return SimpleNamespace(pose_para=np.arange(7.0) + len(rois), shape=np.ones(40) * len(rois),
                                   exp=np.zeros(10), landmarks=lm, roi_box=np.asarray(roi_box))

    cal = BoxCalibration(1.359, 0.013, 0.162)
    fit = make_teacher_label(None, teacher=FakeTeacher(), calibration=cal)(np.zeros((160, 160, 3), np.uint8), box)
    assert len(rois) == 2
    assert np.allclose(rois[0], roi_from_calibrated_detection(box, cal))
    assert np.allclose(rois[1], roi_from_landmarks(lm1[:, :2]))
    assert np.allclose(fit.pose_para, np.arange(7.0) + 2) and np.allclose(fit.shape, 2.0)  # the second pass
    assert fit.nme is None and fit.teacher_nme is None and fit.extra["teacher_pass_nme"] > 0
    assert np.allclose(fit.extra["teacher_roi"], rois[1], atol=0.01)


def test_real_detector_and_teacher_on_aflw2000_dev(tmp_path, shared_dir):
    """The default pseudo pipeline (yuface + 3DDFA_V2) on 3 AFLW2000-3D images: labels near the ground truth."""
    from dsfnet.data.fitting import landmark_nme
    from dsfnet.data.sample import read_index

    data = shared_dir / "data"
    if not (data / "teacher_3ddfa_v2" / "mb05_120x120.pth").is_file() or not (data / "aflw2000_dev").is_dir():
        pytest.skip("needs shared/data/teacher_3ddfa_v2 and shared/data/aflw2000_dev")
    gt = np.load(data / "aflw2000_dev" / "gt.npz")
    src = tmp_path / "aflw"
    src.mkdir()
    names = [str(n) for n in gt["names"][:3]]
    for n in names:
        (src / n).write_bytes((data / "aflw2000_dev" / n).read_bytes())
    cfg = _config(src, tmp_path / "o", "--pseudo", "--views", "0", "--teacher-dir",
                  str(data / "teacher_3ddfa_v2"), "--val-fraction", "0")
    assert build(cfg)["samples"] > 0
    samples = {Path(s.image).name.split("_v0")[0]: s for s in read_index(tmp_path / "o" / "train.jsonl")}
    assert len(samples) == 3
    for n, pts in zip(gt["names"][:3], gt["pts68"][:3]):
        s = samples[Path(str(n)).stem]
        assert s.source == "aflw" and s.landmark_convention == "3d"
        assert landmark_nme(s.landmarks, pts[:2].T) < 0.06
