"""The end of a build: records → ``OUT/{train,val}.jsonl``, the report (counts, yaw histogram, failures;
``OUT/report.json``) and the optional precomputed caches ``OUT/cache_*``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dsfnet.data.sources import Item

#: yaw histogram bin edges (degrees) of the report
YAW_BINS = (-90, -75, -60, -45, -30, -15, 0, 15, 30, 45, 60, 75, 90)


def load_records(out: Path, items: list[Item]) -> list[dict]:
    """The records ``OUT/items/<key>.json`` of ``items`` that exist (in ``items``' order)."""
    records = []
    for it in items:
        p = out / "items" / f"{it.key}.json"
        if p.is_file():
            records.append(json.loads(p.read_text(encoding="utf-8")))
    return records


def write_indexes(out: Path, records: list[dict]) -> None:
    """``OUT/train.jsonl`` and ``OUT/val.jsonl`` from the records' samples (:func:`dsfnet.data.sample.write_index`)."""
    from dsfnet.data.sample import FaceSample, write_index

    for split in ("train", "val"):
        samples = [FaceSample.from_json(s, base=out) for r in records if r["split"] == split for s in r["samples"]]
        write_index(samples, out / f"{split}.jsonl")


def summarize(records: list[dict], elapsed: float = 0.0, n_built_now: int = 0) -> dict:
    """Counts, yaw histogram (degrees, :data:`YAW_BINS`), fit quality and failures of a build."""
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] != "ok"]
    yaws = {"original": [], "profiled": []}
    for r in ok:
        for s in r["samples"]:
            yaws["profiled" if s["source"].endswith("profiled") else "original"].append(np.degrees(s["pose_para"][1]))
    hist = {k: np.histogram(np.clip(v, -90, 90), bins=YAW_BINS)[0].tolist() for k, v in yaws.items()}
    nmes = [r["fit_nme"] for r in ok if r.get("fit_nme") is not None]
    tnmes = [r["teacher_nme"] for r in ok if r.get("teacher_nme") is not None]
    pnmes = [r["teacher_pass_nme"] for r in ok if r.get("teacher_pass_nme") is not None]
    pseudo = [r for r in ok if r.get("label") == "teacher"]
    return {
        "faces": len(records), "ok": len(ok), "failed": len(failed),
        "samples": sum(len(r["samples"]) for r in ok),
        "train_samples": sum(len(r["samples"]) for r in ok if r["split"] == "train"),
        "val_samples": sum(len(r["samples"]) for r in ok if r["split"] == "val"),
        "train_identities": len({r["identity"] for r in ok if r["split"] == "train"}),
        "val_identities": len({r["identity"] for r in ok if r["split"] == "val"}),
        "fit_nme_mean": float(np.mean(nmes)) if nmes else None,
        "teacher_nme_mean": float(np.mean(tnmes)) if tnmes else None,
        "pseudo_labelled": len(pseudo),
        "teacher_pass_nme_mean": float(np.mean(pnmes)) if pnmes else None,
        "teacher_pass_nme_p95": float(np.percentile(pnmes, 95)) if pnmes else None,
        "yaw_bins": list(YAW_BINS), "yaw_hist": hist,
        "failures": [{"key": r["key"], "error": r.get("error", "")} for r in failed],
        "seconds": round(elapsed, 1), "built_now": n_built_now,
        "seconds_per_face": round(elapsed / n_built_now, 3) if n_built_now else None,
    }


def format_report(report: dict) -> str:
    """The report as text: counts, a yaw histogram table, the first failures."""
    lines = [
        f"faces: {report['faces']} (ok {report['ok']}, failed {report['failed']}); samples: {report['samples']} "
        f"(train {report['train_samples']} from {report['train_identities']} identities, "
        f"val {report['val_samples']} from {report['val_identities']})",
    ]
    if report.get("fit_nme_mean") is not None:
        t = report.get("teacher_nme_mean")
        lines.append(f"fit NME mean {100 * report['fit_nme_mean']:.2f}%"
                     + (f" (teacher alone {100 * t:.2f}%)" if t is not None else ""))
    if report.get("pseudo_labelled"):
        p, q = report.get("teacher_pass_nme_mean"), report.get("teacher_pass_nme_p95")
        lines.append(f"pseudo-labelled by the teacher alone (no landmark fit): {report['pseudo_labelled']} images"
                     + (f"; first- vs second-pass landmarks NME mean {100 * p:.2f}%, p95 {100 * q:.2f}%"
                        if p is not None else ""))
    if report.get("seconds_per_face"):
        lines.append(f"time: {report['seconds']} s for {report['built_now']} faces "
                     f"({report['seconds_per_face']} s per face)")
    bins = report["yaw_bins"]
    lines.append(f"{'yaw (deg)':>12} | {'original':>8} | {'profiled':>8}")
    lines.append("-" * 36)
    for i in range(len(bins) - 1):
        o, p = report["yaw_hist"]["original"][i], report["yaw_hist"]["profiled"][i]
        lines.append(f"{f'[{bins[i]}, {bins[i + 1]})':>12} | {o:>8} | {p:>8}")
    for f in report["failures"][:10]:
        lines.append(f"failed: {f['key']}: {f['error']}")
    if len(report["failures"]) > 10:
        lines.append(f"... and {len(report['failures']) - 10} more failures (report.json)")
    return "\n".join(lines)


def build_caches(out: Path, crop_size: int, uv_size: int | None = None, face_model=None, face_model_path=None) -> dict:
    """Precompute training crops + GT maps of ``OUT/{train,val}.jsonl`` into ``OUT/cache_{train,val}`` (other
    sizes than 128/128: ``OUT/cache_{train,val}_s{S}_u{U}``, see :func:`dsfnet.data.cache.cache_folder_name`)."""
    from dsfnet.data.cache import CacheWriter, cache_folder_name, default_fields, lite_uv_size
    from dsfnet.data.sample import read_index
    from dsfnet.data.targets import TargetBuilder
    from dsfnet.facemodel.uv import get_uv_layout

    if face_model is None:
        from dsfnet.facemodel.model import load_face_model

        face_model = load_face_model(face_model_path)
    uv_size = uv_size or lite_uv_size()
    builder = TargetBuilder(face_model, get_uv_layout(face_model, uv_size), crop_size)
    counts = {}
    for split in ("train", "val"):
        samples = read_index(out / f"{split}.jsonl")
        counts[split] = len(samples)
        if not samples:
            continue
        fields = default_fields(crop_size, uv_size, face_model.n_shape, face_model.n_exp)
        attrs = {"crop_size": crop_size, "uv_size": uv_size, "face_model": face_model.fingerprint,
                 "source": str(out / f"{split}.jsonl")}
        with CacheWriter(out / cache_folder_name(split, crop_size, uv_size), fields, len(samples), attrs=attrs) as writer:
            for i, s in enumerate(samples):
                writer[i] = builder.build_sample(s)
    return counts
