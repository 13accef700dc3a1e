"""The public API: :class:`FaceAligner` (image → detect → crop → network → decode → :class:`Face`).

Pipeline and frames (``docs/CONVENTIONS.md``):

1. ``dsfnet.io.read_image``: any input → ``(H, W, 3)`` uint8 RGB.
2. Detection (or given boxes) → square crop box via ``crop.box_from_detection`` and the detector's
   :class:`~dsfnet.crop.BoxCalibration` (or ``crop.box_from_landmarks`` for landmark-driven crops).
3. ``crop.crop_matrix`` / ``crop.warp_image`` → ``S×S`` crop, S = the runner's ``input_size``.
4. The runner (torch or ONNX Runtime, :mod:`dsfnet.inference.runner`) → ``face_uvm`` (pm units, crop frame,
   nose-relative z) and ``rotation``.
5. Decode with ``dsfnet.decode.UVCodec``: dense vertices and 68 landmarks in crop px, then back to image px
   through the inverse crop matrix (z divided by the same scale k). Visibility (:mod:`dsfnet.inference.visibility`):
   self-visibility (not behind the decoded mesh: z-buffer near its pixel, tolerance ``visibility_tolerance × S``)
   times external visibility (the network's visible-face probability ``seg`` near the point; the jaw read inside the
   outline), per landmark and per vertex. Pose:
   ``geometry.matrix_to_pose_para(rotation)`` in degrees (the crop is an axis-aligned scaling, so the
   rotation is the same in crop and image frames).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from dsfnet.crop import (
    BoxCalibration,
    box_from_detection,
    box_from_landmarks,
    crop_matrix,
    invert_matrix,
    transform_points,
    warp_image,
)
from dsfnet.detect import BoxesDetector, Detection, FaceDetector, create_detector, parse_boxes
from dsfnet.detect.boxes import check_boxes_in_image
from dsfnet.inference.face import Face, pose_dict
from dsfnet.inference.onnx import OnnxRunner
from dsfnet.inference.runner import NetworkRunner, TorchRunner
from dsfnet.model.weights import BACKENDS, choose_backend, resolve_weights
from dsfnet.geometry.posmap import NOSE_LANDMARK
from dsfnet.inference.visibility import (EXTERNAL_RADIUS, SELF_RADIUS, dilate_seg, external_visibility,
                                         landmark_external_visibility, open_depth, zbuffer_visibility,
                                         zbuffer_visibility_of)
from dsfnet.io import read_image

__all__ = ["FaceAligner", "decode_face", "zbuffer_visibility"]



#: which mesh the self-occlusion z-buffer rasterises: ``"grid"`` (the UV-grid mesh straight from the position map,
#: ~15k triangles at UV 96) or ``"full"`` (the 53,215-vertex face-model mesh, ~100k triangles; the reference)
VISIBILITY_MESHES = ("grid", "full")


def decode_face(
    outputs: dict[str, np.ndarray],
    index: int,
    crop_box: np.ndarray,
    codec,
    triangles: np.ndarray,
    *,
    bbox: np.ndarray,
    score: float,
    visibility_tolerance: float = 0.02,
    visibility_mesh: str = "grid",
) -> Face:
    """Turn the runner's outputs for face ``index`` into a :class:`Face` in image pixels.

    The 68 landmarks, their visibility and the pose are computed here; the dense mesh (``Face.vertices``) and its
    per-vertex visibility only when first read.

    Args:
        outputs: runner outputs (``face_uvm (B, 3, U, U)``, ``rotation (B, 3, 3)``, optional ``seg (B, 1, S, S)``).
        crop_box: ``(4,)`` square box the crop was cut from (image px).
        codec: a ``UVCodec`` (``crop_size``, ``decode``, ``landmarks``, ``layout.grid_triangles``).
        triangles: ``(T, 3)`` mesh triangles in the codec's vertex order.
        visibility_mesh: :data:`VISIBILITY_MESHES`; ``"grid"`` agrees with ``"full"`` on >= 99% of the landmark
            flags (``tests/test_inference.py``) at a fraction of the cost.
    """
    if visibility_mesh not in VISIBILITY_MESHES:
        raise ValueError(f"visibility_mesh must be one of {VISIBILITY_MESHES}, got {visibility_mesh!r}")
    size = int(codec.crop_size)
    posmap = np.asarray(outputs["face_uvm"][index], dtype=np.float64)
    rotation = np.asarray(outputs["rotation"][index], dtype=np.float64)
    if not (np.isfinite(posmap).all() and np.isfinite(rotation).all()):
        raise ValueError("the network returned NaN or infinite values for this face")
    lmk_crop = np.asarray(codec.landmarks(posmap), dtype=np.float64)
    # depth relative to landmark 30 exactly (the codec's reference is the nose's UV cell, a hair away)
    nose_z = lmk_crop[NOSE_LANDMARK, 2]
    lmk_crop[:, 2] -= nose_z

    decoded: list[np.ndarray] = []

    def vertices_crop() -> np.ndarray:
        """The dense mesh in crop px, decoded once (the mesh and its visibility both need it)."""
        if not decoded:
            v = np.asarray(codec.decode(posmap), dtype=np.float64)
            v[:, 2] -= nose_z
            decoded.append(v)
        return decoded[0]

    from dsfnet.render import rasterize

    if visibility_mesh == "grid":
        grid = posmap.reshape(3, -1).T * codec.pos_scale  # every UV cell as a vertex, crop px
        grid[:, 2] -= nose_z
        raster = rasterize(grid, codec.layout.grid_triangles, size, size)
    else:
        raster = rasterize(vertices_crop(), triangles, size, size)
    tol = visibility_tolerance * size
    depth = open_depth(raster, SELF_RADIUS * size)
    self_vis = zbuffer_visibility_of(raster, lmk_crop, tol, depth=depth)
    ext_vis = np.ones(len(lmk_crop))
    seg = dilated = None
    if "seg" in outputs:
        seg = np.clip(np.asarray(outputs["seg"][index], dtype=np.float32).reshape(-1, size, size)[0], 0.0, 1.0)
        dilated = dilate_seg(seg, EXTERNAL_RADIUS * size)
        ext_vis = landmark_external_visibility(seg, lmk_crop, dilated=dilated)
    back = invert_matrix(crop_matrix(crop_box, size))
    lmk = transform_points(lmk_crop, back)

    def vertex_visibility() -> np.ndarray:
        v = vertices_crop()
        vis = zbuffer_visibility_of(raster, v, tol, depth=depth)
        if seg is not None:
            vis = vis * external_visibility(seg, v, dilated=dilated)
        return vis.astype(np.float32)

    return Face(
        bbox=np.asarray(bbox, dtype=np.float64),
        score=float(score),
        landmarks_2d=lmk[:, :2].copy(),
        landmarks_3d=lmk,
        visibility=self_vis * ext_vis,
        pose=pose_dict(rotation),
        vertices=lambda: transform_points(vertices_crop(), back),
        triangles=np.asarray(triangles),
        crop_box=np.asarray(crop_box, dtype=np.float64),
        self_visibility=self_vis,
        external_visibility=ext_vis,
        vertex_visibility=vertex_visibility,
    )


#: default passes for the aligner's own detections and for boxes given by the caller (``FaceAligner(passes=None)``);
#: on 76 held-out ytf68 faces, NME relative to the annotation crop: yuface 1.049 / 1.060 / 1.052 with 1 / 2 / 3 passes;
#: landmark extents 1.116 / 1.065 / 1.053, dlib-style tight boxes 1.293 / 1.135 / 1.089, COCO-style loose boxes
#: 1.337 / 1.147 / 1.068
DETECTOR_PASSES, BOX_PASSES = 1, 3


def _is_stream(source) -> bool:
    """An iterable of images rather than one image (arrays, paths, bytes and PIL images are single images)."""
    if isinstance(source, (np.ndarray, str, bytes, bytearray, memoryview, os.PathLike)):
        return False
    if type(source).__module__.startswith("PIL."):
        return False
    return hasattr(source, "__iter__") or hasattr(source, "__next__")


class FaceAligner:
    """3D dense face alignment of every face in an image.

    Args:
        device: torch device (CPU by default; nothing is moved to a GPU unless asked).
        config: model variant, ``"lite"`` or ``"paper"``.
        weights: a ``.pt`` checkpoint (torch) or an ``export-onnx`` folder (onnx); None: ``$DSFNET_WEIGHTS`` or the packaged
            weights. Missing weights raise :class:`~dsfnet.model.weights.WeightsNotFoundError`.
        detector: a registry name (``"yuface"``, ``"boxes"``), a :class:`FaceDetector`, or None (then
            :meth:`predict` needs ``boxes``).
        backend: ``"auto"`` (default: ONNX Runtime on the CPU when ONNX weights are found, as for the shipped
            ``lite``; else torch; :func:`dsfnet.model.weights.choose_backend`), ``"torch"`` or ``"onnx"``.
        runner, codec, triangles: inject a network runner and its UV codec / mesh triangles (tests, custom
            models); when ``runner`` is given, ``config``, ``weights``, ``backend`` and ``device`` are unused.
        batch_size: crops per network call.
        visibility_tolerance: depth slack of the z-buffer visibility test, as a fraction of the crop side.
        passes: alignment passes for faces found from a box: pass 1 crops from the box (through the calibration),
            every further pass from the previous pass's 68 landmarks with the training crop rule
            (``crop.box_from_landmarks``), so the result stops depending on the box's convention. None (default):
            :data:`DETECTOR_PASSES` for the aligner's own detections (its calibration was fitted for this crop) and
            :data:`BOX_PASSES` for boxes given to :meth:`predict` (any convention); measured on held-out
            identities by ``benchmarks/box_conventions.py`` (``docs/CONVENTIONS.md``, "Crops").
        orientation_search: for detected faces, try the photo turned by 90°, 180° and 270° when its best face looks
            wrong (:mod:`dsfnet.inference.orientation`), and report the faces of the upright orientation.
    """

    def __init__(
        self,
        device: str = "cpu",
        config: str = "lite",
        weights: str | os.PathLike | None = None,
        detector: str | FaceDetector | None = "yuface",
        backend: str = "auto",
        *,
        runner: NetworkRunner | None = None,
        codec: Any = None,
        triangles: np.ndarray | None = None,
        batch_size: int = 8,
        visibility_tolerance: float = 0.02,
        passes: int | None = None,
        orientation_search: bool = True,
    ) -> None:
        self.orientation_search = bool(orientation_search)
        if passes is not None and int(passes) < 1:
            raise ValueError(f"passes must be >= 1, got {passes}")
        self.passes = None if passes is None else int(passes)
        if backend not in (*BACKENDS, "auto"):
            raise ValueError(f"unknown backend {backend!r}; valid backends: auto, {', '.join(BACKENDS)}")
        if backend == "auto" and runner is None:
            backend = choose_backend(config, weights, device)
        self.backend = backend
        self.detector = None if detector is None or detector == "none" else create_detector(detector)
        if runner is None:
            runner, codec, triangles = self._build(config, weights, backend, device)
        elif codec is None or triangles is None:
            codec, triangles = self._codec_for(runner)
        self.runner = runner
        self.codec = codec
        self.triangles = np.asarray(triangles, dtype=np.int64)
        self.batch_size = max(1, int(batch_size))
        self.visibility_tolerance = float(visibility_tolerance)
        if int(codec.crop_size) != int(runner.input_size):
            raise ValueError(f"codec crop size {codec.crop_size} differs from the network input size {runner.input_size}")

    @staticmethod
    def _face_model():
        from dsfnet.facemodel.model import load_face_model

        return load_face_model()

    @classmethod
    def _codec_for(cls, runner: NetworkRunner, face_model=None):
        from dsfnet.decode import UVCodec
        from dsfnet.facemodel.uv import get_uv_layout

        fm = face_model if face_model is not None else cls._face_model()
        layout = get_uv_layout(fm, int(runner.uv_size))
        return UVCodec(layout, int(runner.input_size)), fm.triangles

    @classmethod
    def _build(cls, config: str, weights, backend: str, device: str):
        from dsfnet.model import create_model, get_config

        get_config(config)  # an unknown variant raises ValueError listing the valid names
        resolve_weights(config, backend, weights)  # fail fast, before building anything
        fm = cls._face_model()
        if backend == "torch":
            from dsfnet.facemodel.uv import get_uv_layout

            layout = get_uv_layout(fm, get_config(config).uv_size)
            model = create_model(config, fm, layout=layout, weights="shipped" if weights is None else weights)
            runner = TorchRunner(model.to(device), device=device)
        else:
            runner = OnnxRunner.from_weights(config, weights)
        codec, triangles = cls._codec_for(runner, fm)
        return runner, codec, triangles

    # ------------------------------------------------------------------ public API
    def detect(self, image) -> list[Detection]:
        """Detections in ``image`` (any :func:`dsfnet.io.read_image` input), best first."""
        if self.detector is None:
            raise ValueError("this FaceAligner has no detector (detector=None): pass boxes= to predict()")
        return self.detector.detect(read_image(image))

    def predict(self, image, boxes=None, *, box_calibration: BoxCalibration | None = None):
        """Align every face of ``image`` — or of every image of a list, or of a stream.

        Args:
            image: a path, array (RGB), PIL image or encoded bytes (see :func:`dsfnet.io.read_image`); or a list /
                tuple of them (the crops of all the images go through the network together, in batches of
                ``batch_size``); or any other iterable of them, e.g. a generator of video frames (processed lazily).
            boxes: optional face boxes ``[x0, y0, x1, y1]`` (image px; list, ``(N, 4)`` array or Detections);
                then the detector is skipped and faces come back in the order of the boxes. With several images:
                one such entry per image (None: detect in that image).
            box_calibration: how the given boxes map to crops; default: the detector's calibration (boxes
                like a face detector's), or the landmark-box rule when there is no detector.
        Returns:
            ``list[Face]`` (empty if no face), by detection score or in the order of ``boxes``; for a list of images a
            list of those; for a stream an iterator of them.
        """
        if isinstance(image, (list, tuple)):
            per_image = list(boxes) if boxes is not None else [None] * len(image)
            if len(per_image) != len(image):
                raise ValueError(f"boxes: one entry per image expected, got {len(per_image)} for {len(image)} images")
            return self._predict_many([read_image(im) for im in image], per_image, box_calibration)
        if _is_stream(image):
            if boxes is not None:
                raise ValueError("boxes= with a stream of images: pass a list of images with one boxes entry each")
            return (self.predict(im, box_calibration=box_calibration) for im in image)
        return self._predict_many([read_image(image)], [boxes], box_calibration)[0]

    def _predict_many(self, imgs: list[np.ndarray], boxes: list, box_calibration,
                      search_orientation: bool = True) -> list[list[Face]]:
        """Detect (or take the boxes) per image, then align the crops of all the images together, pass by pass; for
        detected faces, sideways and upside-down photos are turned upright (:mod:`dsfnet.inference.orientation`)."""
        jobs = []  # per image: (crop boxes, detection boxes, scores, passes)
        for img, b in zip(imgs, boxes):
            if b is not None:
                dets = parse_boxes(b) if not isinstance(b, BoxesDetector) else b.detect(img)
                check_boxes_in_image(dets, img.shape[1], img.shape[0])
                cal = box_calibration or (self.detector.calibration if self.detector is not None else BoxCalibration())
            else:
                if self.detector is None:
                    raise ValueError("no detector configured: pass boxes=[[x0, y0, x1, y1], ...]")
                dets = self.detector.detect(img)
                cal = box_calibration or self.detector.calibration
            passes = self.passes if self.passes is not None else (BOX_PASSES if b is not None else DETECTOR_PASSES)
            jobs.append(([box_from_detection(d.box, cal) for d in dets], [d.box for d in dets],
                         [d.score for d in dets], passes))
        faces = self._align_many(imgs, [j[0] for j in jobs], [j[1] for j in jobs], [j[2] for j in jobs])
        for p in range(1, max((j[3] for j in jobs), default=1)):  # re-crop from the landmarks: the training rule
            todo = [i for i, j in enumerate(jobs) if j[3] > p]
            again = self._align_many([imgs[i] for i in todo],
                                     [[box_from_landmarks(f.landmarks_2d) for f in faces[i]] for i in todo],
                                     [jobs[i][1] for i in todo], [jobs[i][2] for i in todo])
            for i, f in zip(todo, again):
                faces[i] = f
        if search_orientation and self.orientation_search:
            for i, (img, b) in enumerate(zip(imgs, boxes)):
                if b is None:
                    faces[i] = self._upright(img, faces[i], box_calibration)
        return faces

    def _upright(self, img: np.ndarray, faces: list[Face], box_calibration) -> list[Face]:
        """The faces of the orientation (0, 90, 180 or 270°) whose best face has the highest orientation score, in
        the photo's frame; the other orientations are tried only when the photo's own best face scores low, and one
        of them is taken only when its best face scores at least :data:`UPRIGHT_SCORE`."""
        from dsfnet.inference.orientation import UPRIGHT_SCORE, orientation_score, rotate_face_back

        best = max((orientation_score(f) for f in faces), default=0.0)
        if best >= UPRIGHT_SCORE:
            return faces
        h, w = img.shape[:2]
        chosen, chosen_k = faces, 0
        for k in (1, 2, 3):
            found = self._predict_many([np.ascontiguousarray(np.rot90(img, k))], [None], box_calibration,
                                       search_orientation=False)[0]
            score = max((orientation_score(f) for f in found), default=0.0)
            if score >= UPRIGHT_SCORE and score > best:  # only a clearly upright face wins (a masked face scores low
                best, chosen, chosen_k = score, found, k  # in every orientation: it stays as it was)
        return [rotate_face_back(f, chosen_k, h, w) for f in chosen]

    def predict_from_landmarks(self, image, landmarks: np.ndarray, score: float = 1.0) -> Face:
        """Align one face whose crop comes from ``(K, 2+)`` landmarks (our crop rule, ``crop.box_from_landmarks``)."""
        img = read_image(image)
        pts = np.asarray(landmarks, dtype=np.float64)
        crop = box_from_landmarks(pts)
        lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
        return self.align_crops(img, [crop], [np.concatenate([lo, hi])], [score])[0]

    def align_crops(self, image_rgb: np.ndarray, crop_boxes: Sequence[np.ndarray], bboxes: Sequence[np.ndarray],
                    scores: Sequence[float]) -> list[Face]:
        """Run the network on the given square crop boxes of an ``(H, W, 3)`` uint8 RGB image and decode."""
        return self._align_many([image_rgb], [list(crop_boxes)], [list(bboxes)], [list(scores)])[0]

    def _align_many(self, imgs: Sequence[np.ndarray], crop_boxes: Sequence[Sequence[np.ndarray]],
                    bboxes: Sequence[Sequence[np.ndarray]], scores: Sequence[Sequence[float]]) -> list[list[Face]]:
        """The crops of several images through the network in shared batches of ``batch_size``, decoded per face."""
        size = int(self.runner.input_size)
        flat = [(i, k) for i, boxes in enumerate(crop_boxes) for k in range(len(boxes))]
        faces: list[list[Face]] = [[] for _ in imgs]
        for start in range(0, len(flat), self.batch_size):
            chunk = flat[start:start + self.batch_size]
            crops = np.stack([warp_image(imgs[i], crop_matrix(crop_boxes[i][k], size), size) for i, k in chunk])
            out = self.runner(crops)
            for j, (i, k) in enumerate(chunk):
                faces[i].append(decode_face(out, j, crop_boxes[i][k], self.codec, self.triangles, bbox=bboxes[i][k],
                                            score=scores[i][k], visibility_tolerance=self.visibility_tolerance))
        return faces