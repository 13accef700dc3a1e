"""FaceModel, the built-in model's landmarks, and the user-model loaders (3DDFA_V2 .pkl, face3d BFM.mat)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from dsfnet.facemodel import assets
from dsfnet.facemodel.model import FaceModel, load_face_model, make_face_model
from dsfnet.facemodel.uv import FLIP_68
from testing.face_model import toy_face_model


@pytest.fixture(scope="module")
def bfm(request: pytest.FixtureRequest) -> FaceModel:
    # builds the default cache from the wheel kept in pytest's cache (downloaded at most once)
    assets.ensure_assets(wheel_dir=request.config.cache.mkdir("dsfnet_wheel"), repair=True)
    return load_face_model()


@pytest.fixture(scope="module")
def toy() -> FaceModel:
    return toy_face_model()


def test_builtin_model_numbers(bfm: FaceModel) -> None:
    assert (bfm.n_vertices, bfm.n_shape, bfm.n_exp) == (53215, 40, 10)
    assert bfm.name == "bfm3ddfa_s40_e10"
    assert bfm.mean.dtype == np.float32 and bfm.keypoints.dtype == np.int64 and bfm.triangles.dtype == np.int64
    assert bfm.shape_basis.shape == (53215, 3, 40) and bfm.exp_basis.shape == (53215, 3, 10)
    # triangles derived from the UV unwrap: about 2 per vertex, nearly all vertices used, no huge edges
    n_tri = len(bfm.triangles)
    used = np.unique(bfm.triangles).size
    assert 98_000 < n_tri < 103_000, n_tri
    assert used > 0.97 * bfm.n_vertices, used
    edges = np.linalg.norm(bfm.mean[bfm.triangles] - bfm.mean[np.roll(bfm.triangles, 1, axis=1)], axis=2).max(1)
    assert np.median(edges) < 2000 and edges.max() < 25_000  # 2.5 cm; a face is 18 cm wide
    assert len(bfm.fingerprint) == 12 and bfm.fingerprint == load_face_model().fingerprint
    trunc = load_face_model(n_shape=10, n_exp=5)
    assert (trunc.n_shape, trunc.n_exp) == (10, 5) and trunc.fingerprint != bfm.fingerprint
    np.testing.assert_array_equal(trunc.shape_basis, bfm.shape_basis[:, :, :10])
    with pytest.raises(ValueError, match="40 shape / 10 expression"):
        load_face_model(n_shape=41)


def test_convention_model_frame(bfm: FaceModel) -> None:
    kp = bfm.mean[bfm.keypoints]
    # nose tip has the largest z of the landmarks and is within 1% of the mesh's frontmost point
    assert int(np.argmax(kp[:, 2])) == 30 and kp[30, 2] > 0.99 * bfm.mean[:, 2].max()
    # +x is the subject's left: iBUG 36 (subject's right eye corner) has negative x, 45 positive
    assert kp[36, 0] < -3e4 and kp[45, 0] > 3e4
    # y up: brows above the chin
    assert kp[19, 1] - kp[8, 1] > 1.2e5


def test_keypoints_look_like_a_face(bfm: FaceModel) -> None:
    kp = bfm.mean[bfm.keypoints].astype(np.float64)
    x, y = kp[:, 0], kp[:, 1]
    # frontal projection: eyes above nose above mouth
    assert y[36:48].min() > y[31:36].max() + 1.5e4
    assert y[27:36].mean() > y[48:68].mean() + 2.5e4
    assert y[31:36].min() > y[48:68].max()
    # jaw runs from the subject's right (-x) to the left (+x) monotonically, chin lowest
    assert np.all(np.diff(x[0:17]) > 0)
    assert int(np.argmin(y[0:17])) == 8
    # left/right symmetry through FLIP_68, about the midline plane
    xs = x[[8, 27, 28, 29, 30, 33, 51, 57, 62, 66]].mean()
    width = x[16] - x[0]
    asym = np.abs((x - xs) + (x[FLIP_68] - xs)) / width
    dy = np.abs(y - y[FLIP_68]) / width
    assert asym.max() < 0.03 and dy.max() < 0.01, (asym.max(), dy.max())


def test_flip68_is_an_involution() -> None:
    assert sorted(FLIP_68.tolist()) == list(range(68))
    np.testing.assert_array_equal(FLIP_68[FLIP_68], np.arange(68))
    assert FLIP_68[0] == 16 and FLIP_68[36] == 45 and FLIP_68[48] == 54 and FLIP_68[30] == 30


def test_face_model_validation() -> None:
    m = toy_face_model()
    with pytest.raises(ValueError, match="keypoints"):
        make_face_model("bad", m.mean, m.shape_basis, m.exp_basis, m.shape_std, m.exp_std,
                        m.keypoints[:10], m.triangles)
    with pytest.raises(ValueError, match="shape_basis"):
        make_face_model("bad", m.mean, m.shape_basis[:5], m.exp_basis, m.shape_std, m.exp_std,
                        m.keypoints, m.triangles)
    with pytest.raises(ValueError, match="non-finite"):
        make_face_model("bad", np.full_like(m.mean, np.nan), m.shape_basis, m.exp_basis, m.shape_std,
                        m.exp_std, m.keypoints, m.triangles)


def test_toy_model(toy: FaceModel) -> None:
    assert (toy.n_vertices, toy.n_shape, toy.n_exp) == (2964, 6, 3)
    kp = toy.mean[toy.keypoints]
    assert len(np.unique(toy.keypoints)) == 68
    assert int(np.argmax(toy.mean[:, 2])) == toy.keypoints[30]
    assert 1.3e5 < np.ptp(toy.mean[:, 0]) < 1.6e5
    np.testing.assert_allclose(kp[:, 0], -kp[FLIP_68, 0], atol=1e-6 * 1e5)
    assert np.all(np.diff(kp[0:17, 0]) > 0)
    # triangles counter-clockwise seen from +z on the front of the face
    t = toy.triangles
    v = toy.mean.astype(np.float64)
    nz = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])[:, 2]
    front = v[t].mean(1)[:, 2] > 3e4
    assert (nz[front] > 0).mean() > 0.99
    assert toy.fingerprint == toy_face_model().fingerprint != toy_face_model(seed=1).fingerprint


# ------------------------------------------------------------------------------ user model files

def _rows(a: np.ndarray) -> np.ndarray:
    """(N, 3[, K]) -> (3N, K) interleaved per vertex."""
    return a.reshape(a.shape[0] * 3, -1)


def test_load_3ddfa_pkl(toy: FaceModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(assets.ENV_HOME, str(tmp_path / "home"))  # derived-triangle cache goes here
    kp_rows = np.stack([3 * toy.keypoints, 3 * toy.keypoints + 1, 3 * toy.keypoints + 2], 1).reshape(-1)
    data = {"u": _rows(toy.mean.astype(np.float64)), "w_shp": _rows(toy.shape_basis), "w_exp": _rows(toy.exp_basis),
            "tri": toy.triangles.T.astype(np.int32), "keypoints": kp_rows, "u_base": np.zeros((204, 1))}
    path = tmp_path / "bfm_noneck_v3.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    m = load_face_model(path, n_shape=4, n_exp=2)
    assert m.name == "bfm_noneck_v3_s4_e2" and (m.n_shape, m.n_exp) == (4, 2)
    np.testing.assert_allclose(m.mean, toy.mean)
    np.testing.assert_allclose(m.shape_basis, toy.shape_basis[:, :, :4])
    np.testing.assert_allclose(m.exp_basis, toy.exp_basis[:, :, :2])
    np.testing.assert_array_equal(m.keypoints, toy.keypoints)
    np.testing.assert_array_equal(m.triangles, toy.triangles)
    np.testing.assert_array_equal(m.shape_std, np.ones(4))  # no stds in the file

    del data["tri"]  # no triangles: derived from the UV unwrap
    path.write_bytes(pickle.dumps(data))
    m2 = load_face_model(path, n_shape=6, n_exp=3)
    assert len(m2.triangles) > 0.9 * len(toy.triangles)

    del data["w_exp"]
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError, match="missing keys.*w_exp"):
        load_face_model(path)


def test_pkl_with_code_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"u": Evil()}))
    with pytest.raises(ValueError, match="not a readable 3DDFA_V2 pickle"):
        load_face_model(path)


def test_load_face3d_mat(toy: FaceModel, tmp_path: Path) -> None:
    exp_mu = np.full(toy.mean.shape, 10.0)
    model = {
        "shapeMU": _rows(toy.mean.astype(np.float64) - exp_mu),
        "shapePC": _rows(toy.shape_basis.astype(np.float64)),
        "shapeEV": np.arange(1.0, 7.0)[:, None],
        "expMU": _rows(exp_mu),
        "expPC": _rows(toy.exp_basis.astype(np.float64)),
        "expEV": np.array([[3.0], [2.0], [1.0]]),
        "tri": (toy.triangles[:-2] + 1).astype(np.float64),  # 1-based, (T, 3)
        "tri_mouth": (toy.triangles[-2:] + 1).T.astype(np.float64),  # 1-based, (3, T)
        "kpt_ind": (toy.keypoints + 1)[None, :].astype(np.float64),
    }
    path = tmp_path / "BFM.mat"
    scipy.io.savemat(path, {"model": model})
    m = load_face_model(path, n_shape=5, n_exp=3)
    assert m.name == "BFM_s5_e3"
    np.testing.assert_allclose(m.mean, toy.mean, atol=0.02)  # shapeMU + expMU
    np.testing.assert_allclose(m.shape_std, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(m.exp_std, [3, 2, 1])
    np.testing.assert_array_equal(m.keypoints, toy.keypoints)
    np.testing.assert_array_equal(m.triangles, toy.triangles)
    with pytest.raises(ValueError, match="6 shape / 3 expression"):
        load_face_model(path, n_shape=7)
    scipy.io.savemat(path, {"model": {k: v for k, v in model.items() if k != "kpt_ind"}})
    with pytest.raises(ValueError, match="kpt_ind"):
        load_face_model(path)


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_face_model(tmp_path / "none.pkl")
    other = tmp_path / "model.obj"
    other.write_text("v 0 0 0\n")
    with pytest.raises(ValueError, match="unsupported face model file"):
        load_face_model(other)
