"""Atomic writers (JSONL, OBJ, PLY ascii/binary, images), overlays and video frames."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from dsfnet.io import (
    AtomicFile,
    DurableJsonl,
    VideoReadError,
    iter_video_frames,
    read_image,
    read_jsonl,
    write_image,
    write_mesh,
    write_obj,
    write_ply,
)
from dsfnet.io.draw import blend_layer, draw_box, draw_landmarks, draw_points, draw_pose_axes, draw_wireframe
from dsfnet.io.video import VideoWriterRGB

VERTS = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.25], [0.0, 2.0, -1.0], [1.0, 1.0, 3.0]])
TRIS = np.array([[0, 1, 2], [1, 3, 2]])
COLS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], dtype=np.uint8)


def parse_obj(path):
    v, f = [], []
    for line in open(path):
        parts = line.split()
        if parts and parts[0] == "v":
            v.append([float(x) for x in parts[1:]])
        elif parts and parts[0] == "f":
            f.append([int(x) - 1 for x in parts[1:]])
    return np.array(v), np.array(f)


def parse_ply(path):
    """Minimal PLY reader for the files we write (ascii or binary little-endian)."""
    data = open(path, "rb").read()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode().splitlines()
    fmt = header[1].split()[1]
    nv = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    nf = int(next(h for h in header if h.startswith("element face")).split()[-1])
    props = [h.split()[-1] for h in header if h.startswith("property") and "list" not in h]
    if fmt == "ascii":
        rows = data[end:].decode().splitlines()
        v = np.array([[float(x) for x in r.split()] for r in rows[:nv]])
        f = np.array([[int(x) for x in r.split()[1:]] for r in rows[nv:nv + nf]])
        return v, f, props
    assert fmt == "binary_little_endian"
    vt = [(p, "<f4" if p in "xyz" else "u1") for p in props]
    va = np.frombuffer(data, dtype=vt, count=nv, offset=end)
    fa = np.frombuffer(data, dtype=[("n", "u1"), ("i", "<i4", (3,))], count=nf, offset=end + va.nbytes)
    assert (fa["n"] == 3).all() and end + va.nbytes + fa.nbytes == len(data)
    v = np.stack([va[p].astype(np.float64) for p in props], 1)
    return v, fa["i"].astype(np.int64), props


@pytest.mark.parametrize("fmt", ["obj", "ply-binary", "ply-ascii"])
@pytest.mark.parametrize("with_colors", [False, True])
def test_mesh_writers_parse_back(tmp_path, fmt, with_colors):
    cols = COLS if with_colors else None
    if fmt == "obj":
        p = write_obj(tmp_path / "m.obj", VERTS, TRIS, cols, comment="frame: test")
        v, f = parse_obj(p)
        assert open(p).readline() == "# frame: test\n"
        np.testing.assert_allclose(v[:, :3], VERTS, atol=1e-6)
        if with_colors:
            np.testing.assert_allclose(v[:, 3:] * 255, COLS, atol=0.02)
    else:
        p = write_ply(tmp_path / "m.ply", VERTS, TRIS, cols, binary=fmt == "ply-binary", comment="frame: test")
        v, f, props = parse_ply(p)
        assert props == (["x", "y", "z", "red", "green", "blue"] if with_colors else ["x", "y", "z"])
        np.testing.assert_allclose(v[:, :3], VERTS, atol=1e-6)
        if with_colors:
            np.testing.assert_array_equal(v[:, 3:], COLS)
    np.testing.assert_array_equal(f, TRIS)
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []  # no temp file left


def test_write_mesh_dispatch_and_errors(tmp_path):
    assert write_mesh(tmp_path / "a.ply", VERTS, TRIS).read_bytes().startswith(b"ply\nformat binary_little_endian")
    assert write_mesh(tmp_path / "b.txt", VERTS, TRIS, fmt="obj").read_text().startswith("v ")
    with pytest.raises(ValueError, match="valid formats: obj, ply"):
        write_mesh(tmp_path / "a.stl", VERTS, TRIS)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        write_obj(tmp_path / "c.obj", VERTS, TRIS + 2)
    with pytest.raises(ValueError, match="NaN"):
        write_ply(tmp_path / "c.ply", VERTS * np.nan, TRIS)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_ply(tmp_path / "c.ply", VERTS, TRIS, COLS.astype(float))
    assert not (tmp_path / "c.obj").exists() and not (tmp_path / "c.ply").exists()


def test_atomic_file_keeps_old_content_on_error(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with AtomicFile(p, "w") as f:
            f.write("new, half written")
            raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.txt"]


def test_durable_jsonl_appends_flushed_lines_and_resumes(tmp_path):
    p = tmp_path / "results.jsonl"
    with DurableJsonl(p) as w:
        w.write({"a": 1})
        assert p.read_text() == '{"a":1}\n'  # on disk as soon as written: a kill loses nothing before it
        with pytest.raises(ValueError):
            w.write({"nan": float("nan")})
        w.write({"b": [1.5, None]})
    assert list(read_jsonl(p)) == [{"a": 1}, {"b": [1.5, None]}]
    with open(p, "a") as f:
        f.write('{"c": ')  # cut by a kill
    with DurableJsonl(p, resume=True) as w:
        assert w.kept == [{"a": 1}, {"b": [1.5, None]}]
        w.write({"d": 4})
    assert list(read_jsonl(p)) == [{"a": 1}, {"b": [1.5, None]}, {"d": 4}]
    with DurableJsonl(p) as w:  # a fresh run starts empty
        pass
    assert p.read_text() == ""


def test_atomic_file_removes_its_temp_file_even_when_closing_fails(tmp_path):
    """A full disk: the buffered data cannot be flushed, close() raises; the temp file must still go."""
    class FullDisk:
        closed = False

        def __init__(self, real):
            self.real = real

        def close(self):
            self.real.close()
            self.closed = True
            raise OSError(28, "No space left on device")

    a = AtomicFile(tmp_path / "r.jsonl", "w")
    a.__enter__()
    a._file = FullDisk(a._file)
    a.discard()
    assert os.listdir(tmp_path) == []


def test_draw_functions_change_pixels_and_leave_input():
    img = np.zeros((100, 100, 3), np.uint8)
    pts = np.array([[20.0, 20.0], [50.0, 50.0]])
    out = draw_landmarks(img, pts, visibility=[1.0, 0.0], radius=6)
    assert img.sum() == 0
    assert tuple(out[20, 20]) == (40, 220, 60)  # visible: filled, green
    assert out[50, 50].sum() == 0 and out[50, 56].sum() > 0  # hidden: hollow circle
    # the two causes in two colours: hidden by an occluder (red) vs by the face itself (blue)
    occluded = draw_landmarks(img, pts, visibility=[1.0, 0.0], self_visibility=[1.0, 1.0], radius=6)
    behind = draw_landmarks(img, pts, visibility=[1.0, 0.0], self_visibility=[1.0, 0.0], radius=6)
    ring = np.abs(np.hypot(*np.mgrid[-50:50, -50:50]) - 6) < 1  # pixels on the circle around (50, 50)
    assert occluded[ring].mean(0)[0] > occluded[ring].mean(0)[2]
    assert behind[ring].mean(0)[2] > behind[ring].mean(0)[0]
    with pytest.raises(ValueError, match="self_visibility"):
        draw_landmarks(img, pts, visibility=[1.0, 0.0], self_visibility=[1.0])
    assert draw_points(img, pts)[20, 20].sum() > 0
    assert draw_wireframe(img, VERTS * 30 + 10, TRIS).sum() > 0
    assert draw_box(img, [10, 10, 60, 60], 0.9)[10, 30].sum() > 0
    layer = np.full((100, 100, 3), 200.0)
    mask = np.zeros((100, 100), bool)
    mask[:10] = True
    b = blend_layer(img, layer, mask, alpha=0.5)
    assert b[5, 5, 0] == 100 and b[50, 50, 0] == 0


def test_pose_axes_frontal_directions():
    img = np.zeros((100, 100, 3), np.uint8)
    out = draw_pose_axes(img, np.eye(3), (50, 50), length=30, thickness=1)
    # frontal: x axis (red) goes right, y axis (green) goes up in the image
    assert out[50, 70, 0] > 200 and out[50, 30].sum() == 0
    assert out[30, 50, 1] > 150 and out[70, 50].sum() == 0


def _write_video(path, n=5, size=(64, 48), fourcc="MJPG"):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, size)
    assert vw.isOpened()
    for i in range(n):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, :, 2] = 40 * i  # BGR: red grows
        vw.write(frame)
    vw.release()


def test_iter_video_frames_rgb(tmp_path):
    p = tmp_path / "v.avi"
    _write_video(p)
    frames = list(iter_video_frames(p))
    assert [i for i, _ in frames] == [0, 1, 2, 3, 4]
    assert frames[0][1].shape == (48, 64, 3)
    reds = [f[..., 0].mean() for _, f in frames]
    assert np.allclose(reds, [0, 40, 80, 120, 160], atol=4) and frames[4][1][..., 2].mean() < 4
    assert len(list(iter_video_frames(p, max_frames=2))) == 2


def test_video_errors(tmp_path):
    with pytest.raises(VideoReadError, match="not found"):
        list(iter_video_frames(tmp_path / "none.mp4"))
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 100)
    with pytest.raises(VideoReadError):
        list(iter_video_frames(tmp_path / "bad.mp4"))


def test_video_writer_atomic(tmp_path):
    with VideoWriterRGB(tmp_path / "o.mp4", 10, (32, 24)) as vw:
        for _ in range(3):
            vw.write(np.full((24, 32, 3), 128, np.uint8))
    assert len(list(iter_video_frames(tmp_path / "o.mp4"))) == 3
    with pytest.raises(RuntimeError):
        with VideoWriterRGB(tmp_path / "p.mp4", 10, (32, 24)) as vw:
            vw.write(np.zeros((24, 32, 3), np.uint8))
            raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["o.mp4"]


def test_written_files_get_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        p = write_obj(tmp_path / "m.obj", VERTS, TRIS)
        with DurableJsonl(tmp_path / "r.jsonl") as w:
            w.write({})
    finally:
        os.umask(mask)
    assert oct(p.stat().st_mode & 0o777) == oct(0o644)  # not mkstemp's 0600
    assert oct((tmp_path / "r.jsonl").stat().st_mode & 0o777) == oct(0o644)
