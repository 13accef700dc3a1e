"""``dsfnet data``: look at training samples (``show``) and build a training set (``build``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dsfnet.data.build as build_pkg  # light at start-up: BuildConfig only, the stages are imported when run
from dsfnet.data.build.config import BuildConfig, default
from dsfnet.teacher.constants import ENV_TEACHER_DIR, TEACHER_STATS, TEACHER_WEIGHTS


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``dsfnet data show SAMPLE... --output PNG`` and ``dsfnet data build ...``."""
    p = subparsers.add_parser("data", help="training data: show samples' ground truth, build a training set",
                              description="Training data tools.")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    show = sub.add_parser(
        "show",
        help="draw a sample's crop and every ground-truth map into one PNG",
        description=(
            "Make the training ground truth of each SAMPLE and draw it as one row of labelled tiles: crop, "
            "position map (x, y, z as RGB), offset map, grid, seg, depth, landmarks (green: keypoint vertices, "
            "red: read from the position map) and an occluded crop. SAMPLE is a 300W-LP / AFLW2000-3D .mat "
            "(or its image, with the .mat next to it), a sample index INDEX.jsonl (every entry, up to --limit) "
            "or INDEX.jsonl:N (entry N, 0-based)."
        ),
    )
    show.add_argument("samples", nargs="+", metavar="SAMPLE", help=".mat, image with a .mat beside it, or index.jsonl[:N]")
    show.add_argument("--output", type=Path, required=True, metavar="PNG", help="panel image to write")
    show.add_argument("--crop-size", type=int, default=128, help="crop size S (128)")
    show.add_argument("--uv-size", type=int, default=None, help="UV map size U (default: the lite model's)")
    show.add_argument("--face-model", type=Path, default=None, metavar="PATH", help="face model file (default: built-in)")
    show.add_argument("--augment", action="store_true", help="add a row with a random augmentation of each sample")
    show.add_argument("--coverage", type=float, default=0.3, help="occluder coverage of the face box (0.3)")
    show.add_argument("--seed", type=int, default=0, help="seed of the occluder and augmentation (0)")
    show.add_argument("--limit", type=int, default=8, help="at most this many entries per index (8)")
    show.set_defaults(func=run_show)

    build = sub.add_parser("build", help="build a 3DMM-labelled training set from a 68-landmark photo set",
                           description=(build_pkg.__doc__ or "").strip().splitlines()[0])
    add_build_arguments(build)
    build.set_defaults(func=run_build)

    conv = sub.add_parser(
        "convention",
        help="measure how a 68-landmark set's annotations sit against the teacher's placement",
        description=(
            "Run the 3DDFA_V2 teacher on every annotated face of a ytf68-style folder and fit one similarity "
            "(scale about the inner points' centre, shift in face units) taking the annotations' inner points to "
            "the teacher's; write it as JSON for `dsfnet data build --annotation-correction` "
            "(dsfnet.data.convention)."
        ),
    )
    conv.add_argument("source", type=Path, help="ytf68-style folder (landmarks.jsonl + images)")
    conv.add_argument("--out", type=Path, required=True, metavar="JSON", help="correction file to write")
    conv.add_argument("--teacher-dir", type=Path, default=None,
                      help=f"3DDFA_V2 folder (default: ${ENV_TEACHER_DIR})")
    conv.add_argument("--splits", default="training", help="source splits to use, comma-separated (training)")
    conv.add_argument("--max-yaw", type=float, default=30.0, help="leave out faces the teacher turns further (30 deg)")
    conv.add_argument("--limit", type=int, default=None, help="only the first N faces (sorted by name)")
    conv.set_defaults(func=run_convention)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def add_build_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register the options of ``dsfnet data build`` on ``parser`` (defaults: :class:`dsfnet.data.build.BuildConfig`'s)."""
    parser.add_argument("source", type=Path,
                        help="ytf68-style folder (landmarks.jsonl + images), or with --pseudo any folder of images")
    parser.add_argument("--pseudo", action="store_true",
                        help="label every image below SOURCE (recursively) with the teacher alone: yuface detection, "
                             "two teacher passes, no landmark fit; identity = hash of the pixels (needs the teacher; "
                             "--splits and --max-nme do not apply)")
    parser.add_argument("--source-name", default=default("source_name"),
                        help="--pseudo: the samples' source tag and identity prefix (default: SOURCE's folder name)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; reruns resume)")
    parser.add_argument("--teacher-dir", type=Path, default=None,
                        help=f"3DDFA_V2 folder with {TEACHER_WEIGHTS} and {TEACHER_STATS} (default: ${ENV_TEACHER_DIR}; "
                             "without one the fit starts from its closed-form initialisation)")
    parser.add_argument("--no-teacher", action="store_true", help="do not use the teacher even if one is set")
    parser.add_argument("--views", type=int, default=default("views"),
                        help="profiled views per face (0 = none; default 1)")
    parser.add_argument("--max-yaw", type=float, default=default("max_yaw"),
                        help="largest |yaw| of profiled views, degrees")
    parser.add_argument("--max-pitch", type=float, default=default("max_pitch"),
                        help="profiled views also get a pitch drawn in [-MAX, MAX] degrees (0 = keep the photo's)")
    parser.add_argument("--val-fraction", type=float, default=default("val_fraction"),
                        help="fraction of identities held out (0.1)")
    parser.add_argument("--splits", default=",".join(default("splits")),
                        help="source splits to use, comma-separated (training)")
    parser.add_argument("--limit", type=int, default=default("limit"), help="only the first N faces (sorted by name)")
    parser.add_argument("--workers", type=int, default=default("workers"),
                        help="worker processes (default 2; 0 = in-process)")
    parser.add_argument("--max-nme", type=float, default=default("max_nme"),
                        help="fail items whose fit NME exceeds this (0.08)")
    parser.add_argument("--seed", type=int, default=default("seed"), help="seed of the profiled yaws")
    parser.add_argument("--cache", action="store_true", help="also precompute crops and GT maps into OUT/cache_*")
    parser.add_argument("--crop-size", type=int, default=default("crop_size"), help="crop size S of the cache (128)")
    parser.add_argument("--uv-size", type=int, default=default("uv_size"),
                        help="UV size U of the cache (default: the lite model's)")
    parser.add_argument("--face-model", type=Path, default=default("face_model"),
                        help="face model file (default: built-in)")
    parser.add_argument("--annotation-correction", type=Path, default=default("annotation_correction"), metavar="JSON",
                        help="move every annotation by this similarity before the fit (`dsfnet data convention`: "
                             "the annotations' average offset from the teacher's placement); kept in "
                             "OUT/annotation_correction.json, and a rerun must give the same file")
    parser.add_argument("--convention", choices=("2d", "3d"), default=default("convention"),
                        help="the landmarks' convention: 2d (jaw on the visible outline, 300-W/ytf68; default) or 3d "
                             "(fixed model vertices, AFLW2000-3D / teacher-style pseudo-labels)")
    return parser


def build_config(args: argparse.Namespace) -> BuildConfig:
    """The :class:`dsfnet.data.build.BuildConfig` of parsed ``dsfnet data build`` options: ``--no-teacher`` wins,
    else ``--teacher-dir``, else ``$DSFNET_TEACHER_DIR`` (ValueError on a bad value)."""
    from dsfnet.teacher.files import resolve_teacher_dir

    return BuildConfig(
        source=args.source, out=args.out, pseudo=args.pseudo, source_name=args.source_name,
        teacher_dir=None if args.no_teacher else resolve_teacher_dir(args.teacher_dir),
        views=args.views, max_yaw=args.max_yaw, max_pitch=args.max_pitch, val_fraction=args.val_fraction,
        splits=_splits(args.splits), limit=args.limit,
        workers=args.workers, max_nme=args.max_nme, seed=args.seed, cache=args.cache, crop_size=args.crop_size,
        uv_size=args.uv_size, face_model=args.face_model, annotation_correction=args.annotation_correction,
        convention=args.convention)


def _splits(text: str) -> tuple[str, ...]:
    """``--splits``: comma-separated names, blanks dropped."""
    return tuple(s.strip() for s in str(text).split(",") if s.strip())


def run_build(args: argparse.Namespace) -> int:
    """Build (:func:`dsfnet.data.build.build`); 0, or 1 when nothing could be built (a message on stderr)."""
    from dsfnet.data.build import build

    try:
        report = build(build_config(args))
    except (FileNotFoundError, ValueError) as exc:
        print(f"dsfnet data build: {exc}", file=sys.stderr)
        return 1
    return 0 if report["samples"] > 0 else 1


def run_convention(args: argparse.Namespace) -> int:
    """Estimate the annotation correction and write it; 0, or 1 with a message on stderr."""
    import json

    from dsfnet.data.convention import estimate_against_teacher
    from dsfnet.teacher import resolve_teacher_dir

    teacher_dir = resolve_teacher_dir(args.teacher_dir)
    if not teacher_dir:
        print(f"dsfnet data convention: give --teacher-dir or ${ENV_TEACHER_DIR}", file=sys.stderr)
        return 1
    splits = _splits(args.splits)
    try:
        corr, summary = estimate_against_teacher(args.source, teacher_dir, splits, args.max_yaw, limit=args.limit,
                                                 progress=True)
        corr.save(args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"dsfnet data convention: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")
    return 0


def _expand(samples: list[str], limit: int):
    """Yield ``(title, FaceSample)`` for every SAMPLE argument."""
    from dsfnet.data.sample import FaceSample, read_index

    for arg in samples:
        index_part, _, entry = arg.rpartition(":")
        if index_part.endswith(".jsonl") and entry.isdigit():
            entries = read_index(index_part)
            n = int(entry)
            if n >= len(entries):
                raise ValueError(f"{index_part} has {len(entries)} entries; entry {n} does not exist")
            yield f"{Path(index_part).name}:{n}", entries[n]
            continue
        path = Path(arg)
        if path.suffix == ".jsonl":
            for n, s in enumerate(read_index(path)[:limit]):
                yield f"{path.name}:{n}", s
            continue
        from dsfnet.data.readers import find_image_for, read_mat

        mat = path if path.suffix.lower() == ".mat" else path.with_suffix(".mat")
        if not mat.is_file():
            raise FileNotFoundError(f"{arg}: expected a .mat annotation, an image with a .mat beside it, or an "
                                    f"index .jsonl; {mat} does not exist")
        image = path if path.suffix.lower() != ".mat" else find_image_for(mat)
        if image is None:
            raise FileNotFoundError(f"{mat}: no image with the same name beside it")
        ann = read_mat(mat, n_shape=199, n_exp=29)
        yield path.stem, FaceSample(image=str(image), shape=ann.shape, exp=ann.exp, pose_para=ann.pose_para,
                                    image_height=ann.image_size[0], source="mat")


def run_show(args: argparse.Namespace) -> int:
    """Build each sample's targets and write the panel PNG; 0, or 1 with a message on stderr."""
    import numpy as np

    from dsfnet.data.augment import Augmenter
    from dsfnet.data.cache import lite_uv_size
    from dsfnet.data.occlusion import occlude_sample
    from dsfnet.data.targets import TargetBuilder
    from dsfnet.data.visualize import sample_panel, stack_rows
    from dsfnet.facemodel.model import load_face_model
    from dsfnet.facemodel.uv import get_uv_layout
    from dsfnet.io.writers import write_image

    if args.output.suffix.lower() != ".png":
        print(f"dsfnet data show: --output must be a .png file, got {args.output}", file=sys.stderr)
        return 1
    try:
        fm = load_face_model(args.face_model)
        builder = TargetBuilder(fm, get_uv_layout(fm, args.uv_size or lite_uv_size()), args.crop_size)
        augmenter = Augmenter(builder) if args.augment else None
        rows = []
        for i, (title, sample) in enumerate(_expand(args.samples, args.limit)):
            rng = np.random.default_rng([args.seed, i])
            d = builder.build_sample(sample)
            cov = builder.covered
            occ = occlude_sample(d, rng, args.coverage)
            rows.append(sample_panel(d, cov, landmarks_from_map=builder.codec.landmarks(d["posmap"]), occluded=occ,
                                     title=title))
            if augmenter is not None:
                a = augmenter(d, rng)
                rows.append(sample_panel(a, cov, landmarks_from_map=builder.codec.landmarks(a["posmap"]),
                                         title=f"{title} aug"))
        if not rows:
            raise ValueError("no samples to show")
        write_image(args.output, stack_rows(rows))
    except (FileNotFoundError, ValueError) as exc:
        print(f"dsfnet data show: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({len(rows)} rows)")
    return 0
