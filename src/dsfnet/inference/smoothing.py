"""One-Euro filter (Casiraghi, Roussel, Vogel, CHI 2012): speed-adaptive low-pass for noisy signals.

For samples ``x_i`` at times ``t_i`` (seconds), with ``dt = t_i − t_{i−1}`` and
``alpha(fc) = 1 / (1 + 1 / (2π·fc·dt))``:

    dx_i   = (x_i − x̂_{i−1}) / dt
    dx̂_i  = dx̂_{i−1} + alpha(d_cutoff)·(dx_i − dx̂_{i−1})
    fc_i   = min_cutoff + beta·|dx̂_i|
    x̂_i   = x̂_{i−1} + alpha(fc_i)·(x_i − x̂_{i−1})

The first sample passes through unchanged (``dx̂ = 0``). Works elementwise on arrays of any fixed shape.
Slow motion → low cutoff (jitter removed); fast motion → high cutoff (little lag).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["OneEuroFilter", "smoothing_alpha"]


def smoothing_alpha(cutoff, dt: float):
    """``1 / (1 + 1/(2π·cutoff·dt))``, the exponential-smoothing factor of a first-order low-pass.

    >>> round(float(smoothing_alpha(1.0, 1 / (2 * math.pi))), 6)
    0.5
    """
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64) * dt))


class OneEuroFilter:
    """Elementwise One-Euro filter.

    Args:
        min_cutoff: cutoff frequency at rest, Hz (lower = smoother, more lag at rest).
        beta: cutoff increase per unit of speed (signal units per second); higher = less lag when moving.
        d_cutoff: cutoff of the derivative's low-pass, Hz.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"need min_cutoff > 0, d_cutoff > 0, beta >= 0; got {min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the history; the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x, t: float) -> np.ndarray:
        """Filter sample ``x`` taken at time ``t`` (seconds, strictly increasing); returns the estimate."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        if x.shape != self._x.shape:
            raise ValueError(f"sample shape {x.shape} differs from the filter's {self._x.shape}; call reset()")
        dt = float(t) - self._t
        if dt <= 0:
            raise ValueError(f"time must increase: got t={t} after t={self._t}")
        dx = (x - self._x) / dt
        self._dx = self._dx + smoothing_alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + smoothing_alpha(cutoff, dt) * (x - self._x)
        self._t = float(t)
        return self._x.copy()
