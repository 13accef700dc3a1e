"""UV codec: posed vertices (crop px) <-> position maps (pm units, nose-relative z)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dsfnet.decode import UVCodec
from dsfnet.facemodel import get_uv_layout
from dsfnet.geometry import model_to_image, pose_para_to_matrix
from testing.face_model import toy_face_model


@pytest.fixture(scope="module")
def toy():
    fm = toy_face_model()
    return fm, get_uv_layout(fm, 64, disk_cache=False)


def _posed(fm, size):
    rot = pose_para_to_matrix(0.1, 0.4, -0.05)
    width = np.ptp(fm.mean[:, 0])
    return model_to_image(fm.mean, rot, 0.6 * size / width, [size / 2, -size / 2, 0.0], 0)


def test_convention_pos_scale():
    fm = toy_face_model()
    assert UVCodec(get_uv_layout(fm, 32, disk_cache=False), 128).pos_scale == 140.0
    assert UVCodec(get_uv_layout(fm, 32, disk_cache=False), 256).pos_scale == 280.0
    with pytest.raises(ValueError):
        UVCodec(get_uv_layout(fm, 32, disk_cache=False), 0)


def test_encode_decode_round_trip_nose_relative(toy):
    fm, layout = toy
    codec = UVCodec(layout, 64)
    verts = _posed(fm, 64)
    m = codec.encode(verts)
    assert m.shape == (3, 64, 64) and m.dtype == np.float32
    r, c = codec.nose_cell
    assert m[2, r, c] == 0.0
    assert np.all(m[:, ~layout.covered] == 0)
    # x, y are absolute crop px / pos_scale
    assert 0 < m[0][layout.face_mask].min() and m[0][layout.face_mask].max() < 64 / codec.pos_scale
    back = codec.decode(m)
    # decode(encode(v)) = the layout's own resampling round trip, shifted so the nose cell has z = 0
    rt = layout.map_to_vertices(layout.vertices_to_map(verts))
    z_nose = layout.vertices_to_map(verts)[2, r, c]
    np.testing.assert_allclose(back, rt - [0, 0, z_nose], atol=1e-3)
    used = np.unique(fm.triangles)
    assert np.median(np.linalg.norm(rt[used] - verts[used], axis=1)) < 0.5  # crop px, toy model at 64²
    lm = codec.landmarks(m)
    assert lm.shape == (68, 3)
    np.testing.assert_allclose(lm[:, :2], verts[fm.keypoints, :2], atol=1.0)


def test_torch_nose_relative_matches_numpy(toy):
    from dsfnet.geometry.posmap import nose_relative

    fm, layout = toy
    codec = UVCodec(layout, 64)
    m = codec.encode(_posed(fm, 64))
    shifted = torch.tensor(m)[None].clone()
    shifted[:, 2] += 0.3
    out = nose_relative(shifted, codec.nose_cell)
    np.testing.assert_allclose(out[0, 2].numpy()[layout.covered], m[2][layout.covered], atol=1e-6)
