"""``metrics.csv`` of a run: one row per ``run.log_every`` steps (means over them) and one per validation."""
from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Mapping

from dsfnet.train.losses import TERMS

CSV_FIELDS = ["time", "epoch", "step", "stage", "lr", "loss", *TERMS, "grad_norm", "samples_per_s", "skipped",
              "val_nme", "val_pose_mae"]


class CsvLog:
    """Append rows to ``metrics.csv`` (header written once; flushed per row; floats with 6 significant digits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._new = not path.exists() or path.stat().st_size == 0

    def write(self, row: Mapping[str, Any]) -> None:
        row = dict(row)
        row.setdefault("time", f"{time.time():.1f}")
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
            if self._new:
                w.writeheader()
                self._new = False
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
