"""Bookkeeping of a run folder that must survive kills: checksums of checkpoints, the resume point, stale
temporary files, ``metrics.csv`` rows of redone steps, and a lock so that one training writes a folder.

* Every checkpoint the trainer writes gets a sidecar ``NAME.sha256`` (hex SHA-256 of the file), written after it;
  :func:`checksum_ok` compares them (None when there is no sidecar, e.g. a folder from an older dsfnet).
* :func:`resume_candidates`: ``last.pt`` first, then the ``epoch_NNN.pt`` files, newest first. The trainer resumes
  from the first one that passes its checksum and loads; it says so when it skips one.
* :func:`remove_stale_temp_files`: the ``.NAME.*.tmp`` files an atomic write leaves when the process is killed.
* :func:`drop_rows_after`: the rows of ``metrics.csv`` past the resumed step (they are redone).
"""
from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

from dsfnet.io.writers import atomic_write_text

__all__ = ["checksum_ok", "drop_rows_after", "remove_stale_temp_files", "resume_candidates", "write_checksum"]

_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def write_checksum(path: str | Path) -> Path:
    """Write ``path.sha256`` (atomically) for the file ``path``; returns the sidecar's path."""
    path = Path(path)
    side = path.with_name(path.name + ".sha256")
    atomic_write_text(side, _sha256(path) + "\n")
    return side


def checksum_ok(path: str | Path) -> bool | None:
    """True / False: the file matches / does not match its ``.sha256`` sidecar; None: no sidecar."""
    path = Path(path)
    side = path.with_name(path.name + ".sha256")
    if not side.is_file():
        return None
    return side.read_text(encoding="utf-8").strip() == _sha256(path)


def resume_candidates(run_dir: str | Path, last_name: str = "last.pt") -> list[Path]:
    """Checkpoints a run can resume from, best first: ``last.pt``, then ``epoch_NNN.pt`` newest first."""
    run_dir = Path(run_dir)
    epochs = sorted((int(m.group(1)), p) for p in run_dir.glob("epoch_*.pt") if (m := _EPOCH_FILE.match(p.name)))
    found = [run_dir / last_name] if (run_dir / last_name).is_file() else []
    return found + [p for _, p in reversed(epochs)]


def remove_stale_temp_files(run_dir: str | Path) -> list[str]:
    """Delete ``.NAME.*.tmp`` files left by killed atomic writes; returns their names."""
    gone = []
    for p in sorted(Path(run_dir).glob(".*.tmp")):
        if p.is_file():
            p.unlink()
            gone.append(p.name)
    return gone


def drop_rows_after(csv_path: str | Path, step: int) -> int:
    """Keep only the rows of ``csv_path`` whose ``step`` is at most ``step`` (the resumed step: later rows were
    logged by steps that are redone); returns how many rows were dropped."""
    csv_path = Path(csv_path)
    if not csv_path.is_file() or csv_path.stat().st_size == 0:
        return 0
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        rows = list(reader)
    keep = [r for r in rows if not r.get("step") or int(float(r["step"])) <= step]
    if len(keep) == len(rows):
        return 0
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\r\n")
    w.writeheader()
    w.writerows(keep)
    atomic_write_text(csv_path, buf.getvalue())
    return len(rows) - len(keep)
