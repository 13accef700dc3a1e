"""`dsfnet predict` / `dsfnet export-onnx` contract, with a fake network (the toy face, no weights needed)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from dsfnet.assets import sample_image_path
from dsfnet.cli.main import main
from dsfnet.io import read_image, read_jsonl
from testing.aligner import toy_aligner


def check_record(rec: dict, *, frame=None) -> None:
    """Hand-written schema check of one results.jsonl line."""
    assert set(rec) == {"image", "frame", "width", "height", "faces"}
    assert isinstance(rec["image"], str) and rec["frame"] == frame
    assert isinstance(rec["width"], int) and isinstance(rec["height"], int) and rec["width"] > 0 and rec["height"] > 0
    assert isinstance(rec["faces"], list)
    for f in rec["faces"]:
        assert set(f) == {"bbox", "score", "landmarks_2d", "landmarks_3d", "visibility", "self_visibility",
                          "external_visibility", "pose", "mesh"}
        assert len(f["bbox"]) == 4 and f["bbox"][0] < f["bbox"][2] and f["bbox"][1] < f["bbox"][3]
        assert 0.0 <= f["score"] <= 1.0
        assert len(f["landmarks_2d"]) == 68 and all(len(p) == 2 for p in f["landmarks_2d"])
        assert len(f["landmarks_3d"]) == 68 and all(len(p) == 3 for p in f["landmarks_3d"])
        assert len(f["visibility"]) == 68 and all(0.0 <= v <= 1.0 for v in f["visibility"])
        pose = f["pose"]
        assert set(pose) == {"yaw", "pitch", "roll", "rotation"}
        assert all(-180.0 <= pose[k] <= 180.0 for k in ("yaw", "pitch", "roll"))
        r = np.array(pose["rotation"])
        assert r.shape == (3, 3) and np.allclose(r @ r.T, np.eye(3), atol=1e-5)
        assert f["mesh"] is None or isinstance(f["mesh"], str)
        numbers = [*f["bbox"], f["score"], *np.ravel(f["landmarks_3d"]), *f["visibility"]]
        assert all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers)


@pytest.fixture
def fake(monkeypatch):
    """Replace the model with the toy face (detector: yuface)."""
    aligner, _ = toy_aligner(detector="yuface")
    monkeypatch.setattr("dsfnet.cli.predict.build_aligner", lambda args: aligner)
    return aligner


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".*")]


def test_sample_ok(fake, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", "--sample", "-o", str(out), "--save-mesh", "obj", "--draw"]) == 0
    recs = _lines(out / "results.jsonl")
    assert len(recs) == 1
    check_record(recs[0])
    assert recs[0]["image"] == str(sample_image_path()) and (recs[0]["width"], recs[0]["height"]) == (512, 512)
    face = recs[0]["faces"][0]
    assert len(recs[0]["faces"]) == 1 and face["mesh"] == "meshes/sample_0.obj"
    assert face["pose"]["yaw"] == pytest.approx(20.0)
    text = (out / face["mesh"]).read_text()
    assert text.startswith("# dsfnet mesh: image pixels, x right, y up")
    n_v = sum(1 for line in text.splitlines() if line.startswith("v "))
    assert n_v == len(fake.codec.decode(fake.runner.face_uvm))
    # the mesh is the face's vertices with y flipped up: y_mesh = H - y_image
    v0 = [float(x) for x in text.splitlines()[1].split()[1:4]]
    bbox = face["bbox"]
    assert bbox[0] - 50 < v0[0] < bbox[2] + 50 and 512 - bbox[3] - 80 < v0[1] < 512 - bbox[1] + 80
    overlay = read_image(out / "sample_overlay.jpg")
    assert overlay.shape == (512, 512, 3)
    assert _temp_files(out) == []


def test_bad_inputs_continue_and_fail_the_exit_code(fake, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    img = read_image(sample_image_path())
    cv2.imwrite(str(src / "a.jpg"), img[:, :, ::-1])
    cv2.imwrite(str(src / "sub" / "b.png"), np.full((64, 80, 3), 90, np.uint8))  # no face: an empty faces list
    (src / "broken.jpg").write_text("not an image")
    (src / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    code = main(["predict", str(src), str(tmp_path / "missing.jpg"), "-o", str(out), "--save-mesh", "ply"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    bad = [line for line in err if "broken.jpg" in line or "empty.png" in line or "missing.jpg" in line]
    assert len(bad) == 3 and all(line.startswith("dsfnet predict: ") for line in bad)
    assert any("not an image" in line for line in bad) and any("empty" in line for line in bad)
    lines = _lines(out / "results.jsonl")
    failures = {Path(r["image"]).name: r["error"] for r in lines if "error" in r}  # failed inputs get a line too
    assert set(failures) == {"broken.jpg", "empty.png", "missing.jpg"} and "not an image" in failures["broken.jpg"]
    assert all(r["frame"] is None and set(r) == {"image", "frame", "error"} for r in lines if "error" in r)
    recs = {Path(r["image"]).name: r for r in lines if "error" not in r}
    assert set(recs) == {"a.jpg", "b.png"}
    for r in recs.values():
        check_record(r)
    assert recs["a.jpg"]["image"] == str(src / "a.jpg")  # path as found under the given folder
    assert len(recs["a.jpg"]["faces"]) == 1 and recs["b.png"]["faces"] == []
    assert (out / "meshes" / "a_0.ply").read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    assert _temp_files(out) == []


def test_boxes_file_sets_faces_and_order(fake, tmp_path):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.full((200, 300, 3), 50, np.uint8))
    boxes = [[150, 20, 250, 140], [10, 30, 90, 130]]
    (tmp_path / "BOXES.json").write_text(json.dumps({"x.png": boxes}))
    out = tmp_path / "out"
    assert main(["predict", str(img), "-o", str(out), "--boxes", str(tmp_path / "BOXES.json")]) == 0
    rec = _lines(out / "results.jsonl")[0]
    check_record(rec)
    assert [f["bbox"] for f in rec["faces"]] == boxes and [f["score"] for f in rec["faces"]] == [1.0, 1.0]


def test_video_frames_tracking_and_annotated_video(fake, tmp_path):
    frame = cv2.resize(cv2.imread(str(sample_image_path())), (256, 256))
    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (256, 256))
    for i in range(4):
        vw.write(np.roll(frame, 2 * i, axis=1))
    vw.release()
    out = tmp_path / "out"
    assert main(["predict", str(path), "-o", str(out), "--draw"]) == 0
    recs = _lines(out / "results.jsonl")
    assert [r["frame"] for r in recs] == [0, 1, 2, 3]
    for i, r in enumerate(recs):
        check_record(r, frame=i)
        assert r["image"] == str(path) and len(r["faces"]) == 1
    cap = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()
    assert main(["predict", str(path), "-o", str(tmp_path / "o2"), "--max-frames", "2", "--no-smooth"]) == 0
    assert len(_lines(tmp_path / "o2" / "results.jsonl")) == 2


def test_interrupt_keeps_the_records_so_far_and_resume_finishes(fake, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = fake.predict

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(fake, "predict", flaky)
    img = read_image(sample_image_path())
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), img[:, :, ::-1])
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "a.png"), str(tmp_path / "b.png"), str(tmp_path / "c.png"), "-o", str(out),
            "--threads", "1"]  # the failing call is the second one: sequential on purpose
    assert main(argv) == 130
    assert [r["image"] for r in read_jsonl(out / "results.jsonl")] == [str(tmp_path / "a.png")]  # durable
    assert _temp_files(out) == [] and "rerun with --resume" in capsys.readouterr().err
    assert main(argv) == 2  # a previous run is there: refused without --resume / --overwrite
    assert "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    assert [Path(r["image"]).name for r in read_jsonl(out / "results.jsonl")] == ["a.png", "b.png", "c.png"]
    assert "1 already done" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0 and len(list(read_jsonl(out / "results.jsonl"))) == 3


def test_usage_errors(tmp_path, capsys, monkeypatch):
    assert main(["predict", "-o", str(tmp_path / "o")]) == 2
    assert "no input" in capsys.readouterr().err
    # the real model without weights: one clear line, exit 2, nothing written
    monkeypatch.delenv("DSFNET_WEIGHTS", raising=False)
    monkeypatch.setattr("dsfnet.model.weights.default_weights_dir", lambda: tmp_path / "none")
    assert main(["predict", "--sample", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no torch weights" in err and "--weights" in err
    assert not (tmp_path / "o" / "results.jsonl").exists()
    (tmp_path / "bad.json").write_text("[]")
    assert main(["predict", "--sample", "-o", str(tmp_path / "o"), "--boxes", str(tmp_path / "bad.json")]) == 2
    assert "--boxes" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")  # an output under a file: refused before the model loads, nothing made
    assert main(["predict", "--sample", "-o", str(tmp_path / "afile" / "sub" / "o")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["predict", "--sample", "-o", str(tmp_path / "afile")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    for bad in ("0", "-3", "x"):  # --max-frames 0 used to end in "no frame could be decoded"
        with pytest.raises(SystemExit) as e:
            main(["predict", "--sample", "-o", str(tmp_path / "o"), "--max-frames", bad])
        assert e.value.code == 2 and "integer >= 1" in capsys.readouterr().err


def test_export_onnx_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DSFNET_WEIGHTS", raising=False)
    monkeypatch.setattr("dsfnet.model.weights.default_weights_dir", lambda: tmp_path / "none")
    assert main(["export-onnx", "--config", "lite", "-o", str(tmp_path / "lite-onnx")]) == 2
    err = capsys.readouterr().err
    assert "no torch weights" in err and "--weights" in err
    assert os.listdir(tmp_path) == []
    assert main(["export-onnx", "-o", str(tmp_path / "model.onnx")]) == 2  # the single-file form: same check
    assert "no torch weights" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ durable outputs, locking, progress (#19)

def _three_images(tmp_path: Path) -> list[str]:
    img = read_image(sample_image_path())
    names = []
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), img[:, :, ::-1])
        names.append(str(tmp_path / name))
    return names


def test_sigterm_ends_cleanly_with_the_records_so_far(fake, tmp_path, monkeypatch, capsys):
    import signal

    real, calls = fake.predict, {"n": 0}

    def terminated_on_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            signal.raise_signal(signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(fake, "predict", terminated_on_second)
    out = tmp_path / "out"
    assert main(["predict", *_three_images(tmp_path), "-o", str(out), "--threads", "1"]) == 143
    assert [Path(r["image"]).name for r in _lines(out / "results.jsonl")] == ["a.png"]
    assert "terminated" in capsys.readouterr().err and _temp_files(out) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the run's only


def test_a_folder_in_use_by_another_run_is_refused(fake, tmp_path, capsys):
    from dsfnet.io.output_folder import OutputFolder

    out = tmp_path / "out"
    other = OutputFolder(out)
    other.open()  # another run holds the lock
    try:
        assert main(["predict", "--sample", "-o", str(out), "--overwrite"]) == 2
        assert "in use by another dsfnet run" in capsys.readouterr().err
    finally:
        other.close()
    assert main(["predict", "--sample", "-o", str(out), "--overwrite"]) == 0
    assert _temp_files(out) == []


def test_a_cut_last_line_is_dropped_on_resume(fake, tmp_path):
    out = tmp_path / "out"
    paths = _three_images(tmp_path)
    assert main(["predict", paths[0], "-o", str(out)]) == 0
    with open(out / "results.jsonl", "a") as f:
        f.write('{"image": "' + paths[1] + '", "frame": nu')  # a kill in the middle of a line
    assert main(["predict", *paths, "-o", str(out), "--resume"]) == 0
    assert [Path(r["image"]).name for r in _lines(out / "results.jsonl")] == ["a.png", "b.png", "c.png"]


def test_non_utf8_file_names_are_written_as_valid_text(fake, tmp_path):
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    png = cv2.imencode(".png", read_image(sample_image_path())[:, :, ::-1])[1].tobytes()
    try:
        with open(os.fsencode(tmp_path) + b"/caf\xe9.png", "wb") as f:
            f.write(png)
    except OSError:
        pytest.skip("the file system refuses non-UTF-8 names")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / name), "-o", str(out)]) == 0
    raw = (out / "results.jsonl").read_bytes()
    raw.decode("utf-8")  # valid UTF-8, no lone surrogates
    assert json.loads(raw)["image"].endswith("caf\\xe9.png")


def test_progress_lines_when_not_a_terminal_and_quiet(fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("dsfnet.cli.predict.PROGRESS_EVERY", 0.0)
    paths = _three_images(tmp_path)
    assert main(["predict", *paths, "-o", str(tmp_path / "o1")]) == 0
    err = capsys.readouterr().err
    assert "dsfnet predict: 3/3 inputs, 3 faces, 0 failed" in err and "3 image(s)" in err
    assert main(["predict", *paths, "-o", str(tmp_path / "o2"), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dsfnet predict: 3 image(s)")  # only the summary


def test_folder_walks_skip_loops_and_dangling_links_and_say_so(fake, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    cv2.imwrite(str(src / "sub" / "a.png"), read_image(sample_image_path())[:, :, ::-1])
    (src / "sub" / "loop").symlink_to(src)  # a symbolic-link loop
    (src / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")  # a link to nothing
    out = tmp_path / "out"
    assert main(["predict", str(src), str(src / "gone.jpg"), "-o", str(out)]) == 1  # the named dangling link fails
    err = capsys.readouterr().err
    assert "symbolic-link loop" in err and "a symbolic link to nothing" in err
    assert "unusable path(s) in folders skipped" in err
    assert [Path(r["image"]).name for r in _lines(out / "results.jsonl") if "error" not in r] == ["a.png"]


def test_meshes_carry_photo_colours_and_depth_pncc_renders(fake, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", "--sample", "-o", str(out), "--save-mesh", "ply", "--render", "depth", "pncc"]) == 0
    head = (out / "meshes" / "sample_0.ply").read_bytes()[:400].decode("ascii", "replace")
    assert "property uchar red" in head  # vertex colours sampled from the photo
    depth, pncc = read_image(out / "sample_depth.png"), read_image(out / "sample_pncc.png")
    face = depth[..., 0] > 0
    assert depth.shape == pncc.shape == (512, 512, 3) and 0.005 < face.mean() < 0.5
    assert (pncc[face].max(0) > 200).all() and (pncc[~face] == 0).all()  # each axis spans the face
    assert main(["predict", "--sample", "-o", str(tmp_path / "plain"), "--save-mesh", "ply", "--no-mesh-colors"]) == 0
    assert b"red" not in (tmp_path / "plain" / "meshes" / "sample_0.ply").read_bytes()[:400]


def test_vertex_colors_are_bilinear_and_clamped():
    from dsfnet.inference.batch import vertex_colors

    img = np.zeros((4, 4, 3), np.uint8)
    img[:, 1] = 100
    img[:, 2] = 200
    got = vertex_colors(img, np.array([[1.5, 1.0, 0.0], [-5.0, 9.0, 0.0], [3.0, 3.0, 0.0]]))
    assert got[:, 0].tolist() == [150, 0, 0]


def test_threads_keep_the_input_order_and_the_results(fake, tmp_path):
    paths = _three_images(tmp_path) * 3  # 9 inputs
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["predict", *paths, "-o", str(one), "--threads", "1", "--save-mesh", "ply"]) == 0
    assert main(["predict", *paths, "-o", str(two), "--threads", "2", "--save-mesh", "ply"]) == 0
    assert (one / "results.jsonl").read_bytes() == (two / "results.jsonl").read_bytes()
