"""Imports go one way (docs/ARCHITECTURE.md): a layer may import only the layers listed for it."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dsfnet"

BASE = {"geometry"}
SHARED = BASE | {"facemodel", "render", "io"}
STAGES = SHARED | {"detect", "crop", "model", "decode"}
ALLOWED: dict[str, set[str]] = {
    "geometry": set(),
    "facemodel": BASE,
    "render": BASE,
    "io": BASE,
    "detect": SHARED | {"crop"},
    "crop": SHARED,
    "model": SHARED,
    "decode": SHARED,
    "inference": STAGES,
    "teacher": STAGES,
    "data": STAGES | {"teacher"},
    "eval": STAGES | {"data", "inference", "teacher"},
    "train": STAGES | {"data", "eval", "teacher"},
    "assets": set(),
    "configs": set(),
    "weights": set(),
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        found |= {n.split(".")[1] for n in names if n.startswith("dsfnet.")}
    return found


def test_layers_import_one_way():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).parts
        if len(parts) == 1:  # dsfnet/__init__.py: lazy public names only
            continue
        layer = parts[0]
        if layer == "cli":
            continue
        allowed = ALLOWED.get(layer)
        assert allowed is not None, f"new top-level folder {layer!r}: add it to ALLOWED"
        for target in _imports(path) - {layer} - allowed - {"_lazy"}:  # dsfnet._lazy imports nothing from dsfnet
            bad.append(f"{path.relative_to(SRC)} imports dsfnet.{target}")
    assert not bad, "\n".join(bad)


def test_nothing_imports_cli_and_src_never_needs_shared():
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.relative_to(SRC).parts[0] != "cli":
            assert "cli" not in _imports(path), path
        assert "../shared" not in text and "/shared/data" not in text, f"{path} refers to ../shared"


def test_src_never_imports_the_test_doubles():
    # the tests' doubles live in the repository's top-level testing/ folder, which is not shipped
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            assert not any(n == "testing" or n.startswith("testing.") for n in names), path
