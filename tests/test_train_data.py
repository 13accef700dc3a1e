"""Training datasets: synthetic faces, a sample cache, a JSON-lines index, seeded augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from dsfnet.train.loop import SeededSamples

S, U = 64, 32


@pytest.fixture(scope="module")
def toy():
    from dsfnet.facemodel import get_uv_layout
    from dsfnet.facemodel.synthetic import toy_face_model
    from dsfnet.model import create_model
    from dsfnet.train.data import target_builder_for

    fm = toy_face_model()
    lay = get_uv_layout(fm, U, disk_cache=False)
    model = create_model("lite", face_model=fm, layout=lay, input_size=S, uv_size=U)
    return model, target_builder_for(model, fm, lay)


def test_synthetic_faces_are_valid_samples(toy):
    from dsfnet.train.data import SyntheticFaces

    model, builder = toy
    ds = SyntheticFaces(3, builder, seed=1, image_size=128)
    a = ds[0]
    assert a["image"].shape == (S, S, 3) and a["image"].dtype == np.uint8
    assert a["posmap"].shape == (3, U, U) and a["grid"].shape == (2, S, S) and a["tm"].shape == (3, 4)
    assert a["shape"].shape == (model.n_shape,) and a["exp"].shape == (model.n_exp,)
    assert 0.05 < a["seg"].mean() < 0.9  # the face is in the crop, not all of it
    assert np.linalg.det(a["tm"][:, :3].astype(np.float64)) < 0  # model (y up) -> crop (y down)
    assert np.all(np.abs(np.degrees(a["pose"])) < [25, 65, 20])  # the drawn pose ranges
    b = SyntheticFaces(3, builder, seed=1, image_size=128)[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)  # deterministic per (seed, index)


def test_cache_and_index_datasets_with_seeded_augmentation(toy, tmp_path):
    from dsfnet.data.cache import CacheWriter, default_fields
    from dsfnet.data.sample import FaceSample, write_index
    from dsfnet.train.data import SyntheticFaces, open_dataset

    model, builder = toy
    syn = SyntheticFaces(2, builder, seed=2, image_size=128)
    with CacheWriter(tmp_path / "cache", default_fields(S, U, model.n_shape, model.n_exp), 2,
                     attrs={"face_model_fingerprint": model.face_model_fingerprint}) as w:
        for i in range(2):
            w[i] = syn[i]
    ds = open_dataset(tmp_path / "cache", model, augment=True, builder=builder)
    assert len(ds) == 2 and ds.augmenter is not None
    seeded = SeededSamples(ds, seed=5)
    x1, x2 = seeded[1], seeded[1]
    assert np.array_equal(x1["image"], x2["image"])  # same (seed, epoch, index) -> same augmentation
    seeded.set_epoch(1)
    assert not np.array_equal(seeded[1]["image"], x1["image"])  # another epoch, another augmentation
    plain = open_dataset(tmp_path / "cache", model, augment=False)
    assert np.abs(plain[0]["posmap"] - syn[0]["posmap"]).max() < 2e-3  # float16 storage
    with pytest.raises(ValueError, match="face model"):
        bad = tmp_path / "bad"
        with CacheWriter(bad, default_fields(S, U, model.n_shape, model.n_exp), 1,
                         attrs={"face_model_fingerprint": "other"}) as w:
            w[0] = syn[0]
        open_dataset(bad, model, augment=False)
    # a JSON-lines index: ground truth built on the fly
    import cv2

    cv2.imwrite(str(tmp_path / "face.png"), np.full((96, 96, 3), 128, np.uint8))
    pose = np.array([0.1, 0.3, 0.0, 48.0, 48.0, 0.0, 96 * 0.45 / 1.5e5])
    rec = FaceSample(image=str(tmp_path / "face.png"), shape=np.zeros(model.n_shape), exp=np.zeros(model.n_exp),
                     pose_para=pose, image_height=96)
    write_index([rec], tmp_path / "train.jsonl")
    idx = open_dataset(tmp_path / "train.jsonl", model, augment=False, builder=builder)
    s = idx[0]
    assert s["image"].shape == (S, S, 3) and s["posmap"].shape == (3, U, U)
    with pytest.raises(FileNotFoundError, match="no training data"):
        open_dataset(tmp_path / "nothing", model, augment=False)
