"""``dsfnet predict``: align faces in images, folders, videos or a camera; write ``results.jsonl`` (+ meshes, overlays).

Heavy modules (torch, OpenCV, the model) are imported inside :func:`run`, so ``dsfnet --help`` stays fast.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")

EPILOG = """\
output: DIR/results.jsonl, one JSON object per image (per frame for videos):
  {"image": PATH as given, "frame": int or null, "width": W, "height": H,
   "faces": [{"bbox": [x0,y0,x1,y1], "score": s, "landmarks_2d": 68x[x,y], "landmarks_3d": 68x[x,y,z],
              "visibility": 68x v, "self_visibility": 68x v, "external_visibility": 68x v,
              "pose": {"yaw","pitch","roll" (degrees), "rotation": 3x3}, "mesh": FILE|null}]}
  visibility = self_visibility (not hidden by the face itself) x external_visibility (not covered by a mask,
  hand, hair...); >= 0.5 = seen (docs/CONVENTIONS.md, Visibility).
  Pixels: x right, y down, z toward the camera relative to the nose tip (landmark 30). Pose: 300W-LP Pose_Para
  convention. Faces follow the order of --boxes when given, else the detection score. Meshes (--save-mesh) are
  in image pixels with y flipped up (y = H - y_image) so viewers show them upright. Images missing from
  BOXES.json use the detector. Exit code 0 when every input worked, 1 when some failed, 2 on a usage error.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict",
        help="align faces in images, folders, videos or a camera",
        description="3D dense face alignment of every face in the inputs (CPU by default).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="images, folders (searched recursively), videos (.mp4 .avi .mov .mkv .webm) or a camera index such as 0")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--boxes", metavar="BOXES.json", help='face boxes per image: {"img.jpg": [[x0, y0, x1, y1], ...]}')
    p.add_argument("--save-mesh", choices=("obj", "ply"), help="write each face's dense mesh in this format")
    p.add_argument("--draw", action="store_true", help="write annotated images (and videos: DIR/<name>_overlay.mp4)")
    p.add_argument("--config", default="lite", help="model variant: lite (default) or paper")
    p.add_argument("--weights", metavar="PATH", help="torch checkpoint (.pt) or, for --backend onnx, the export-onnx folder; default: packaged weights")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="inference engine (default torch)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--detector", default="yuface", help="face detector name (default yuface)")
    p.add_argument("--sample", action="store_true", help="also process the bundled sample photo")
    p.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop each video/camera after N frames (N >= 1)")
    p.add_argument("--no-smooth", action="store_true", help="videos: no One-Euro smoothing of landmarks and pose")
    p.set_defaults(func=run)
    return p


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a usage error, exit 2, otherwise)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {n}")
    return n


def _output_problem(out: Path) -> str | None:
    """Why ``out`` cannot become the output folder (checked before the model loads; nothing is created), or None."""
    if out.exists():
        if not out.is_dir():
            return "exists and is not a folder"
        return None if os.access(out, os.W_OK | os.X_OK) else "the folder is not writable"
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is a file, not a folder"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"cannot be created: {parent} is not writable"


def _err(msg: str) -> None:
    print(f"dsfnet predict: {msg}", file=sys.stderr)


def build_aligner(args):
    """The :class:`~dsfnet.inference.FaceAligner` for the parsed arguments (tests replace this function)."""
    from dsfnet.inference import FaceAligner

    return FaceAligner(device=args.device, config=args.config, weights=args.weights, detector=args.detector,
                       backend=args.backend)


