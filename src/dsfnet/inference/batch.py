"""One input of a batch job → its result records: the one code path of ``dsfnet predict``'s local and Ray engines.

:func:`process_input` reads an image (or every frame of a video or camera), aligns it, writes the optional meshes and
overlays into the output folder, and hands each record (the ``results.jsonl`` line, schema in ``dsfnet predict
--help``) to ``emit``; an input that fails gives one error record ``{"image", "frame": null, "error"}`` instead, and
the job goes on. Both engines call it, so they cannot drift: the local engine emits to the results file as records
come, a Ray worker collects them and the driver writes them in input order.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["RENDERS", "BatchOptions", "InputResult", "printable", "process_input", "render_maps", "vertex_colors"]

#: the per-image renders ``--render`` can write: ``depth`` (8-bit, nearer = brighter, per face from its own nearest to
#: farthest point; 0 = no face) and ``pncc`` (a projected normalised coordinate code as 3DDFA's: each pixel coloured
#: by the x, y, z of the face at that point in its own frame, the pose undone, each axis normalised to 0..1)
RENDERS = ("depth", "pncc")


@dataclass(frozen=True)
class BatchOptions:
    """What a job writes besides the records (``dsfnet predict``'s flags)."""

    save_mesh: str | None = None  # "obj" | "ply"
    mesh_colors: bool = True  # vertex colours sampled from the photo
    render: tuple[str, ...] = ()  # of RENDERS
    draw: bool = False
    max_frames: int | None = None
    smooth: bool = True
    quiet: bool = False


@dataclass
class InputResult:
    """Counts of one processed input (``error`` set when it failed)."""

    images: int = 0
    frames: int = 0
    faces: int = 0
    error: str | None = None


def printable(given: str) -> str:
    """The path as valid UTF-8 text: bytes a file name holds that are not UTF-8 become ``\\xNN``."""
    return os.fsencode(given).decode("utf-8", errors="backslashreplace")


def record(given: str, frame, image, faces, meshes) -> dict:
    """The ``results.jsonl`` line of one image or frame."""
    h, w = image.shape[:2]
    return {"image": printable(given), "frame": frame, "width": int(w), "height": int(h),
            "faces": [f.to_dict(mesh=m) for f, m in zip(faces, meshes)]}


def error_record(given: str, message: str) -> dict:
    """The ``results.jsonl`` line of an input that failed."""
    return {"image": printable(given), "frame": None, "error": message}


def vertex_colors(image, vertices) -> "np.ndarray":
    """``(N, 3)`` uint8 RGB of the photo ``(H, W, 3)`` at each vertex's image position (bilinear; edge-clamped)."""
    import numpy as np

    from dsfnet.inference.visibility import sample_bilinear

    img = np.asarray(image, dtype=np.float32)
    xy = np.asarray(vertices, dtype=np.float64)[:, :2]
    rgb = np.stack([sample_bilinear(img[..., c], xy) for c in range(3)], axis=1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def save_meshes(options: BatchOptions, out: Path, stem: str, faces, image) -> list:
    """Write each face's mesh (image px, y flipped up; vertex colours from the photo unless ``mesh_colors`` is off)
    as ``meshes/<stem>_<i>.<fmt>``; the names, or Nones."""
    if not options.save_mesh:
        return [None] * len(faces)
    from dsfnet.geometry import flip_y_points
    from dsfnet.io import write_mesh

    names = []
    for i, f in enumerate(faces):
        rel = Path("meshes") / f"{stem}_{i}.{options.save_mesh}"
        colors = vertex_colors(image, f.vertices) if options.mesh_colors else None
        # y up (y = H - y), so that mesh viewers show the face upright
        write_mesh(out / rel, flip_y_points(f.vertices, image.shape[0]), f.triangles, colors, fmt=options.save_mesh,
                   comment="dsfnet mesh: image pixels, x right, y up (y = H - y_image), z toward the camera")
        names.append(rel.as_posix())
    return names


def render_maps(image, faces, which: tuple[str, ...]) -> dict:
    """``{name: (H, W, 3) uint8}`` for each of ``which`` (:data:`RENDERS`), all faces of the image in one map (the
    nearer face wins where two overlap)."""
    import numpy as np

    from dsfnet.geometry import FLIP_Y
    from dsfnet.render import interpolate, rasterize

    if not which:
        return {}
    h, w = image.shape[:2]
    out = {name: np.zeros((h, w, 3), np.uint8) for name in which}
    zbuf = np.full((h, w), -np.inf)
    for f in faces:
        v = np.asarray(f.vertices, dtype=np.float64)
        raster = rasterize(v, f.triangles, h, w)
        win = raster.mask & (raster.depth > zbuf)
        zbuf[win] = raster.depth[win]
        if "depth" in out:
            z = raster.depth[raster.mask]
            lo, hi = (float(z.min()), float(z.max())) if z.size else (0.0, 1.0)
            d = np.clip((raster.depth - lo) / max(hi - lo, 1e-9), 0, 1) * 235 + 20  # 20..255: nearer = brighter
            out["depth"][win] = np.round(d[win])[:, None].astype(np.uint8)
        if "pncc" in out:  # image px -> y-up -> the pose undone (points @ R: the inverse of points @ R.T)
            own = (v - v.mean(0)) @ FLIP_Y @ f.rotation
            code = (own - own.min(0)) / np.maximum(np.ptp(own, axis=0), 1e-9)
            colors = interpolate(raster, f.triangles, code)
            out["pncc"][win] = np.round(np.clip(colors[win], 0, 1) * 255).astype(np.uint8)
    return out


def process_image(options: BatchOptions, aligner, boxes, given: str, out: Path, stem: str, emit) -> int:
    """Align one image, write its files, emit its record; returns the number of faces."""
    from dsfnet.io import read_image, write_image

    image = read_image(given)
    faces = aligner.predict(image, boxes=boxes)
    meshes = save_meshes(options, out, stem, faces, image)
    if options.draw:
        from dsfnet.inference.visualize import draw_faces

        write_image(out / f"{stem}_overlay.jpg", draw_faces(image, faces))
    for name, picture in render_maps(image, faces, options.render).items():
        write_image(out / f"{stem}_{name}.png", picture)
    emit(record(given, None, image, faces, meshes))
    return len(faces)


def process_video(options: BatchOptions, aligner, boxes, kind: str, given: str, out: Path, stem: str, emit) -> int:
    """Align every frame (tracking by alignment), emitting one record per frame; returns the number of frames.
    Ctrl-C ends a camera cleanly (a plain ``KeyboardInterrupt``; any subclass, e.g. a SIGTERM stop, propagates)."""
    from tqdm import tqdm

    from dsfnet.inference.tracking import FaceTracker
    from dsfnet.io.video import VideoReadError, VideoWriterRGB, iter_video_frames, open_video

    cap, info = open_video(given)
    frames = iter_video_frames(given, options.max_frames, opened=(cap, info))
    fps = info.fps if info.fps and info.fps > 0 else 30.0
    tracker = FaceTracker(aligner, smooth=options.smooth)
    video_out = None
    done = 0
    t0 = time.monotonic()
    bar = tqdm(total=info.frame_count or None, desc=Path(given).name if kind == "video" else f"camera {given}",
               unit="frame", disable=True if options.quiet else None, file=sys.stderr, leave=False)
    try:
        try:
            for n, rgb in frames:
                t = n / fps if kind == "video" else time.monotonic() - t0 + 1e-6 * n
                faces = tracker.update(rgb, t, boxes=boxes if n == 0 else None)
                meshes = save_meshes(options, out, f"{stem}_f{n:06d}", faces, rgb)
                if options.draw:
                    from dsfnet.inference.visualize import draw_faces

                    if video_out is None:
                        video_out = VideoWriterRGB(out / f"{stem}_overlay.mp4", fps, (rgb.shape[1], rgb.shape[0]))
                    video_out.write(draw_faces(rgb, faces, mesh="wireframe"))
                emit(record(given, n, rgb, faces, meshes))
                done = n + 1
                bar.update(1)
        except KeyboardInterrupt as exc:
            if kind != "camera" or type(exc) is not KeyboardInterrupt:
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


def process_input(options: BatchOptions, aligner, boxes_db, kind: str, given: str, out: str | os.PathLike, stem: str,
                  emit: Callable[[dict], Any]) -> InputResult:
    """One input (``kind``: ``image``, ``video`` or ``camera``) → its records through ``emit``; never raises for a bad
    input (it emits an error record and returns ``InputResult(error=...)``); ``KeyboardInterrupt`` propagates."""
    out = Path(out)
    boxes = boxes_db.lookup(given) if boxes_db is not None else None
    try:
        if kind == "image":
            return InputResult(images=1, faces=process_image(options, aligner, boxes, given, out, stem, emit))
        return InputResult(frames=process_video(options, aligner, boxes, kind, given, out, stem, emit))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one clear line per bad input; the job goes on
        message = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
        emit(error_record(given, message))
        return InputResult(error=message)
