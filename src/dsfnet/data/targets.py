"""Ground truth for every DSFNet head at crop size S and UV size U: crop, position and offset maps, Tm,
coefficients, and the image-space maps ``seg``, ``grid``, ``depth``.

From one photo and its 3DMM fit in our convention (raw ``shape (Ks,)``, ``exp (Ke,)``, ``Pose_Para (7,)`` in
the photo's pixels) :class:`TargetBuilder` makes the training-sample dict, keys :data:`SAMPLE_KEYS`. Every key's
shape, dtype, unit and frame: :mod:`dsfnet.data.sample` (the owner of the format).

The crop is :func:`dsfnet.crop.box_from_landmarks` of the 68 posed keypoint vertices (the landmark-box crop of
``docs/CONVENTIONS.md``, "Crops", computed without rounding the box to integer pixels). Image-space maps come
from z-buffering the UV-grid mesh of the posed position map (``layout.grid_triangles``: the whole covered UV
square, ears and neck included, so they occlude the face correctly) with :func:`dsfnet.render.rasterize`;
:meth:`TargetBuilder.render_maps` is reused after geometric augmentation.
"""
from __future__ import annotations

import numpy as np

from dsfnet.crop import box_from_landmarks, crop_matrix, warp_image
from dsfnet.geometry import (FLIP_Y, decode_vertices, image_to_model_rotation, matrix_to_pose_para, nearest_rotation,
                             pose_para_to_image, pose_para_to_matrix)
from dsfnet.render import interpolate, rasterize

#: keys of the dict :meth:`TargetBuilder.build` returns (each described in :mod:`dsfnet.data.sample`)
SAMPLE_KEYS = ("image", "posmap", "offset", "shape", "exp", "tm", "grid", "seg", "depth", "landmarks", "pose")


def pose_from_tm(tm: np.ndarray) -> np.ndarray:
    """``[pitch, yaw, roll]`` radians from a model → crop affine ``tm (3, 4)`` (its 3×3 part is ``c·F·R``)."""
    m = np.asarray(tm, dtype=np.float64)[:, :3]
    det = np.linalg.det(m)
    if not det < 0:
        raise ValueError(f"tm's 3x3 part must contain the y reflection (det < 0), got det {det:.3g}")
    c = np.cbrt(-det)
    # project to the nearest rotation (tm may carry a tiny shear after fits)
    return matrix_to_pose_para(nearest_rotation(image_to_model_rotation(m) / c))


def lift_affine(matrix: np.ndarray) -> np.ndarray:
    """2×3 image similarity ``A`` → 4×4 acting on (x, y, z, 1): x, y by ``A``, z scaled by ``sqrt|det A|``."""
    a = np.asarray(matrix, dtype=np.float64)
    k = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
    out = np.eye(4)
    out[:2, :2] = a[:, :2]
    out[:2, 3] = a[:, 2]
    out[2, 2] = k
    return out


