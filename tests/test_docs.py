"""Docstrings and comments stand alone: they cite files of this repository only.

Two checks over the text files of ``src/``, ``testing/``, ``benchmarks/`` and ``scripts/``:

* no citation of the design spec the repository does not ship (``spec §…``, a bare ``§3.4``, ``DSFNET_SPEC``) or of
  the ``INTERFACES.md`` that never existed (the training-sample dict is documented in ``dsfnet.data.sample``);
* every ``docs/<name>.md`` (or ``docs/<NAME>``) a file names exists in ``docs/``.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "testing", "benchmarks", "scripts")
TEXT_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".txt", ".cfg", ".toml", ".json", ".rst"}

#: citations of documents the repository lacks
FORBIDDEN = re.compile(r"spec\s*§|\bspec\s+\d|§\s*\d|DSFNET_SPEC|INTERFACES\.md|docs(?:``)?/INTERFACES", re.IGNORECASE)
#: ``docs/NAME.md``, ``docs/NAME`` or the split form ``docs``/NAME.md, not inside another path or a URL
DOC_REF = re.compile(r"(?<![\w/.\-])docs(?:``)?/([A-Za-z][\w\-]*)(\.md)?")


def _text_files() -> list[Path]:
    files = []
    for top in SCANNED:
        folder = ROOT / top
        if folder.is_dir():
            files += [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in TEXT_SUFFIXES
                      and "__pycache__" not in p.parts]
    return files


def test_scan_finds_the_sources() -> None:
    files = _text_files()
    assert any(p.name == "sample.py" and p.parent.name == "data" for p in files)
    assert len(files) > 100


def test_patterns() -> None:
    for bad in ("(spec §3.4)", "DSFNET_SPEC §2.5", "see §9.4's fix", "``docs``/INTERFACES.md", "docs/INTERFACES"):
        assert FORBIDDEN.search(bad), bad
    for ok in ("docs/CONVENTIONS.md", "§ sign", "specification", "inspect"):
        assert not FORBIDDEN.search(ok), ok
    refs = [m.group(1) for m in DOC_REF.finditer("``docs/CONVENTIONS.md`` and ``docs``/X.md; ../shared/docs/Y.md, "
                                                "https://a.b/docs/z")]
    assert refs == ["CONVENTIONS", "X"]


def test_no_citation_of_missing_documents() -> None:
    bad = []
    for path in _text_files():
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FORBIDDEN.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not bad, "cite docs/*.md or the owning module instead:\n" + "\n".join(bad)


def test_cited_docs_exist() -> None:
    missing = []
    for path in _text_files():
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in DOC_REF.finditer(line):
                name = m.group(1) + ".md"
                if not (ROOT / "docs" / name).is_file():
                    missing.append(f"{path.relative_to(ROOT)}:{no}: docs/{name}")
    assert not missing, "cited but not in docs/:\n" + "\n".join(missing)
