"""Training datasets: synthetic faces, a sample cache, a JSON-lines index, seeded augmentation, several sources."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dsfnet.train.loaders import SeededSamples

S, U = 64, 32


@pytest.fixture(scope="module")
def toy():
    from dsfnet.facemodel import get_uv_layout
    from testing.face_model import toy_face_model
    from dsfnet.model import create_model
    from dsfnet.train.data import target_builder_for

    fm = toy_face_model()
    lay = get_uv_layout(fm, U, disk_cache=False)
    model = create_model("lite", face_model=fm, layout=lay, input_size=S, uv_size=U, fusion_input_stride=4)
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
    assert ds.augmenter.pool is None  # no occluder pool unless asked
    pooled = open_dataset(tmp_path / "cache", model, augment=True, builder=builder, occlusion={"occluder_pool": 5})
    assert len(pooled.augmenter.pool) == 2  # at most the source's size, its own training crops
    assert np.array_equal(pooled.augmenter.pool[1], pooled.cache[1]["image"])
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


def _write_cache(folder, syn, idx, model):
    from dsfnet.data.cache import CacheWriter, default_fields

    with CacheWriter(folder, default_fields(S, U, model.n_shape, model.n_exp), len(idx),
                     attrs={"face_model_fingerprint": model.face_model_fingerprint}) as w:
        for j, i in enumerate(idx):
            w[j] = syn[i]


def test_build_folder_cache_of_the_model_size_is_chosen(toy, tmp_path):
    """Caches of several sizes side by side: the one matching the model's S and U is read, whatever the other."""
    from dsfnet.data.cache import CacheWriter, cache_folder_name, default_fields
    from dsfnet.train.data import SyntheticFaces, open_dataset

    assert cache_folder_name("train", 128, 128) == "cache_train"
    assert cache_folder_name("val", 128, 96) == "cache_val_s128_u96"
    model, builder = toy
    syn = SyntheticFaces(2, builder, seed=4, image_size=128)
    _write_cache(tmp_path / "A" / cache_folder_name("train", S, U), syn, [0, 1], model)
    with CacheWriter(tmp_path / "A" / "cache_train", default_fields(S, 2 * U, model.n_shape, model.n_exp), 1) as w:
        w[0] = {k: np.zeros(shape, dtype) for k, (shape, dtype) in default_fields(S, 2 * U, 1, 1).items()
                if k not in ("shape", "exp")} | {"shape": np.zeros(model.n_shape), "exp": np.zeros(model.n_exp)}
    ds = open_dataset(tmp_path / "A", model, augment=False)
    assert len(ds) == 2 and np.abs(ds[1]["posmap"] - syn[1]["posmap"]).max() < 2e-3
    (tmp_path / "A" / cache_folder_name("train", S, U) / "meta.json").unlink()  # only the other size is left
    with pytest.raises(ValueError, match=f"--uv-size {U}"):
        open_dataset(tmp_path / "A", model, augment=False)


def test_several_training_sources_are_concatenated(toy, tmp_path):
    """``data.train: [A, B]``: lengths add up, items map to their part, Tm statistics cover both, val splits join."""
    from dsfnet.train.config import TrainConfig
    from dsfnet.train.data import ConcatSamples, SyntheticFaces, make_datasets, open_dataset, tm_statistics

    model, builder = toy
    syn = SyntheticFaces(6, builder, seed=3, image_size=128)
    _write_cache(tmp_path / "A" / "cache_train", syn, [0, 1], model)   # two 'dsfnet data build' folders
    _write_cache(tmp_path / "A" / "cache_val", syn, [2], model)
    _write_cache(tmp_path / "B" / "cache_train", syn, [3, 4, 5], model)  # B has no val split
    a, b = str(tmp_path / "A"), str(tmp_path / "B")
    cfg = TrainConfig.load(None, [f"data.train={json.dumps([a, b])}", "data.augment=false"])
    assert cfg.data.train == [a, b]
    train, val = make_datasets(cfg, model)
    assert isinstance(train, ConcatSamples) and len(train) == 2 + 3
    assert np.array_equal(train[3]["image"], open_dataset(tmp_path / "B", model, augment=False)[1]["image"])
    assert np.array_equal(train[-1]["tm"], train[4]["tm"])
    with pytest.raises(IndexError):
        train[5]
    assert len(val) == 1 and np.abs(val[0]["tm"] - syn[2]["tm"]).max() < 2e-3
    mean, _ = tm_statistics(train)                                     # from the concatenation, not part A
    tm = np.stack([syn[i]["tm"] for i in (0, 1, 3, 4, 5)]).reshape(-1, 12).astype(np.float64)
    assert np.allclose(mean, tm.mean(0), atol=2e-3) and len(train.arrays["tm"]) == 5
    assert not np.allclose(mean, tm_statistics(open_dataset(a, model, augment=False))[0], atol=2e-3)
    # a single source is unchanged (no wrapper); an explicit val list is concatenated too
    one = TrainConfig.load(None, [f"data.train={json.dumps(a)}", f"data.val={json.dumps([a, a])}",
                                  "data.augment=false"])
    t1, v1 = make_datasets(one, model)
    assert not isinstance(t1, ConcatSamples) and len(t1) == 2 and len(v1) == 2
    # mixed sources (a cache + a .jsonl index) keep seeded augmentation and sample Tm over the whole
    import cv2

    from dsfnet.data.sample import FaceSample, write_index

    cv2.imwrite(str(tmp_path / "face.png"), np.full((96, 96, 3), 128, np.uint8))
    pose = np.array([0.1, 0.3, 0.0, 48.0, 48.0, 0.0, 96 * 0.45 / 1.5e5])
    write_index([FaceSample(image=str(tmp_path / "face.png"), shape=np.zeros(model.n_shape),
                            exp=np.zeros(model.n_exp), pose_para=pose, image_height=96)], tmp_path / "x.jsonl")
    mixed = ConcatSamples([open_dataset(a, model, augment=True, builder=builder),
                           open_dataset(tmp_path / "x.jsonl", model, augment=True, builder=builder)])
    assert len(mixed) == 3 and mixed.arrays is None
    seeded = SeededSamples(mixed, seed=1)
    assert np.array_equal(seeded[2]["image"], seeded[2]["image"]) and seeded[2]["image"].shape == (S, S, 3)
    assert tm_statistics(mixed) is not None


def test_train_config_and_cli_accept_a_list_of_sources():
    import argparse

    from dsfnet.cli.train import add_parser, config_overrides
    from dsfnet.train.config import TrainConfig

    sub = argparse.ArgumentParser().add_subparsers()
    parser = add_parser(sub)
    one = config_overrides(parser.parse_args(["--data", "A"]))
    assert one == ['data.train="A"'] and TrainConfig.load(None, one).data.train == "A"
    two = config_overrides(parser.parse_args(["--data", "A", "--data", "B", "--val", "V"]))
    cfg = TrainConfig.load(None, two)
    assert cfg.data.train == ["A", "B"] and cfg.data.val == "V"
    assert TrainConfig.from_dict(cfg.to_dict()).data.train == ["A", "B"]        # survives config.yaml
    for bad in ("data.train=5", "data.train=[]", "data.val=[a, 3]"):
        with pytest.raises(ValueError, match="path or a non-empty list"):
            TrainConfig.load(None, [bad])


def test_final_line_reports_the_val_nme_in_percent_or_says_there_is_none():
    from dsfnet.cli.train import final_metric_text

    assert final_metric_text(0.0249) == "best val NME 2.49%"  # percent, as in every other human-facing line
    assert "no validation NME" in final_metric_text(float("inf"))  # was "best val NME inf" with no word of why
