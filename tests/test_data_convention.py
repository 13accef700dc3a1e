"""Annotation placement corrections (dsfnet.data.convention): frame, apply, estimate, build option."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dsfnet.data.convention import (
    AnnotationCorrection,
    estimate_correction,
    face_frame,
    from_face_frame,
    inner_nme,
    to_face_frame,
)


def _face(rng=None, roll=0.0, size=100.0, centre=(200.0, 150.0)):
    """A rough 68-point face (image px, y down): jaw arc, brows, nose, eyes, mouth; optional roll (rad)."""
    t = np.linspace(-1.2, 1.2, 17)
    jaw = np.stack([0.5 * np.sin(t), 0.1 + 0.5 * np.cos(t) * 0.8], 1)
    brows = np.stack([np.r_[np.linspace(-0.4, -0.1, 5), np.linspace(0.1, 0.4, 5)], np.full(10, -0.3)], 1)
    nose = np.stack([np.r_[np.zeros(4), np.linspace(-0.1, 0.1, 5)], np.r_[np.linspace(-0.2, 0.0, 4), np.full(5, 0.05)]], 1)
    ring = np.linspace(0, 2 * np.pi, 7)[:-1]
    eye = np.stack([0.08 * np.cos(ring), 0.03 * np.sin(ring)], 1)
    eyes = np.r_[eye + [-0.2, -0.15], eye + [0.2, -0.15]]
    ring20 = np.linspace(0, 2 * np.pi, 21)[:-1]
    mouth = np.stack([0.2 * np.cos(ring20), 0.25 + 0.06 * np.sin(ring20)], 1)
    p = np.r_[jaw, brows, nose, eyes, mouth]
    assert p.shape == (68, 2)
    if rng is not None:
        p = p + rng.normal(0, 0.01, p.shape)
    c, s = np.cos(roll), np.sin(roll)
    return np.asarray(centre) + size * p @ np.array([[c, s], [-s, c]])


def test_convention_face_frame_axes_unit_and_round_trip():
    p = _face(roll=np.radians(20))
    origin, axes, unit = face_frame(p)
    assert np.allclose(origin, p[17:].mean(0))
    # x axis follows the eye line (20 deg of roll, y down: clockwise on screen), y axis 90 deg further
    assert np.allclose(axes[:, 0], [np.cos(np.radians(20)), np.sin(np.radians(20))], atol=1e-9)
    assert np.allclose(axes[:, 1], [-np.sin(np.radians(20)), np.cos(np.radians(20))], atol=1e-9)
    wh = p.max(0) - p.min(0)
    assert unit == pytest.approx(np.sqrt(wh[0] * wh[1]))
    u = to_face_frame(p, (origin, axes, unit))
    assert np.allclose(from_face_frame(u, (origin, axes, unit)), p)
    # batched frames give the same numbers
    o2, a2, u2 = face_frame(np.stack([p, p + 5.0]))
    assert np.allclose(o2[1], origin + 5.0) and np.allclose(a2[1], axes) and u2[1] == pytest.approx(unit)


def test_apply_moves_points_in_face_units_and_turns_with_roll():
    corr = AnnotationCorrection(scale=0.97, shift=(-0.02, -0.01))
    for roll in (0.0, np.radians(-35)):
        p = _face(roll=roll)
        q = corr.apply(p)
        origin, axes, unit = face_frame(p)
        # the inner centroid moves by the shift, expressed in the face's own axes and size
        assert np.allclose(q[17:].mean(0) - origin, unit * axes @ np.array([-0.02, -0.01]), atol=1e-9)
        # distances to the centroid shrink by the scale
        d0 = np.linalg.norm(p - origin, axis=1)
        d1 = np.linalg.norm(q - q[17:].mean(0), axis=1)
        assert np.allclose(d1, 0.97 * d0)
    assert np.allclose(AnnotationCorrection().apply(p), p)


def test_estimate_recovers_a_known_correction_on_noisy_faces():
    rng = np.random.default_rng(0)
    truth = AnnotationCorrection(scale=0.97, shift=(-0.018, -0.016))
    ann = np.stack([_face(rng, roll=rng.uniform(-0.3, 0.3), size=rng.uniform(60, 200),
                          centre=rng.uniform(100, 300, 2)) for _ in range(300)])
    ref = truth.apply(ann) + rng.normal(0, 0.5, ann.shape)          # reference = corrected + pixel noise
    est = estimate_correction(ann, ref, note="synthetic")
    assert est.scale == pytest.approx(0.97, abs=2e-3)
    assert np.allclose(est.shift, truth.shift, atol=1e-3)
    assert inner_nme(est.apply(ann), ref) < 0.5 * inner_nme(ann, ref)
    with pytest.raises(ValueError):
        estimate_correction(ann[:, :60], ref[:, :60])
    with pytest.raises(ValueError):
        estimate_correction(ann[:0], ref[:0])


def test_json_round_trip_and_bad_values(tmp_path):
    c = AnnotationCorrection(0.98, (0.01, -0.02), note="x")
    c.save(tmp_path / "c.json")
    back = AnnotationCorrection.load(tmp_path / "c.json")
    assert back == c and back.note == "x"
    for bad in (dict(scale=0.0), dict(scale=float("nan")), dict(shift=(0.9, 0.0)), dict(shift=(0.1,))):
        with pytest.raises(ValueError):
            AnnotationCorrection(**bad)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError):
        AnnotationCorrection.load(tmp_path / "bad.json")
    with pytest.raises(ValueError):
        AnnotationCorrection.from_json({"scale": 1.0})
    with pytest.raises(FileNotFoundError):
        AnnotationCorrection.load(tmp_path / "missing.json")


def test_build_applies_records_and_guards_the_correction(tmp_path):
    """`dsfnet data build --annotation-correction`: the samples' 2D landmarks are the corrected annotations, the file
    is kept in OUT, and a resume with another (or no) correction is refused."""
    from tests.test_build import _config, _make_source

    from dsfnet.data.build import Fit, Pipeline, build
    from dsfnet.data.sample import read_index
    from testing.face_model import toy_face_model

    toy = toy_face_model()
    src = _make_source(tmp_path, toy, n_ids=2, per_id=1)
    seen = []

    def fake_fit(image, landmarks, init):
        seen.append(np.array(landmarks))
        return Fit(np.array([0, 0.3, 0, 80, 80, 0, 7.5e-4]), np.zeros(toy.n_shape), np.zeros(toy.n_exp), 0.01, None)

    corr = AnnotationCorrection(0.95, (0.02, 0.0))
    corr.save(tmp_path / "corr.json")
    pipe = Pipeline(face_model=toy, fit=fake_fit)
    out = tmp_path / "o"
    assert build(_config(src, out, views=0, val_fraction=0.0, annotation_correction=tmp_path / "corr.json"),
                 pipeline=pipe)["samples"] > 0
    raw = [np.asarray(json.loads(line)["pts68"]) for line in (src / "landmarks.jsonl").read_text().splitlines()][:2]
    assert all(np.allclose(s, corr.apply(r)) for s, r in zip(seen, raw))
    assert all(np.allclose(s.landmarks, corr.apply(r)) for s, r in zip(read_index(out / "train.jsonl"), raw))
    assert AnnotationCorrection.load(out / "annotation_correction.json") == corr
    assert json.loads((out / "report.json").read_text())["annotation_correction"]["scale"] == pytest.approx(0.95)
    with pytest.raises(ValueError, match="annotation correction"):
        build(_config(src, out, views=0, val_fraction=0.0), pipeline=pipe)
    AnnotationCorrection(0.9, (0.0, 0.0)).save(tmp_path / "other.json")
    with pytest.raises(ValueError, match="another annotation correction"):
        build(_config(src, out, views=0, val_fraction=0.0, annotation_correction=tmp_path / "other.json"), pipeline=pipe)
