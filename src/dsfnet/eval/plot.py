"""A minimal line plot drawn with OpenCV (no matplotlib dependency): axes, ticks, series, legend → PNG bytes."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

#: BGR colours of successive series (OpenCV draws in BGR; these never touch an image of ours)
_COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
            (194, 119, 227), (127, 127, 127)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def nice_ticks(lo: float, hi: float, target: int = 6) -> np.ndarray:
    """Round tick values covering ``[lo, hi]`` with steps of 1, 2 or 5 × 10^k.

    >>> np.round(nice_ticks(0.0, 1.0), 6).tolist()
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    span = max(hi - lo, 1e-12)
    raw = span / max(target - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    n = int(math.floor((hi - start) / step + 1e-9)) + 1
    return start + step * np.arange(n)


@dataclass
class LinePlot:
    """Collect series with :meth:`add`, then :meth:`render` (BGR image) or :meth:`encode_png`."""

    title: str
    x_label: str
    y_label: str
    y_range: tuple[float, float] | None = None
    width: int = 1000
    height: int = 640
    legend: str = "top-left"  # or "bottom-right"
    series: list = field(default_factory=list)

    def add(self, label: str, x, y, markers: bool = False, dashed: bool = False) -> None:
        """One series: ``x``, ``y`` of equal length (``None`` / non-finite values are skipped)."""
        xs = np.asarray(x, dtype=np.float64)
        ys = np.asarray([np.nan if v is None else v for v in y], dtype=np.float64)
        if xs.shape != ys.shape:
            raise ValueError(f"series {label!r}: x has {xs.size} values, y {ys.size}")
        self.series.append((label, xs, ys, markers, dashed))

    def render(self) -> np.ndarray:
        w, h = self.width, self.height
        img = np.full((h, w, 3), 255, dtype=np.uint8)
        left, right, top, bottom = 90, 30, 60, 80
        finite = [(s[1][np.isfinite(s[2])], s[2][np.isfinite(s[2])]) for s in self.series]
        allx = np.concatenate([f[0] for f in finite]) if finite else np.zeros(1)
        ally = np.concatenate([f[1] for f in finite]) if finite else np.zeros(1)
        allx = allx if allx.size else np.zeros(1)
        ally = ally if ally.size else np.zeros(1)
        x0, x1 = float(allx.min()), float(allx.max())
        if x1 <= x0:
            x1 = x0 + 1.0
        if self.y_range is not None:
            y0, y1 = self.y_range
        else:
            y0, y1 = min(0.0, float(ally.min())), float(ally.max()) * 1.1
            if y1 <= y0:
                y1 = y0 + 1.0
        xt, yt = nice_ticks(x0, x1), nice_ticks(y0, y1)
        x0, x1 = min(x0, xt[0]), max(x1, xt[-1])
        y0, y1 = min(y0, yt[0]), max(y1, yt[-1])

        def px(x, y):
            u = left + (np.asarray(x) - x0) / (x1 - x0) * (w - left - right)
            v = h - bottom - (np.asarray(y) - y0) / (y1 - y0) * (h - top - bottom)
            return u, v

        grey, black = (225, 225, 225), (0, 0, 0)
        for t in xt:
            u, _ = px(t, y0)
            cv2.line(img, (int(u), top), (int(u), h - bottom), grey, 1)
            txt = f"{t:g}"
            size = cv2.getTextSize(txt, _FONT, 0.5, 1)[0]
            cv2.putText(img, txt, (int(u) - size[0] // 2, h - bottom + 20), _FONT, 0.5, black, 1, cv2.LINE_AA)
        for t in yt:
            _, v = px(x0, t)
            cv2.line(img, (left, int(v)), (w - right, int(v)), grey, 1)
            txt = f"{t:g}"
            size = cv2.getTextSize(txt, _FONT, 0.5, 1)[0]
            cv2.putText(img, txt, (left - 8 - size[0], int(v) + 5), _FONT, 0.5, black, 1, cv2.LINE_AA)
        cv2.rectangle(img, (left, top), (w - right, h - bottom), black, 1)
        size = cv2.getTextSize(self.title, _FONT, 0.65, 2)[0]
        cv2.putText(img, self.title, ((w - size[0]) // 2, 35), _FONT, 0.65, black, 2, cv2.LINE_AA)
        size = cv2.getTextSize(self.x_label, _FONT, 0.55, 1)[0]
        cv2.putText(img, self.x_label, ((w - size[0]) // 2, h - 30), _FONT, 0.55, black, 1, cv2.LINE_AA)
        ylab = np.full((30, h), 255, dtype=np.uint8)
        size = cv2.getTextSize(self.y_label, _FONT, 0.55, 1)[0]
        cv2.putText(ylab, self.y_label, ((h - size[0]) // 2, 20), _FONT, 0.55, 0, 1, cv2.LINE_AA)
        img[:, 5:35] = np.minimum(img[:, 5:35], np.rot90(ylab)[:, :, None])

        clip = (left, top, w - right, h - bottom)
        for k, (label, xs, ys, markers, dashed) in enumerate(self.series):
            colour = _COLOURS[k % len(_COLOURS)]
            ok = np.isfinite(ys)
            u, v = px(xs[ok], np.clip(ys[ok], y0, y1))
            pts = np.stack([u, v], 1)
            for j in range(len(pts) - 1):
                a, b = pts[j], pts[j + 1]
                if dashed:
                    n = max(1, int(np.hypot(*(b - a)) // 8))
                    for q in range(0, n, 2):
                        p0, p1 = a + (b - a) * q / n, a + (b - a) * min(q + 1, n) / n
                        cv2.line(img, tuple(np.round(p0).astype(int)), tuple(np.round(p1).astype(int)), colour, 2, cv2.LINE_AA)
                else:
                    cv2.line(img, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), colour, 2, cv2.LINE_AA)
            if markers:
                for p in pts:
                    cv2.circle(img, tuple(np.round(p).astype(int)), 4, colour, -1, cv2.LINE_AA)
            # legend inside the axes
            if self.legend == "bottom-right":
                text_w = max(cv2.getTextSize(s[0], _FONT, 0.5, 1)[0][0] for s in self.series)
                lx = clip[2] - text_w - 62
                ly = clip[3] - 12 - 22 * (len(self.series) - 1 - k)
            else:
                lx, ly = clip[0] + 12, clip[1] + 22 + 22 * k
            cv2.line(img, (lx, ly - 5), (lx + 30, ly - 5), colour, 3, cv2.LINE_AA)
            cv2.putText(img, label, (lx + 38, ly), _FONT, 0.5, black, 1, cv2.LINE_AA)
        return img

    def encode_png(self) -> tuple[bool, bytes]:
        """``(ok, PNG bytes)`` of :meth:`render`."""
        ok, buf = cv2.imencode(".png", self.render())
        return bool(ok), buf.tobytes()
