"""FaceSample records (JSONL index, npz shards) and the memory-mapped sample cache."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dsfnet.data.cache import CacheWriter, CropCache, default_fields
from dsfnet.data.sample import FaceSample, read_index, write_index


def make_sample(tmp_path, i: int, with_file: bool = True) -> FaceSample:
    import cv2

    rng = np.random.default_rng(i)
    img = rng.integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
    image = img
    if with_file:
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), img[:, :, ::-1])
        image = str(path)
    return FaceSample(image=image, shape=rng.normal(size=40) * 1e5, exp=rng.normal(size=10),
                      pose_para=[0.1, -0.2, 0.3, 10, 12, 0, 1e-3], image_height=20,
                      landmarks=rng.uniform(0, 20, size=(68, 2)), landmark_convention="2d",
                      identity=f"p{i}", source="synthetic")


def test_index_round_trip(tmp_path):
    samples = [make_sample(tmp_path, i) for i in range(3)]
    n = write_index(samples, tmp_path / "index.jsonl")
    assert n == 3
    line = json.loads((tmp_path / "index.jsonl").read_text().splitlines()[0])
    assert line["image"] == "img/0.png"  # relative to the index folder
    back = read_index(tmp_path / "index.jsonl")
    for a, b in zip(samples, back):
        np.testing.assert_allclose(b.shape, a.shape)
        np.testing.assert_allclose(b.pose_para, a.pose_para)
        np.testing.assert_allclose(b.landmarks, a.landmarks, atol=1e-4)
        assert (b.identity, b.source, b.landmark_convention, b.image_height) == (a.identity, a.source, "2d", 20)
        np.testing.assert_array_equal(b.load_image(), a.load_image())


def test_sample_validation(tmp_path):
    with pytest.raises(ValueError, match="pose_para"):
        FaceSample(image="x.jpg", shape=[1.0], exp=[1.0], pose_para=[0, 0, 0])
    with pytest.raises(ValueError, match="landmark_convention"):
        FaceSample(image="x.jpg", shape=[1.0], exp=[1.0], pose_para=np.zeros(7), landmarks=np.zeros((68, 2)))
    with pytest.raises(ValueError, match="NaN"):
        FaceSample(image="x.jpg", shape=[np.nan], exp=[1.0], pose_para=np.zeros(7))
    with pytest.raises(FileNotFoundError):
        FaceSample(image=str(tmp_path / "missing.jpg"), shape=[1.0], exp=[1.0], pose_para=np.zeros(7)).load_image()
    with pytest.raises(ValueError, match="line|JSON"):
        (tmp_path / "bad.jsonl").write_text("{not json}\n")
        read_index(tmp_path / "bad.jsonl")


def record(i: int, fields) -> dict:
    rng = np.random.default_rng(i)
    out = {}
    for k, (shp, dt) in fields.items():
        out[k] = rng.integers(0, 255, size=shp).astype(dt) if dt == "uint8" else rng.normal(size=shp).astype(np.float32)
    return out


def test_cache_round_trip_and_atomicity(tmp_path):
    fields = default_fields(16, 8, 40, 10)
    folder = tmp_path / "cache"
    recs = [record(i, fields) for i in range(5)]
    w = CacheWriter(folder, fields, 5, attrs={"crop_size": 16})
    for i, r in enumerate(recs):
        w[i] = r
    with pytest.raises(FileNotFoundError):  # nothing readable before close()
        CropCache(folder)
    w.close()
    c = CropCache(folder)
    assert len(c) == 5 and c.attrs == {"crop_size": 16}
    for i in (0, 4, -1):
        got = c[i]
        ref = recs[i]
        np.testing.assert_array_equal(got["image"], ref["image"])
        assert got["posmap"].dtype == np.float32
        np.testing.assert_allclose(got["posmap"], ref["posmap"], rtol=1e-3, atol=1e-3)  # float16 storage
        np.testing.assert_array_equal(got["tm"], ref["tm"])  # float32 storage: exact
    assert not list(folder.glob("*.tmp"))
    # rewrite: deterministic bytes
    first = (folder / "posmap.npy").read_bytes()
    with CacheWriter(folder, fields, 5) as w2:
        for i, r in enumerate(recs):
            w2[i] = r
    assert (folder / "posmap.npy").read_bytes() == first


def test_cache_errors(tmp_path):
    fields = default_fields(16, 8, 40, 10)
    w = CacheWriter(tmp_path / "c", fields, 2)
    with pytest.raises(ValueError, match="shape"):
        w[0] = {**record(0, fields), "tm": np.zeros((3, 3))}
    bad = record(0, fields)
    bad["depth"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        w[0] = bad
    w[0] = record(0, fields)
    with pytest.raises(ValueError, match="never written"):
        w.close()
    assert not list((tmp_path / "c").glob("*.tmp"))
    with pytest.raises(IndexError):
        CacheWriter(tmp_path / "d", fields, 1)[3] = record(0, fields)
