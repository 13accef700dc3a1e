"""``dsfnet eval``: evaluate predictors on a folder in AFLW2000-3D layout (images + .mat)."""
from __future__ import annotations

import argparse
import sys

from dsfnet.teacher.constants import ENV_TEACHER_DIR, TEACHER_STATS, TEACHER_WEIGHTS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate on an AFLW2000-3D-style folder (NME by yaw bin, dense NME, pose MAE, occlusion)",
        description="Evaluate predictors on a folder of images + AFLW2000-3D .mat files. Crops come from the "
                    "ground-truth landmarks (each predictor's own rule). Prints a table; optionally writes JSON "
                    "with every number and per-image errors, and a PNG plot (CED, or NME vs occlusion).")
    p.add_argument("dataset", metavar="DATASET_DIR", help="folder with NAME.jpg + NAME.mat (optional gt.npz)")
    p.add_argument("--predictor", choices=["dsfnet", "teacher", "gt"], default="dsfnet",
                   help="what to evaluate (gt = the annotation itself, a pipeline check: every error is 0)")
    p.add_argument("--weights", help="checkpoint of our network (--predictor dsfnet)")
    p.add_argument("--config", choices=["lite", "paper"], default="lite",
                   help="network variant (dsfnet): lite (weights shipped) or paper (no shipped weights: pass --weights)")
    p.add_argument("--baseline", choices=["teacher"], help="also evaluate this baseline")
    p.add_argument("--teacher-dir", default=None,
                   help=f"folder with 3DDFA_V2's {TEACHER_WEIGHTS} and {TEACHER_STATS} "
                        f"(default: ${ENV_TEACHER_DIR})")
    p.add_argument("--occlude", default=None, metavar="COVERAGE|sweep",
                   help="paste synthetic occluders over this fraction of the face box (0..1, or a percentage "
                        "like 30%%); 'sweep' runs 0,10,20,30,40,50%%")
    p.add_argument("--seed", type=int, default=0, help="occluder seed (default 0)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--json", dest="json_out", metavar="OUT.json", help="write all numbers and per-image errors")
    p.add_argument("--plot", metavar="OUT.png", help="write a plot (CED, or NME vs coverage for a sweep)")
    p.add_argument("--quiet", action="store_true", help="no per-image progress on stderr")
    p.set_defaults(func=run)


def parse_coverages(text: str | None) -> tuple[float, ...]:
    """``None`` → (0,), ``"sweep"`` → 0..0.5, ``"0.3"`` / ``"30%"`` / ``"30"`` → (0.3,)."""
    from dsfnet.eval.runner import SWEEP_COVERAGES

    if text is None:
        return (0.0,)
    t = text.strip().lower()
    if t == "sweep":
        return SWEEP_COVERAGES
    try:
        v = float(t.rstrip("%"))
    except ValueError:
        raise ValueError(f"--occlude must be a fraction in [0, 1], a percentage, or 'sweep'; got {text!r}") from None
    if t.endswith("%") or v > 1.0:
        v /= 100.0
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"--occlude must be within 0..1 (or 0..100%), got {text!r}")
    return (v,)


def _teacher(args, face_model):
    from dsfnet.eval.predictor import TeacherPredictor
    from dsfnet.teacher import resolve_teacher_dir

    folder = resolve_teacher_dir(args.teacher_dir)
    if not folder:
        raise ValueError(f"the teacher needs --teacher-dir DIR or ${ENV_TEACHER_DIR} (a folder with 3DDFA_V2's "
                         f"{TEACHER_WEIGHTS} and {TEACHER_STATS})")
    return TeacherPredictor.from_dir(folder, face_model, device=args.device)


def _load_face_model():
    try:
        from dsfnet.facemodel import load_face_model
    except ImportError:  # older layout: not re-exported yet
        from dsfnet.facemodel.model import load_face_model
    return load_face_model()


def run(args: argparse.Namespace) -> int:
    try:
        coverages = parse_coverages(args.occlude)
    except ValueError as exc:
        print(f"dsfnet eval: {exc}", file=sys.stderr)
        return 2
    from dsfnet.eval.aflw2000 import AFLW2000Folder
    from dsfnet.eval.predictor import GroundTruthPredictor, create_dsfnet_predictor
    from dsfnet.eval.runner import format_table, plot_results, run as run_eval, write_json
    try:
        face_model = _load_face_model()
        dataset = AFLW2000Folder(args.dataset, face_model=face_model, limit=args.limit)
        predictors = []
        if args.predictor == "gt":
            predictors.append(GroundTruthPredictor())
        elif args.predictor == "teacher":
            predictors.append(_teacher(args, face_model))
        else:
            predictors.append(create_dsfnet_predictor(args.weights, args.config, args.device))
        if args.baseline == "teacher" and args.predictor != "teacher":
            predictors.append(_teacher(args, face_model))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"dsfnet eval: {exc}", file=sys.stderr)
        return 2

    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    results = run_eval(predictors, dataset, coverages=coverages, seed=args.seed, log=log)
    print(format_table(results))
    if args.json_out:
        write_json(results, args.json_out)
        print(f"wrote {args.json_out}")
    if args.plot:
        plot_results(results, args.plot)
        print(f"wrote {args.plot}")
    return 0
