"""``dsfnet predict``: align faces in images, folders, videos or a camera; write ``results.jsonl`` (+ meshes, overlays).

Heavy modules (torch, OpenCV, the model) are imported inside :func:`run`, so ``dsfnet --help`` stays fast.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

#: seconds between two progress lines when stderr is not a terminal
PROGRESS_EVERY = 10.0

EPILOG = """\
output: DIR/results.jsonl, one JSON object per image (per frame for videos), appended as each input finishes:
  {"image": PATH as given, "frame": int or null, "width": W, "height": H,
   "faces": [{"bbox": [x0,y0,x1,y1], "score": s, "landmarks_2d": 68x[x,y], "landmarks_3d": 68x[x,y,z],
              "visibility": 68x v, "self_visibility": 68x v, "external_visibility": 68x v,
              "pose": {"yaw","pitch","roll" (degrees), "rotation": 3x3}, "mesh": FILE|null}]}
  visibility = self_visibility (not hidden by the face itself) x external_visibility (not covered by a mask,
  hand, hair...); >= 0.5 = seen (docs/CONVENTIONS.md, Visibility).
  Pixels: x right, y down, z toward the camera relative to the nose tip (landmark 30). Pose: 300W-LP Pose_Para
  convention. Faces follow the order of --boxes when given, else the detection score. Meshes (--save-mesh) are
  in image pixels with y flipped up (y = H - y_image) so viewers show them upright. Images missing from
  BOXES.json use the detector. An input that fails gets {"image": PATH, "frame": null, "error": "..."}.
  Non-UTF-8 bytes in a file name are written as \\xNN.
rerun: a folder holding a previous run is refused unless --resume (skip the images already recorded, redo failed
  ones and videos) or --overwrite (remove the previous results.jsonl, meshes/ and overlays first); two runs cannot
  write one folder at once. Ctrl-C / SIGTERM stop after the input in flight; the records so far stay.
progress: a bar on a terminal, a line every 10 s otherwise, nothing with --quiet; a summary line at the end.
exit codes: 0 every input worked, 1 some failed, 2 usage error, 3 set-up error, 130 interrupted, 143 terminated.
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
    p.add_argument("--no-mesh-colors", action="store_true",
                   help="--save-mesh without vertex colours (default: sampled from the photo)")
    p.add_argument("--render", nargs="+", choices=("depth", "pncc"), default=(), metavar="MAP",
                   help="also write DIR/<name>_depth.png and/or DIR/<name>_pncc.png per image (depth: nearer = "
                        "brighter; pncc: the face's own normalised x, y, z as colours)")
    p.add_argument("--config", default="lite",
                   help="model variant: lite (default; weights shipped) or paper (no shipped weights: train them, pass --weights)")
    p.add_argument("--weights", metavar="PATH",
                   help="torch checkpoint (.pt) or an export-onnx folder / .onnx file; default: packaged weights")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="inference engine: auto (default: ONNX Runtime on the CPU when ONNX weights are found, e.g. "
                        "the packaged ones; else torch), torch or onnx")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--detector", default="yuface", help="face detector name (default yuface)")
    p.add_argument("--sample", action="store_true", help="also process the bundled sample photo")
    p.add_argument("--max-frames", type=_positive_int, metavar="N", help="stop each video/camera after N frames (N >= 1)")
    p.add_argument("--no-smooth", action="store_true", help="videos: no One-Euro smoothing of landmarks and pose")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue a previous run in --output: skip the images its results.jsonl already has")
    again.add_argument("--overwrite", action="store_true",
                       help="replace a previous run in --output (its results.jsonl, meshes/ and overlays)")
    p.add_argument("--quiet", action="store_true", help="no progress output (errors and the summary stay)")
    p.add_argument("--threads", type=_positive_int, default=min(2, os.cpu_count() or 1), metavar="N",
                   help="local engine: images in flight at once (reading, detection and alignment of different images "
                        "overlap; default: min(2, CPUs)); videos are always one at a time")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help='local (default: this process) or ray (an actor pool; pip install "dsfnet[ray]")')
    p.add_argument("--address", metavar="ADDR",
                   help="--engine ray: a cluster to join (auto, ray://host:10001); default: a local Ray instance")
    p.add_argument("--workers", type=_positive_int, default=2, metavar="N", help="--engine ray: actors (default 2)")
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


def _err(msg: str) -> None:
    print(f"dsfnet predict: {msg}", file=sys.stderr)


def aligner_kwargs(args) -> dict:
    """``FaceAligner`` keyword arguments of the parsed arguments (also what each Ray actor builds)."""
    return {"device": args.device, "config": args.config, "weights": args.weights, "detector": args.detector,
            "backend": args.backend}


def build_aligner(args):
    """The :class:`~dsfnet.inference.FaceAligner` for the parsed arguments (tests replace this function)."""
    from dsfnet.inference import FaceAligner

    return FaceAligner(**aligner_kwargs(args))


