"""Each convention of ``docs/CONVENTIONS.md`` is defined in its owner module only (a grep over ``src/dsfnet``)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dsfnet"

#: (what, pattern of a definition, the one file allowed to hold it)
DEFINITIONS = [
    ("the y-flip F", r"diag\(\[\s*1(\.0)?,\s*-1(\.0)?,\s*1(\.0)?\s*\]\)|=\s*\(1\.0, -1\.0, 1\.0\)", "geometry/frames.py"),
    ("the nose landmark index", r"^\s*NOSE\w*\s*=\s*30\b", "geometry/posmap.py"),
    ("the shape-map scale", r"^\s*SHAPE_MAP_SCALE\s*=", "geometry/posmap.py"),
    ("the position-map rate", r"^\s*\w*POS\w*RATE\w*\s*=", "geometry/posmap.py"),
    ("the nearest rotation", r"^def nearest_rotation\b", "geometry/rotation.py"),
    ("the face-box coverage", r"^def (box_coverage|coverage_of|box_pixels)\b", "geometry/boxes.py"),
    ("the weights lookup", r"^def (resolve_weights|default_weights_dir)\b|^class WeightsNotFoundError\b",
     "model/weights.py"),
    ("the ONNX Runtime session", r"^def ort_session\b|InferenceSession\(", "inference/onnx.py"),
    ("the input standardisation", r"^\s*STANDARDIZE_EPS\s*=|^def (standardize|standardize_np|preprocess)\b",
     "model/preprocess.py"),
    ("the teacher's file names and environment variable",
     r"=\s*\"(mb05_120x120\.pth|param_mean_std_62d_120x120\.pkl|DSFNET_TEACHER_DIR)\"", "teacher/constants.py"),
    ("the teacher network", r"^class \w*Teacher\w*\(.*(nn\.Module|MobileNetV1Body)", "teacher/network.py"),
    ("reading video frames", r"^\s*def iter_video_frames\b|cv2\.VideoCapture\(", "io/video.py"),
    ("the 68-point index groups", r"=\s*(slice|np\.arange|range)\((0, )?17\)|=\s*(slice|np\.arange|range)\((17|48), 68\)",
     "geometry/landmarks.py"),
    ("the vertex normals", r"np\.add\.at\(\w+, \w+\[:, \w+\], fn\)|^def vertex_normals\b", "render/attributes.py"),
]


@pytest.mark.parametrize("what, pattern, owner", DEFINITIONS, ids=[d[0] for d in DEFINITIONS])
def test_convention_defined_once(what, pattern, owner):
    rx = re.compile(pattern, re.M)
    holders = sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if rx.search(p.read_text(encoding="utf-8")))
    assert holders == [owner], f"{what} is defined in {holders}, its owner is {owner}"
