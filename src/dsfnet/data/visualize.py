"""Pictures of training samples: one labelled row of tiles per sample (used by ``dsfnet data show``).

Tiles (each ``S×S`` upscaled by ``zoom``, with a caption bar): crop; posmap (x, y, z as R, G, B, each
channel min–max normalised over covered cells); offset (per channel ±max|O| → 0..255); grid (column → R,
row → G, where a surface is seen); seg (white = visible face); depth (blue far → red near, over seg);
landmarks (green: keypoint vertices; red: read from the position map's landmark cells); occluded crop
(occluder outlined in yellow; its seg cleared). All arrays are RGB uint8.
"""
from __future__ import annotations

import cv2
import numpy as np

CAPTION_H = 18


def _norm01(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    v = values.astype(np.float64)
    sel = v[mask] if mask is not None and mask.any() else v.reshape(-1)
    lo, hi = float(sel.min()), float(sel.max())
    return np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)


def posmap_rgb(posmap: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """``(3, U, U)`` map → ``(U, U, 3)`` uint8, channels min–max normalised over covered cells, 0 elsewhere."""
    out = np.stack([_norm01(posmap[c], covered) for c in range(3)], -1) * 255
    out[~covered] = 0
    return out.astype(np.uint8)


def offset_rgb(offset: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """``(3, U, U)`` offset map → RGB uint8: 128 ± 127·O/max|O| per channel."""
    m = float(np.abs(offset[:, covered]).max()) if covered.any() else 1.0
    out = (128 + 127 * np.transpose(offset, (1, 2, 0)) / max(m, 1e-12)).clip(0, 255)
    out[~covered] = 0
    return out.astype(np.uint8)


def grid_rgb(grid: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """``(2, S, S)`` grid in (−1, 1) → RGB uint8 (R = column, G = row, B = 64 where seen)."""
    out = np.zeros(grid.shape[1:] + (3,), np.float64)
    out[..., 0] = (grid[0] + 1) / 2 * 255
    out[..., 1] = (grid[1] + 1) / 2 * 255
    out[..., 2] = 64
    out[~seen] = 0
    return out.clip(0, 255).astype(np.uint8)


def depth_rgb(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(S, S)`` depth → jet colours over ``mask`` (red = nearest), black elsewhere."""
    d = (_norm01(depth, mask) * 255).astype(np.uint8)
    out = cv2.applyColorMap(d, cv2.COLORMAP_JET)[:, :, ::-1].copy()
    out[~mask] = 0
    return out


def _tile(image: np.ndarray, caption: str, zoom: int) -> np.ndarray:
    img = image if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
    img = cv2.resize(img, (img.shape[1] * zoom, img.shape[0] * zoom), interpolation=cv2.INTER_NEAREST)
    bar = np.full((CAPTION_H, img.shape[1], 3), 32, np.uint8)
    cv2.putText(bar, caption, (4, CAPTION_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], 0)


def _fit(tile: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(tile, (size, size), interpolation=cv2.INTER_NEAREST) if tile.shape[0] != size else tile


def sample_panel(sample: dict, covered: np.ndarray, *, landmarks_from_map: np.ndarray | None = None,
                 occluded: dict | None = None, zoom: int = 2, title: str = "") -> np.ndarray:
    """One row of labelled tiles for a training-sample dict (module docstring).

    Args:
        sample: dict with ``image, posmap, offset, grid, seg, depth, landmarks`` (crop size S, UV size U).
        covered: ``(U, U)`` bool covered UV cells of the layout.
        landmarks_from_map: optional ``(68, 2+)`` crop px read from the position map (drawn red).
        occluded: optional sample dict after :func:`dsfnet.data.occlusion.occlude_sample`.
        zoom: integer upscaling of each tile.
        title: prefix of the first caption (e.g. the file name).
    Returns:
        ``(CAPTION_H + S·zoom, n·S·zoom, 3)`` uint8 RGB.
    """
    s = sample["image"].shape[0]
    seg = sample["seg"] > 0.5
    seen = np.abs(sample["grid"]).sum(0) > 0
    lm_img = sample["image"].copy()
    lm_big = cv2.resize(lm_img, (s * zoom, s * zoom), interpolation=cv2.INTER_LINEAR)
    for p in np.asarray(sample["landmarks"])[:, :2]:
        cv2.circle(lm_big, tuple(int(round(v * zoom + (zoom - 1) / 2)) for v in p), 2, (0, 255, 0), -1, cv2.LINE_AA)
    if landmarks_from_map is not None:
        for p in np.asarray(landmarks_from_map)[:, :2]:
            cv2.circle(lm_big, tuple(int(round(v * zoom + (zoom - 1) / 2)) for v in p), 1, (255, 0, 0), -1, cv2.LINE_AA)
    tiles = [
        _tile(sample["image"], f"{title} crop".strip(), zoom),
        _tile(_fit(posmap_rgb(sample["posmap"], covered), s), "posmap xyz", zoom),
        _tile(_fit(offset_rgb(sample["offset"], covered), s), "offset", zoom),
        _tile(grid_rgb(sample["grid"], seen), "grid", zoom),
        _tile((seg * 255).astype(np.uint8), f"seg {seg.mean():.2f}", zoom),
        _tile(depth_rgb(sample["depth"], seg), "depth", zoom),
        _tile(lm_big, "landmarks", 1),
    ]
    if occluded is not None:
        occ = occluded["image"].copy()
        m = (occluded["occluder"] > 0).astype(np.uint8)
        big = cv2.resize(occ, (s * zoom, s * zoom), interpolation=cv2.INTER_LINEAR)
        cnts, _ = cv2.findContours(cv2.resize(m, (s * zoom, s * zoom), interpolation=cv2.INTER_NEAREST),
                                   cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(big, cnts, -1, (255, 255, 0), 1)
        tiles.append(_tile(big, f"occluded seg {float((occluded['seg'] > 0.5).mean()):.2f}", 1))
    return np.concatenate(tiles, 1)


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Stack panel rows vertically, padding narrower ones with black on the right."""
    if not rows:
        raise ValueError("no rows to stack")
    w = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(padded, 0)
