"""``dsfnet fit``: fit the 3DMM (pose, shape, expression) to 68 given landmarks of one image."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``dsfnet fit IMAGE --landmarks FILE [--convention 3d|2d|inner] [--output J] [--draw P]``."""
    p = subparsers.add_parser(
        "fit",
        help="fit the face model to 68 landmarks (pose, shape, expression)",
        description=(
            "Fit pose (Pose_Para), shape and expression of the built-in face model to 68 landmarks in image "
            "pixels. Conventions: 3d = each landmark is a fixed model vertex (AFLW2000-3D pt3d_68); 2d = the jaw "
            "points lie on the visible outline (300-W), matched along the silhouette; inner = only the 51 inner "
            "points. Landmark files: .json [[x,y]x68], .pts/.txt (iBUG), .npy, .mat (pt3d_68 or pt2d)."
        ),
    )
    p.add_argument("image", type=Path, help="the photo (its height enters Pose_Para)")
    p.add_argument("--landmarks", type=Path, required=True, metavar="FILE", help="68 landmarks, image pixels")
    p.add_argument("--convention", choices=("3d", "2d", "inner"), default="3d",
                   help="landmark convention (default: 3d)")
    p.add_argument("--output", type=Path, default=None, metavar="OUT.json", help="write the fitted parameters here")
    p.add_argument("--draw", type=Path, default=None, metavar="OUT.png",
                   help="write the image with the given (green) and fitted (red) landmarks")
    p.add_argument("--face-model", type=Path, default=None, metavar="PATH",
                   help="a 3DDFA_V2 .pkl or face3d BFM .mat instead of the built-in model")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Fit and report; returns 0, or 1 with a message on stderr."""
    from dsfnet.data.fitting import FitOptions, fit_landmarks, landmark_nme, load_landmarks
    from dsfnet.facemodel.model import load_face_model
    from dsfnet.io.image import read_image
    from dsfnet.io.writers import atomic_write_text, write_image

    try:
        image = read_image(args.image)
        landmarks = load_landmarks(args.landmarks)
        model = load_face_model(args.face_model)
        result = fit_landmarks(model, landmarks, image.shape[0], FitOptions(convention=args.convention))
    except (FileNotFoundError, ValueError) as exc:
        print(f"dsfnet fit: {exc}", file=sys.stderr)
        return 1
    pitch, yaw, roll = result.pose_degrees
    print(f"pose (degrees): pitch {pitch:.2f}  yaw {yaw:.2f}  roll {roll:.2f}   scale {result.pose_para[6]:.6g}")
    used = result.inlier_weights > 0
    print(f"residual: {result.residual_px:.2f} px mean over {int(used.sum())} points "
          f"(NME {100 * landmark_nme(result.landmarks, landmarks):.2f}% over 68), {result.n_iter} iterations; "
          f"{int(((result.inlier_weights < 0.5) & used).sum())} points down-weighted")
    if args.output is not None:
        payload = {"image": str(args.image), "image_height": int(image.shape[0]), "image_width": int(image.shape[1]),
                   "convention": args.convention, "face_model": model.name,
                   "face_model_fingerprint": model.fingerprint,
                   "shape_normalised": True, **result.to_dict()}
        atomic_write_text(args.output, json.dumps(payload, indent=1))
        print(f"wrote {args.output}")
    if args.draw is not None:
        from dsfnet.io.draw import draw_landmarks

        canvas = draw_landmarks(image, landmarks, visible_color=(40, 220, 40))
        canvas = draw_landmarks(canvas, result.landmarks, visible_color=(230, 40, 40))
        write_image(args.draw, canvas)
        print(f"wrote {args.draw}")
    return 0