def expand_inputs(paths: list[str], skipped: list[str] | None = None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``([(kind, path), ...], [(path, error), ...])`` with kind ``image`` | ``video`` | ``camera``; folders are
    walked (symbolic links followed, each real folder once). What a walk cannot use is appended to ``skipped`` as
    one line each: unreadable folders, symbolic-link loops, links that point nowhere."""
    from dsfnet.io import VIDEO_SUFFIXES, image_suffixes, is_camera

    wanted = set(image_suffixes()) | set(VIDEO_SUFFIXES)
    skipped = [] if skipped is None else skipped
    items, errors = [], []
    for given in paths:
        p = Path(given)
        try:
            if is_camera(given):
                items.append(("camera", given))
            elif p.is_dir():
                found = _walk(p, wanted, skipped)
                if not found:
                    errors.append((given, f"folder holds no image or video files ({', '.join(sorted(wanted))})"))
                for f in found:
                    items.append(("video" if f.suffix.lower() in VIDEO_SUFFIXES else "image", str(f)))
            elif p.is_symlink() and not p.exists():
                errors.append((given, "a symbolic link to nothing"))
            elif not p.exists():
                errors.append((given, "no such file or folder"))
            else:
                items.append(("video" if p.suffix.lower() in VIDEO_SUFFIXES else "image", given))
        except OSError as exc:  # e.g. a path inside a folder we may not read
            errors.append((given, f"cannot be read ({exc.strerror or exc})"))
    return items, errors


def _walk(root: Path, wanted: set[str], skipped: list[str]) -> list[Path]:
    """Files below ``root`` with a wanted suffix, sorted; links followed, loops and unreadable parts skipped."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def unreadable(exc: OSError) -> None:
        skipped.append(f"{exc.filename}: unreadable folder ({exc.strerror})")

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:  # reached again through a link: a loop (or a second way in)
            skipped.append(f"{folder}: symbolic-link loop (already walked)")
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in files:
            f = Path(folder) / name
            if f.suffix.lower() not in wanted:
                continue
            if f.is_symlink() and not f.exists():
                skipped.append(f"{f}: a symbolic link to nothing")
            elif f.is_file():
                found.append(f)
    return sorted(found)


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


class _Stop(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so it ends like Ctrl-C: the input in flight is dropped, the rest kept."""


class _Progress:
    """Inputs done, faces found and failures: a tqdm bar on a terminal, a line every :data:`PROGRESS_EVERY` s
    otherwise, nothing when quiet."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.total, self.done, self.faces, self.failed = total, 0, 0, 0
        tty = sys.stderr.isatty()
        self.bar = None if quiet or not tty else tqdm(total=total, desc="predict", unit="input", file=sys.stderr)
        self.lines = not quiet and not tty
        self._last = time.monotonic()

    def update(self, faces: int = 0, failed: bool = False) -> None:
        self.done += 1
        self.faces += faces
        self.failed += int(failed)
        if self.bar is not None:
            self.bar.set_postfix(faces=self.faces, failed=self.failed, refresh=False)
            self.bar.update(1)
        elif self.lines and time.monotonic() - self._last >= PROGRESS_EVERY:
            self._last = time.monotonic()
            print(f"dsfnet predict: {self.done}/{self.total} inputs, {self.faces} faces, {self.failed} failed",
                  file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        print(f"dsfnet predict: {text}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from dsfnet.detect import BoxesDetector
    from dsfnet.inference.batch import BatchOptions, error_record, printable, process_input
    from dsfnet.inference import WeightsNotFoundError
    from dsfnet.io.output_folder import OutputFolder, OutputFolderError

    paths = list(args.paths)
    if args.sample:
        from dsfnet.assets import sample_image_path

        paths.append(str(sample_image_path()))
    if not paths:
        _err("no input: give image/video/folder paths, a camera index, or --sample")
        return 2
    out = Path(args.output)
    folder = OutputFolder(out, overwrite=args.overwrite, resume=args.resume)
    try:
        folder.check()  # before the model loads: nothing is created yet
    except OutputFolderError as exc:
        _err(str(exc))
        return 2
    boxes_db = None
    if args.boxes:
        try:
            boxes_db = BoxesDetector.from_file(args.boxes)
        except (OSError, ValueError) as exc:
            _err(f"--boxes: {exc}")
            return 2
    skipped_paths: list[str] = []
    items, errors = expand_inputs(paths, skipped_paths)
    for given, msg in errors:
        _err(f"{given}: {msg}")
    if skipped_paths:
        _err(f"skipped {len(skipped_paths)} path(s) inside the folders: " + "; ".join(skipped_paths[:5])
             + ("; ..." if len(skipped_paths) > 5 else ""))
    failed = len(errors)
    if not items:
        _err("nothing to process")
        return 2 if not failed else 1
    if args.engine == "ray":
        from dsfnet.inference.ray_engine import RAY_MISSING, ray_available

        if not ray_available():
            _err(RAY_MISSING)
            return 2
    try:
        aligner = build_aligner(args) if args.engine == "local" else None  # Ray actors build their own
        if args.engine == "ray":  # fail before Ray starts
            from dsfnet.model.weights import choose_backend, resolve_weights

            backend = args.backend if args.backend != "auto" else choose_backend(args.config, args.weights, args.device)
            resolve_weights(args.config, backend, args.weights)
    except WeightsNotFoundError as exc:
        _err(str(exc))
        return 2
    except (ValueError, ImportError) as exc:
        _err(f"cannot set up the model: {exc}")
        return 2
    names = _Outputs(out)
    stems = [names.stem(given) for _, given in items]  # from the whole input list: a resumed run names files alike
    previous = signal.signal(signal.SIGTERM, _raise_stop) if _main_thread() else None
    n_images = n_frames = skipped = 0
    stopped: KeyboardInterrupt | None = None
    try:
        with folder as writer:
            done = _resumable(writer, items) if args.resume else set()
            for given, msg in errors:
                writer.write(error_record(given, msg))
            progress = _Progress(len(items), args.quiet)
            options = BatchOptions(save_mesh=args.save_mesh, mesh_colors=not args.no_mesh_colors,
                                   render=tuple(args.render), draw=args.draw, max_frames=args.max_frames,
                                   smooth=not args.no_smooth, quiet=args.quiet)
            todo = []
            for (kind, given), stem in zip(items, stems):
                if kind == "image" and printable(given) in done:
                    skipped += 1
                    progress.update()
                else:
                    todo.append((kind, given, stem))
            try:
                if args.engine == "local" and (args.threads == 1 or any(kind != "image" for kind, _, _ in todo)):
                    results = ((None, process_input(options, aligner, boxes_db, kind, given, out, stem, writer.write))
                               for kind, given, stem in todo)
                elif args.engine == "local":
                    results = _threaded(todo, args.threads, options, aligner, boxes_db, out)
                else:
                    from dsfnet.inference.ray_engine import run_on_ray

                    results = run_on_ray(todo, aligner_kwargs=aligner_kwargs(args), boxes_file=args.boxes,
                                         options=options, out=out, workers=args.workers, address=args.address)
                for (kind, given, _), (records, res) in zip(todo, results):
                    for rec in records or ():  # the Ray engine hands the records back; the local one wrote them
                        writer.write(rec)
                    n_images += res.images
                    n_frames += res.frames
                    if res.error is not None:
                        failed += 1
                        progress.message(f"{given}: {res.error}")
                    progress.update(res.faces, failed=res.error is not None)
            except KeyboardInterrupt as exc:
                stopped = exc
            finally:
                progress.close()
    except OutputFolderError as exc:  # e.g. locked by another run
        _err(str(exc))
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    summary = (f"{n_images} image(s), {n_frames} video frame(s), {failed} failed"
               + (f", {skipped} already done" if skipped else "")
               + (f", {len(skipped_paths)} unusable path(s) in folders skipped" if skipped_paths else "")
               + f" -> {out / 'results.jsonl'}")
    if stopped is not None:
        why = "terminated" if isinstance(stopped, _Stop) else "interrupted"
        _err(f"{why}: {summary} (the input in flight was dropped; rerun with --resume to continue)")
        return 143 if isinstance(stopped, _Stop) else 130
    print(f"dsfnet predict: {summary}", file=sys.stderr)
    return 1 if failed else 0


def _threaded(todo, threads: int, options, aligner, boxes_db, out):
    """Images processed ``threads`` at a time by one (thread-safe) aligner; yields ``(records, result)`` in input
    order, at most ``2 × threads`` images ahead of the writer. Stopping cancels what has not started."""
    from concurrent.futures import ThreadPoolExecutor

    from dsfnet.inference.batch import process_input

    def one(task):
        records: list[dict] = []
        kind, given, stem = task
        return records, process_input(options, aligner, boxes_db, kind, given, out, stem, records.append)

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dsfnet-predict")
    pending = []
    try:
        for task in todo:
            pending.append(pool.submit(one, task))
            if len(pending) >= 2 * threads:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_stop(signum, frame) -> None:
    raise _Stop()


def _resumable(writer, items) -> set[str]:
    """Keep the previous run's successful image records; drop its failures and the records of the videos in
    ``items`` (they are redone whole). Returns the images that are done."""
    from dsfnet.inference.batch import printable

    videos = {printable(given) for kind, given in items if kind != "image"}
    keep = [r for r in writer.kept if "error" not in r and r.get("frame") is None and r.get("image") not in videos]
    if len(keep) != len(writer.kept):
        writer.rewrite(keep)
    return {r["image"] for r in keep}
