"""Packaging: the code's licence ships with the distribution, and torch is a range, not an exact pin."""
from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import pytest

packaging = pytest.importorskip("packaging.requirements")
from packaging.requirements import Requirement  # noqa: E402
from packaging.version import Version  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_licence_file_is_the_mit_licence_and_names_the_research_only_parts():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "non-commercial research only" in text  # the BFM and the weights are not MIT


def test_distribution_declares_the_licence_file():
    assert md.metadata("dsfnet").get_all("License-File") == ["LICENSE"]


def test_torch_is_a_range_that_the_installed_torch_satisfies():
    (req,) = [Requirement(r) for r in md.requires("dsfnet") if r.startswith("torch")]
    ops = {s.operator for s in req.specifier}
    assert "==" not in ops and ">=" in ops and "<" in ops, req  # a user's own torch in range is kept
    installed = Version(md.version("torch").split("+")[0])
    assert installed in req.specifier, (installed, req)
    lowest = min(Version(s.version) for s in req.specifier if s.operator == ">=")
    assert lowest <= installed
