"""The two records of a training face: the source record :class:`FaceSample` and the training-sample dict.

This module owns both formats. A :class:`FaceSample` is what every data source is converted to (300W-LP .mat,
pseudo-labels, synthetic faces); the training-sample dict is what :class:`dsfnet.data.targets.TargetBuilder` makes
from it and what augmentation, the crop cache, the losses and validation read.

**FaceSample.** A :class:`FaceSample` is one face in one photo: the image (a path or an ``H×W×3`` uint8 RGB
array), the 3DMM parameters in **our** convention (``docs/CONVENTIONS.md``):

* ``shape (Ks,)`` and ``exp (Ke,)``: **raw** coefficients (the scale of 300W-LP ``Shape_Para``/``Exp_Para``);
* ``pose_para (7,)``: ``[pitch, yaw, roll (radians), tx, ty, tz, s]`` in the ``Pose_Para`` convention, in the
  pixels of *this* image (a vertex lands at ``s·R·v + t`` and then ``y ← H − y`` with ``H = image_height``),

plus optional ``landmarks (68, 2|3)`` image pixels with ``landmark_convention`` ``"2d"`` (300-W style: the jaw
points follow the visible cheek contour) or ``"3d"`` (projections of fixed 3D vertices, like AFLW2000-3D
``pt3d_68``), an ``identity`` (to keep people apart in splits) and a ``source`` tag.

Stored as a JSON-lines index (:func:`write_index`/:func:`read_index`, written atomically: temp file in the same
folder, then ``os.replace``): one JSON object per line, images stay files; relative image paths are resolved
against the index file's folder.

**Training-sample dict.** One face cropped for the network, with the ground truth of every head, as plain numpy
arrays. S is the crop side (network input size), U the UV map side, Ks/Ke the face model's numbers of shape and
expression coefficients. Units and frames are those of ``docs/CONVENTIONS.md``: *crop px* = pixels of the S×S
crop (x right, y down, z toward the camera); *pm* = position-map units = crop px / ``pos_scale``
(:mod:`dsfnet.geometry.posmap`); *sm* = shape-map units = model units × ``SHAPE_MAP_SCALE`` (1.5e-5). "Nose-relative"
z means z minus the z at the nose tip's UV cell (landmark 30).

=========== ================= ==========================================================================
key         shape / dtype     meaning
=========== ================= ==========================================================================
image       (S, S, 3) uint8   RGB crop of the photo (bilinear warp; black outside the photo)
posmap      (3, U, U) f32     posed position map P_gt: the face's vertices resampled into UV, pm units, crop
                              frame, nose-relative z (:class:`dsfnet.decode.codec.UVCodec`); 0 in UV cells
                              no vertex covers
offset      (3, U, U) f32     pose-free offset map O_gt: ``(shape_basis·α + exp_basis·β)`` resampled into UV,
                              sm units, model frame (y up); ``mean map + offset`` is the face's shape map
shape       (Ks,) f32         normalised identity coefficients ``α / shape_std`` (dimensionless)
exp         (Ke,) f32         normalised expression coefficients ``β / exp_std`` (dimensionless)
tm          (3, 4) f32        affine from raw model units to crop px: ``tm[:, :3] @ v + tm[:, 3]`` (y down,
                              nose-relative z); its 3×3 part is ``k·s·F·R`` (contains the y reflection F,
                              so det < 0)
grid        (2, S, S) f32     UV cell of the surface seen at each pixel, normalised: channel 0
                              ``(col + 0.5)/(U/2) − 1``, channel 1 ``(row + 0.5)/(U/2) − 1``, in (−1, 1);
                              0 where no triangle of the UV-grid mesh covers the pixel
seg         (S, S) f32        {0, 1}: 1 where the nearest surface is a face triangle (all three cells in the
                              UV face mask) and, after occlusion, no occluder covers it
depth       (S, S) f32        z of the nearest surface, pm units, nose-relative; 0 where no surface
landmarks   (68, 3) f32       the 68 keypoint vertices, crop px, nose-relative z
pose        (3,) f32          ``[pitch, yaw, roll]`` radians of ``tm``'s rotation (``Pose_Para`` convention;
                              equal to the photo's Pose_Para angles for a crop without augmentation)
occluder    (S, S) f32        {0, 1}: 1 under a synthetic occluder (opacity ≥ 0.5). Only in augmented dicts:
                              :func:`dsfnet.data.occlusion.occlude_sample` adds it, and
                              :class:`dsfnet.data.augment.Augmenter` always does (zeros when none was drawn)
=========== ================= ==========================================================================

The keys :class:`~dsfnet.data.targets.TargetBuilder` writes are ``dsfnet.data.targets.SAMPLE_KEYS`` (all but
``occluder``). The crop cache (:mod:`dsfnet.data.cache`) stores the dense maps as float16 and hands every float
field back as float32, so a dict read from a cache has the dtypes above. The trainer's data loader stacks dicts
into batches: the same keys with a leading batch dimension B, as torch tensors.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dsfnet.io.image import read_image
from dsfnet.io.writers import AtomicFile

#: allowed values of :attr:`FaceSample.landmark_convention`
LANDMARK_CONVENTIONS = ("2d", "3d")


@dataclass
class FaceSample:
    """One face in one photo, with its 3DMM fit in our convention (see the module docstring).

    Attributes:
        image: path to an image file, or an ``(H, W, 3)`` uint8 RGB array.
        shape: ``(Ks,)`` float raw identity coefficients.
        exp: ``(Ke,)`` float raw expression coefficients.
        pose_para: ``(7,)`` float ``[pitch, yaw, roll, tx, ty, tz, s]`` (radians, image pixels, scale).
        image_height: ``H`` of the image in pixels (needed by the ``y ← H − y`` flip); ``None`` = read it from
            the image when needed.
        landmarks: optional ``(68, 2)`` or ``(68, 3)`` image pixels (x right, y down).
        landmark_convention: ``"2d"`` or ``"3d"`` when ``landmarks`` is given, else ``None``.
        identity: person id (free text; ``""`` = unknown).
        source: where the sample comes from (e.g. ``"300w_lp/AFW"``, ``"teacher"``, ``"synthetic"``).
    """

    image: str | np.ndarray
    shape: np.ndarray
    exp: np.ndarray
    pose_para: np.ndarray
    image_height: int | None = None
    landmarks: np.ndarray | None = None
    landmark_convention: str | None = None
    identity: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shape = _vector(self.shape, "shape")
        self.exp = _vector(self.exp, "exp")
        self.pose_para = _vector(self.pose_para, "pose_para")
        if self.pose_para.shape != (7,):
            raise ValueError(f"pose_para must have 7 values [pitch, yaw, roll, tx, ty, tz, s], got {self.pose_para.shape[0]}")
        if self.landmarks is not None:
            lm = np.asarray(self.landmarks, dtype=np.float64)
            if lm.shape not in ((68, 2), (68, 3)):
                raise ValueError(f"landmarks must be (68, 2) or (68, 3) image pixels, got shape {lm.shape}")
            if not np.isfinite(lm).all():
                raise ValueError("landmarks contain NaN/inf")
            self.landmarks = lm
            if self.landmark_convention not in LANDMARK_CONVENTIONS:
                raise ValueError(f"landmark_convention must be one of {LANDMARK_CONVENTIONS} when landmarks are "
                                 f"given, got {self.landmark_convention!r}")
        elif self.landmark_convention is not None and self.landmark_convention not in LANDMARK_CONVENTIONS:
            raise ValueError(f"landmark_convention must be one of {LANDMARK_CONVENTIONS} or None, "
                             f"got {self.landmark_convention!r}")
        if isinstance(self.image, np.ndarray):
            _check_image(self.image)
            if self.image_height is None:
                self.image_height = int(self.image.shape[0])
        elif not isinstance(self.image, (str, os.PathLike)):
            raise ValueError(f"image must be a path or an (H, W, 3) uint8 array, got {type(self.image).__name__}")
        else:
            self.image = str(self.image)

    def load_image(self) -> np.ndarray:
        """The image as ``(H, W, 3)`` uint8 RGB (reads the file when ``image`` is a path)."""
        if isinstance(self.image, np.ndarray):
            return self.image
        return read_image(self.image)

    def height(self) -> int:
        """Image height ``H`` in pixels (reads the image if it was not recorded)."""
        if self.image_height is None:
            self.image_height = int(self.load_image().shape[0])
        return int(self.image_height)

    def to_json(self, base: Path | None = None) -> dict:
        """JSON-ready dict; a path image is written relative to ``base`` when it lies below it."""
        if isinstance(self.image, np.ndarray):
            raise ValueError("an in-memory image cannot go into a JSON index; save it as a file first")
        image = self.image
        if base is not None:
            try:
                image = os.path.relpath(Path(self.image).resolve(), Path(base).resolve())
                if image.startswith(".."):
                    image = str(Path(self.image).resolve())
            except ValueError:  # other drive (Windows)
                image = str(Path(self.image).resolve())
        out = {
            "image": image,
            "image_height": self.image_height,
            "shape": [float(v) for v in self.shape],
            "exp": [float(v) for v in self.exp],
            "pose_para": [float(v) for v in self.pose_para],
            "identity": self.identity,
            "source": self.source,
        }
        if self.landmarks is not None:
            out["landmarks"] = np.asarray(self.landmarks).round(4).tolist()
            out["landmark_convention"] = self.landmark_convention
        if self.extra:
            out["extra"] = self.extra
        return out

    @classmethod
    def from_json(cls, obj: dict, base: Path | None = None) -> "FaceSample":
        """Inverse of :meth:`to_json`; relative image paths are resolved against ``base``."""
        missing = [k for k in ("image", "shape", "exp", "pose_para") if k not in obj]
        if missing:
            raise ValueError(f"sample record lacks {missing}; has {sorted(obj)}")
        image = obj["image"]
        if base is not None and not os.path.isabs(image):
            image = str(Path(base) / image)
        lm = obj.get("landmarks")
        return cls(
            image=image,
            shape=np.asarray(obj["shape"], dtype=np.float64),
            exp=np.asarray(obj["exp"], dtype=np.float64),
            pose_para=np.asarray(obj["pose_para"], dtype=np.float64),
            image_height=obj.get("image_height"),
            landmarks=None if lm is None else np.asarray(lm, dtype=np.float64),
            landmark_convention=obj.get("landmark_convention"),
            identity=obj.get("identity", ""),
            source=obj.get("source", ""),
            extra=dict(obj.get("extra", {})),
        )


def _vector(value, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN/inf")
    return v


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}")


def _atomic_write_bytes(path: Path, write) -> None:
    with AtomicFile(path, "wb") as f:
        write(f)


def write_index(samples: Iterable[FaceSample], path: str | os.PathLike) -> int:
    """Write a JSON-lines index (one sample per line), atomically. Returns the number of samples.

    Image paths below the index's folder are stored relative to it, others absolute.
    """
    path = Path(path)
    lines = [json.dumps(s.to_json(base=path.parent), separators=(",", ":")) for s in samples]
    _atomic_write_bytes(path, lambda f: f.write(("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")))
    return len(lines)


def read_index(path: str | os.PathLike) -> list[FaceSample]:
    """Read a JSON-lines index written by :func:`write_index` (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample index not found: {path}")
    out = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{no}: not a JSON object ({e})") from None
            try:
                out.append(FaceSample.from_json(obj, base=path.parent))
            except ValueError as e:
                raise ValueError(f"{path}:{no}: {e}") from None
    return out