def expand_inputs(paths: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """``([(kind, path), ...], [error lines])`` with kind ``image`` | ``video`` | ``camera``; folders are walked."""
    from dsfnet.io import is_camera

    items, errors = [], []
    for given in paths:
        p = Path(given)
        if is_camera(given):
            items.append(("camera", given))
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            if not found:
                errors.append(f"{given}: folder holds no image or video files ({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})")
            for f in found:
                items.append(("video" if f.suffix.lower() in VIDEO_SUFFIXES else "image", str(f)))
        elif not p.exists():
            errors.append(f"{given}: no such file or folder")
        else:
            items.append(("video" if p.suffix.lower() in VIDEO_SUFFIXES else "image", given))
    return items, errors


class _Outputs:
    """Names of the per-input files in DIR (unique even for equal stems)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._used: set[str] = set()

    def stem(self, path: str) -> str:
        base = Path(path).stem if not path.isdigit() else f"camera{path}"
        name, n = base, 1
        while name in self._used:
            n += 1
            name = f"{base}_{n}"
        self._used.add(name)
        return name


def _record(given: str, frame, image, faces, meshes) -> dict:
    h, w = image.shape[:2]
    return {"image": given, "frame": frame, "width": int(w), "height": int(h),
            "faces": [f.to_dict(mesh=m) for f, m in zip(faces, meshes)]}


def _save_meshes(args, out: Path, stem: str, faces, height: int) -> list:
    if not args.save_mesh:
        return [None] * len(faces)
    from dsfnet.geometry import flip_y_points
    from dsfnet.io import write_mesh

    names = []
    for i, f in enumerate(faces):
        rel = Path("meshes") / f"{stem}_{i}.{args.save_mesh}"
        # y up (y = H - y), so that mesh viewers show the face upright
        write_mesh(out / rel, flip_y_points(f.vertices, height), f.triangles, fmt=args.save_mesh,
                   comment="dsfnet mesh: image pixels, x right, y up (y = H - y_image), z toward the camera")
        names.append(rel.as_posix())
    return names


def _process_image(args, aligner, boxes_db, given: str, out: Path, names: _Outputs, writer) -> None:
    from dsfnet.io import read_image, write_image

    image = read_image(given)
    boxes = boxes_db.lookup(given) if boxes_db is not None else None
    faces = aligner.predict(image, boxes=boxes)
    stem = names.stem(given)
    meshes = _save_meshes(args, out, stem, faces, image.shape[0])
    if args.draw:
        from dsfnet.inference.visualize import draw_faces

        write_image(out / f"{stem}_overlay.jpg", draw_faces(image, faces))
    writer.write(_record(given, None, image, faces, meshes))


def _process_video(args, aligner, boxes_db, kind: str, given: str, out: Path, names: _Outputs, writer) -> int:
    """Align every frame; returns the number of frames. Ctrl-C stops a camera cleanly."""
    import time

    from dsfnet.inference import FaceTracker
    from dsfnet.io.video import VideoReadError, VideoWriterRGB, iter_video_frames, open_video

    cap, info = open_video(given)
    frames = iter_video_frames(given, args.max_frames, opened=(cap, info))
    fps = info.fps if info.fps and info.fps > 0 else 30.0
    stem = names.stem(given)
    tracker = FaceTracker(aligner, smooth=not args.no_smooth)
    boxes = boxes_db.lookup(given) if boxes_db is not None else None
    video_out = None
    done = 0
    t0 = time.monotonic()
    from tqdm import tqdm

    bar = tqdm(total=info.frame_count or None, desc=Path(given).name if kind == "video" else f"camera {given}",
               unit="frame", disable=None, file=sys.stderr, leave=False)
    try:
        try:
            for n, rgb in frames:
                t = n / fps if kind == "video" else time.monotonic() - t0 + 1e-6 * n
                faces = tracker.update(rgb, t, boxes=boxes if n == 0 else None)
                meshes = _save_meshes(args, out, f"{stem}_f{n:06d}", faces, rgb.shape[0])
                if args.draw:
                    from dsfnet.inference.visualize import draw_faces

                    if video_out is None:
                        video_out = VideoWriterRGB(out / f"{stem}_overlay.mp4", fps, (rgb.shape[1], rgb.shape[0]))
                    video_out.write(draw_faces(rgb, faces, mesh="wireframe"))
                writer.write(_record(given, n, rgb, faces, meshes))
                done = n + 1
                bar.update(1)
        except KeyboardInterrupt:
            if kind != "camera":
                raise
            # Ctrl-C is how a camera run ends: keep what was recorded
    except BaseException:
        if video_out is not None:
            video_out._discard()
        raise
    finally:
        frames.close()
        cap.release()  # also when the generator never started (releasing twice is harmless)
        bar.close()
    if video_out is not None:
        video_out.close()
    if done == 0:
        raise VideoReadError(f"no frame could be decoded from {given}")
    return done


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dsfnet.detect import BoxesDetector
    from dsfnet.inference import WeightsNotFoundError
    from dsfnet.io import JsonlWriter

    paths = list(args.paths)
    if args.sample:
        from dsfnet.assets import sample_image_path

        paths.append(str(sample_image_path()))
    if not paths:
        _err("no input: give image/video/folder paths, a camera index, or --sample")
        return 2
    out = Path(args.output)
    problem = _output_problem(out)
    if problem:
        _err(f"--output {out}: {problem}")
        return 2
    boxes_db = None
    if args.boxes:
        try:
            boxes_db = BoxesDetector.from_file(args.boxes)
        except (OSError, ValueError) as exc:
            _err(f"--boxes: {exc}")
            return 2
    items, errors = expand_inputs(paths)
    for e in errors:
        _err(e)
    failed = len(errors)
    if not items:
        _err("nothing to process")
        return 2 if not failed else 1
    try:
        aligner = build_aligner(args)
    except WeightsNotFoundError as exc:
        _err(str(exc))
        return 2
    except (ValueError, ImportError) as exc:
        _err(f"cannot set up the model: {exc}")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    names = _Outputs(out)
    n_images = n_frames = 0
    with JsonlWriter(out / "results.jsonl") as writer:
        bar = tqdm(items, desc="predict", unit="input", disable=None if len(items) > 1 else True, file=sys.stderr)
        for kind, given in bar:
            try:
                if kind == "image":
                    _process_image(args, aligner, boxes_db, given, out, names, writer)
                    n_images += 1
                else:
                    n_frames += _process_video(args, aligner, boxes_db, kind, given, out, names, writer)
            except KeyboardInterrupt:
                _err("interrupted: results.jsonl not written")
                raise
            except Exception as exc:  # one clear line per bad input; the run goes on
                failed += 1
                bar.clear()
                _err(f"{given}: {exc}" if isinstance(exc, (ValueError, OSError)) else f"{given}: {type(exc).__name__}: {exc}")
    print(f"dsfnet predict: {n_images} image(s), {n_frames} video frame(s), {failed} failed -> {out / 'results.jsonl'}",
          file=sys.stderr)
    return 1 if failed else 0