class TargetBuilder:
    """Makes the ground-truth sample dict for one face model, UV layout and crop size.

    Args:
        face_model: :class:`dsfnet.facemodel.FaceModel` (raw coefficients, model frame).
        layout: its :class:`dsfnet.facemodel.uv.UVLayout` of size U.
        crop_size: S, the network input size in pixels.
    """

    def __init__(self, face_model, layout, crop_size: int = 128) -> None:
        from dsfnet.decode.codec import UVCodec

        if layout.fingerprint != face_model.fingerprint:
            raise ValueError(f"layout belongs to model {layout.fingerprint}, face model is {face_model.fingerprint}")
        self.face_model = face_model
        self.layout = layout
        self.crop_size = int(crop_size)
        self.uv_size = int(layout.size)
        self.codec = UVCodec(layout, self.crop_size)
        self.pos_scale = float(self.codec.pos_scale)
        self.mean_map, self.shape_maps, self.exp_maps = layout.basis_maps(face_model)
        u = self.uv_size
        rows, cols = np.divmod(np.arange(u * u), u)
        #: (U*U, 2) grid value of each cell: channel 0 = column, channel 1 = row
        self.cell_grid = np.stack([(cols + 0.5) / (u / 2) - 1, (rows + 0.5) / (u / 2) - 1], axis=1)
        self.grid_triangles = np.asarray(layout.grid_triangles, dtype=np.int64)
        self.grid_triangle_is_face = np.asarray(layout.grid_triangle_is_face, dtype=bool)
        self.covered = np.asarray(layout.covered, dtype=bool)
        self.nose_flat = int(self.codec.nose_cell[0] * u + self.codec.nose_cell[1])
        self._nose_row = layout.to_uv[self.nose_flat]  # (1, N) sparse: the nose cell's blend of vertices

    # ------------------------------------------------------------------ geometry

    def model_vertices(self, shape: np.ndarray, exp: np.ndarray) -> np.ndarray:
        """Raw coefficients → ``(N, 3)`` float64 vertices in model units."""
        fm = self.face_model
        return decode_vertices(fm.mean, fm.shape_basis, fm.exp_basis, shape, exp).astype(np.float64)

    def image_vertices(self, shape, exp, pose_para, height: int) -> np.ndarray:
        """Posed vertices ``(N, 3)`` in image px (x right, y down, z toward the camera)."""
        return pose_para_to_image(self.model_vertices(shape, exp), pose_para, height)

    def crop_matrix_for(self, vertices_image: np.ndarray) -> np.ndarray:
        """The 2×3 image → crop affine of the landmark-box crop of posed vertices ``(N, 3)`` image px."""
        box = box_from_landmarks(vertices_image[self.face_model.keypoints])
        return crop_matrix(box, self.crop_size)

    def nose_z(self, vertices: np.ndarray) -> float:
        """z at the nose-tip UV cell (the codec's reference) of vertices ``(N, 3)``, same units."""
        return float((self._nose_row @ np.asarray(vertices, dtype=np.float64)[:, 2])[0])

    def tm_for(self, pose_para, height: int, crop: np.ndarray, z_nose_crop: float) -> np.ndarray:
        """``(3, 4)`` model units → crop px (nose-relative z) for a Pose_Para and a 2×3 crop affine."""
        p = np.asarray(pose_para, dtype=np.float64).reshape(-1)
        rot = pose_para_to_matrix(p[0], p[1], p[2])
        to_image = np.eye(4)
        to_image[:3, :3] = FLIP_Y @ (p[6] * rot)
        to_image[:3, 3] = FLIP_Y @ p[3:6] + np.array([0.0, float(height), 0.0])
        tm = (lift_affine(crop) @ to_image)[:3]
        tm[2, 3] -= z_nose_crop
        return tm

    # ------------------------------------------------------------------ image-space maps

    def render_maps(self, posmap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """seg, grid, depth of a posed position map by z-buffering its UV-grid mesh.

        Args:
            posmap: ``(3, U, U)`` pm units, nose-relative z (e.g. P_gt after augmentation).
        Returns:
            ``seg (S, S)`` f32 {0, 1}, ``grid (2, S, S)`` f32, ``depth (S, S)`` f32 pm units; 0 where empty.
        """
        u, s = self.uv_size, self.crop_size
        pm = np.asarray(posmap, dtype=np.float64)
        if pm.shape != (3, u, u):
            raise ValueError(f"posmap must be (3, {u}, {u}), got {pm.shape}")
        cells = pm.reshape(3, -1).T  # (U*U, 3) pm units
        verts = cells * self.pos_scale
        raster = rasterize(verts, self.grid_triangles, s, s)
        hit = raster.mask
        seg = np.zeros((s, s), dtype=np.float32)
        seg[hit] = self.grid_triangle_is_face[raster.face_id[hit]]
        attrs = np.concatenate([self.cell_grid, cells[:, 2:3]], axis=1)  # (U*U, 3): gx, gy, depth
        vals = interpolate(raster, self.grid_triangles, attrs)  # (S, S, 3), 0 where empty
        grid = np.ascontiguousarray(vals[..., :2].transpose(2, 0, 1))
        depth = np.ascontiguousarray(vals[..., 2])
        return seg, grid, depth

    # ------------------------------------------------------------------ the sample

    def build(self, image: np.ndarray, shape, exp, pose_para, *, crop: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The training-sample dict (module docstring) of one face.

        Args:
            image: ``(H, W, 3)`` uint8 RGB photo.
            shape, exp: raw coefficients ``(Ks,)``, ``(Ke,)`` (shorter = zero-padded).
            pose_para: ``(7,)`` Pose_Para in this photo's pixels.
            crop: optional 2×3 image → crop affine; default: the landmark-box crop of the posed keypoints.
        """
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got shape {img.shape} dtype {img.dtype}")
        fm = self.face_model
        shape = np.asarray(shape, dtype=np.float64).reshape(-1)
        exp = np.asarray(exp, dtype=np.float64).reshape(-1)
        if shape.shape[0] > fm.n_shape or exp.shape[0] > fm.n_exp:
            shape, exp = shape[: fm.n_shape], exp[: fm.n_exp]  # truncation of a larger fit (e.g. 199/29)
        shape = np.pad(shape, (0, fm.n_shape - shape.shape[0]))
        exp = np.pad(exp, (0, fm.n_exp - exp.shape[0]))
        height = img.shape[0]
        v_img = self.image_vertices(shape, exp, pose_para, height)
        a = self.crop_matrix_for(v_img) if crop is None else np.asarray(crop, dtype=np.float64)
        v_crop = v_img.copy()
        v_crop[:, :2] = v_img[:, :2] @ a[:, :2].T + a[:, 2]
        v_crop[:, 2] *= float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
        z_nose = self.nose_z(v_crop)
        posmap = self.codec.encode(v_crop)
        a_n = shape / fm.shape_std.astype(np.float64)
        b_n = exp / fm.exp_std.astype(np.float64)
        offset = (np.tensordot(a_n, self.shape_maps, axes=1) + np.tensordot(b_n, self.exp_maps, axes=1))
        tm = self.tm_for(pose_para, height, a, z_nose)
        lm = v_crop[fm.keypoints].copy()
        lm[:, 2] -= z_nose
        seg, grid, depth = self.render_maps(posmap)
        return {
            "image": warp_image(img, a, self.crop_size),
            "posmap": posmap.astype(np.float32),
            "offset": offset.astype(np.float32),
            "shape": a_n.astype(np.float32),
            "exp": b_n.astype(np.float32),
            "tm": tm.astype(np.float32),
            "grid": grid,
            "seg": seg,
            "depth": depth,
            "landmarks": lm.astype(np.float32),
            "pose": pose_from_tm(tm).astype(np.float32),
        }

    def build_sample(self, sample) -> dict[str, np.ndarray]:
        """:meth:`build` for a :class:`dsfnet.data.sample.FaceSample`."""
        return self.build(sample.load_image(), sample.shape, sample.exp, sample.pose_para)

    def posed_from_tm(self, tm: np.ndarray, shape_n: np.ndarray, exp_n: np.ndarray) -> np.ndarray:
        """Posed vertices ``(N, 3)`` crop px from ``tm`` and normalised coefficients (a consistency helper)."""
        fm = self.face_model
        v = self.model_vertices(np.asarray(shape_n) * fm.shape_std, np.asarray(exp_n) * fm.exp_std)
        t = np.asarray(tm, dtype=np.float64)
        return v @ t[:, :3].T + t[:, 3]
