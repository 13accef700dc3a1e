"""``dsfnet data``: look at training samples (``show``) and build a training set (``build``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


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

    # every argument goes through to dsfnet.data.build's own parser (imported only when run): no option
    # prefix here, so even --help reaches it
    build = sub.add_parser("build", help="build a 3DMM-labelled training set from a 68-landmark photo set",
                           add_help=False, prefix_chars="\x01", description="See `dsfnet data build --help`.")
    build.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
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
                      help="3DDFA_V2 folder (default: $DSFNET_TEACHER_DIR)")
    conv.add_argument("--splits", default="training", help="source splits to use, comma-separated (training)")
    conv.add_argument("--max-yaw", type=float, default=30.0, help="leave out faces the teacher turns further (30 deg)")
    conv.add_argument("--limit", type=int, default=None, help="only the first N faces (sorted by name)")
    conv.set_defaults(func=run_convention)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def run_convention(args: argparse.Namespace) -> int:
    """Estimate the annotation correction and write it; 0, or 1 with a message on stderr."""
    import json
    import os

    from dsfnet.data.build import ENV_TEACHER
    from dsfnet.data.convention import estimate_against_teacher

    teacher_dir = args.teacher_dir or os.environ.get(ENV_TEACHER)
    if not teacher_dir:
        print(f"dsfnet data convention: give --teacher-dir or ${ENV_TEACHER}", file=sys.stderr)
        return 1
    splits = tuple(s.strip() for s in str(args.splits).split(",") if s.strip())
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


def run_build(args: argparse.Namespace) -> int:
    """Parse the build options and call ``dsfnet.data.build.main`` (owned by the data-build module)."""
    try:
        from dsfnet.data import build as build_mod

        add_arguments, main = build_mod.add_build_arguments, build_mod.main
    except (ImportError, AttributeError) as exc:
        print(f"dsfnet data build: not yet available ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 1
    parser = argparse.ArgumentParser(prog="dsfnet data build",
                                     description=(build_mod.__doc__ or "").strip().splitlines()[0])
    add_arguments(parser)
    ns = parser.parse_args(args.rest)
    try:
        return int(main(ns) or 0)
    except (FileNotFoundError, ValueError) as exc:
        print(f"dsfnet data build: {exc}", file=sys.stderr)
        return 1


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
