"""`dsfnet data build` pipeline (dsfnet.data.build) on a tiny synthetic ytf68-style folder with the toy model."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest

from dsfnet.cli.data import add_build_arguments, build_config
from dsfnet.data.build import BuildConfig, Pipeline, build, build_pipeline, format_report
from dsfnet.data.sources import identity_split, read_items
from dsfnet.geometry import decode_vertices, pose_para_to_image


@pytest.fixture(scope="module")
def toy():
    from testing.face_model import toy_face_model

    return toy_face_model()


def _make_source(tmp_path, toy, n_ids=4, per_id=2, size=160):
    import cv2

    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    (src / "training").mkdir(parents=True)
    lines = []
    for i in range(n_ids):
        for k in range(per_id):
            name = f"Person_{i}_{k:02d}"
            pose = np.array([0.05, rng.uniform(-0.5, 0.5), 0.0, 80.0, 80.0, 0.0, 7.5e-4])
            v = decode_vertices(toy.mean, toy.shape_basis, toy.exp_basis, np.zeros(toy.n_shape), np.zeros(toy.n_exp))
            lm = pose_para_to_image(v[toy.keypoints].astype(np.float64), pose, size)[:, :2]
            img = np.full((size, size, 3), 90, np.uint8)
            img[::8] = 200
            cv2.imwrite(str(src / "training" / f"{name}.jpg"), img)
            lines.append({"image": f"training/{name}.jpg", "identity": f"Person_{i}", "split": "training",
                          "pts68": lm.round(2).tolist()})
    lines.append({"image": "test/Person_0_00.jpg", "identity": "Person_0", "split": "test",
                  "pts68": lines[0]["pts68"]})
    (src / "landmarks.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return src


def _config(src, out, **kw) -> BuildConfig:
    """The build configuration of these ``dsfnet data build`` options (through the CLI's parser)."""
    parser = add_build_arguments(argparse.ArgumentParser())
    argv = [str(src), "--out", str(out), "--workers", "0", "--no-teacher", "--views", str(kw.pop("views", 1))]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return build_config(parser.parse_args(argv))


def test_identity_split_is_deterministic_and_near_fraction():
    ids = [f"id{i}" for i in range(2000)]
    split = [identity_split(x, 0.1) for x in ids]
    assert split == [identity_split(x, 0.1) for x in ids]
    assert 0.08 < split.count("val") / len(ids) < 0.12
    assert all(identity_split(x, 0.0) == "train" for x in ids[:50])


def test_read_items_splits_and_errors(tmp_path, toy):
    src = _make_source(tmp_path, toy)
    items = read_items(src)
    assert len(items) == 8 and all(it.landmarks.shape == (68, 2) for it in items)
    assert len(read_items(src, ("training", "test"))) == 9
    assert len(read_items(src, limit=3)) == 3
    with pytest.raises(FileNotFoundError, match="landmarks.jsonl"):
        read_items(tmp_path / "nothing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "landmarks.jsonl").write_text('{"image": "a.jpg", "identity": "x", "pts68": [[1, 2]]}\n')
    with pytest.raises(ValueError, match=r":1: pts68 must be \(68, 2\)"):
        read_items(bad)


def test_build_resume_report_and_split(tmp_path, toy, capsys):
    from dsfnet.data.sample import read_index

    src = _make_source(tmp_path, toy)
    (src / "training" / "Person_3_01.jpg").write_bytes(b"not an image")     # one failure
    out = tmp_path / "out"
    cfg = _config(src, out, val_fraction=0.3)
    assert cfg.views == 1 and cfg.max_yaw == 90.0 and cfg.teacher_dir is None
    pipe = build_pipeline(cfg, face_model=toy)
    assert build(cfg, pipeline=pipe)["samples"] > 0
    report = json.loads((out / "report.json").read_text())
    assert report["faces"] == 8 and report["ok"] == 7 and report["failed"] == 1
    assert report["samples"] == 14                                               # original + 1 profiled view
    assert report["failures"][0]["key"] == "training__Person_3_01"
    train, val = read_index(out / "train.jsonl"), read_index(out / "val.jsonl")
    assert len(train) + len(val) == 14
    assert not ({s.identity for s in train} & {s.identity for s in val})       # identity-disjoint
    assert {s.landmark_convention for s in train + val} == {"2d", "3d"}
    assert sum(report["yaw_hist"]["profiled"]) == 7
    for s in train + val:                                                        # labels reproduce the landmarks
        if s.landmark_convention == "2d":
            v = decode_vertices(toy.mean, toy.shape_basis, toy.exp_basis, s.shape, s.exp)
            lm = pose_para_to_image(v[toy.keypoints].astype(np.float64), s.pose_para, s.height())[:, :2]
            assert np.abs(lm[17:] - s.landmarks[17:]).mean() < 1.0
        else:
            assert s.load_image().shape == (160, 160, 3)
            assert abs(s.pose_para[1]) > 0.1
    text = capsys.readouterr().out
    assert "yaw (deg)" in text and "failed: training__Person_3_01" in text
    # resumable: nothing is rebuilt; a deleted record is rebuilt alone
    (out / "items" / "training__Person_0_00.json").unlink()
    assert build(_config(src, out, val_fraction=0.3), pipeline=pipe)["samples"] > 0
    report2 = json.loads((out / "report.json").read_text())
    assert report2["built_now"] == 1 and report2["samples"] == 14


def test_pluggable_stages_and_format(tmp_path, toy):
    src = _make_source(tmp_path, toy, n_ids=2, per_id=1)
    calls = []

    def fake_fit(image, landmarks, init):
        from dsfnet.data.build import Fit

        calls.append(init)
        return Fit(np.array([0, 0.3, 0, 80, 80, 0, 7.5e-4]), np.zeros(toy.n_shape), np.zeros(toy.n_exp), 0.01, None)

    pipe = Pipeline(face_model=toy, init=lambda img, lm: ("init",), fit=fake_fit, profile=None)
    assert build(_config(src, tmp_path / "o", views=0), pipeline=pipe)["samples"] > 0
    assert calls == [("init",), ("init",)]
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["yaw_hist"]["original"][7] == 2                                 # 17.2 deg -> [15, 30)
    assert "[15, 30)" in format_report(report)


def test_cache_option_writes_training_crops(tmp_path, toy):
    from dsfnet.data.cache import CropCache, cache_folder_name, lite_uv_size

    src = _make_source(tmp_path, toy, n_ids=2, per_id=1)
    cfg = replace(_config(src, tmp_path / "o", views=0, val_fraction=0.0), cache=True)
    assert build(cfg, pipeline=build_pipeline(cfg, face_model=toy))["samples"] > 0
    u = lite_uv_size()  # the default: caches the lite model trains on
    cache = CropCache(tmp_path / "o" / cache_folder_name("train", 128, u))
    rec = cache[0]
    assert len(cache) == 2 and rec["image"].shape == (128, 128, 3) and rec["posmap"].shape == (3, u, u)
    assert rec["shape"].shape == (toy.n_shape,) and np.isfinite(rec["tm"]).all()


def test_profile_stage_spreads_pitch(toy):
    from dsfnet.data.build import make_profile_stage

    class _Fit:  # what the stage reads of a fit record
        shape = np.zeros(toy.n_shape)
        exp = np.zeros(toy.n_exp)
        pose_para = np.array([0.0, 0.3, 0.0, 32.0, 32.0, 0.0, 40.0 / np.ptp(toy.mean[:, 0])])

    image = np.full((64, 64, 3), 128, np.uint8)
    stage = make_profile_stage(toy, views=3, max_yaw_deg=60.0, max_pitch_deg=30.0)
    views = stage(image, _Fit(), np.random.default_rng(0))
    pitches = np.degrees([p[0] for _, p in views])
    yaws = np.degrees([p[1] for _, p in views])
    assert len(views) == 3 and np.all(np.abs(pitches) <= 30.0 + 1e-6) and np.ptp(pitches) > 1.0
    assert np.all(yaws > 17.0)  # same side as the photo's yaw, at least 10 degrees further


def test_convention_3d_fits_fixed_vertices_and_is_recorded(tmp_path, toy):
    from dsfnet.data.sample import read_index

    src = _make_source(tmp_path, toy, n_ids=2, per_id=1)  # landmarks: exact projections of the keypoint vertices
    out = tmp_path / "out3d"
    cfg = _config(src, out, views=0, val_fraction=0.0, convention="3d")
    pipe = build_pipeline(cfg, face_model=toy)
    assert pipe.convention == "3d"
    assert build(cfg, pipeline=pipe)["samples"] > 0
    samples = read_index(out / "train.jsonl")
    assert len(samples) == 2 and {s.landmark_convention for s in samples} == {"3d"}
    for s in samples:  # every point, the jaw included, is reproduced by its fixed vertex
        v = decode_vertices(toy.mean, toy.shape_basis, toy.exp_basis, s.shape, s.exp)
        lm = pose_para_to_image(v[toy.keypoints].astype(np.float64), s.pose_para, s.height())[:, :2]
        assert np.abs(lm - s.landmarks).mean() < 0.5
    with pytest.raises(SystemExit):
        _config(src, out, convention="4d")
    with pytest.raises(ValueError, match="--convention"):
        BuildConfig(src, out, convention="4d")
