"""CPU z-buffer rasteriser for triangle meshes (orthographic, image pixels), its slow twin, interpolation.

Frame and rules (coverage, winding, depth test, ties) are documented in :mod:`dsfnet.render.raster`;
the image frame is the one of ``docs/CONVENTIONS.md`` (x right, y down, larger z nearer; pixel centres
at integer coordinates). Pure numpy; imports nothing else from dsfnet.
"""
from __future__ import annotations

from dsfnet.render.attributes import interpolate, interpolation_matrix, render_colors, vertex_normals
from dsfnet.render.raster import COVERAGE_EPS, DEGENERATE_AREA2, Raster, rasterize, rasterize_reference

__all__ = [
    "COVERAGE_EPS",
    "DEGENERATE_AREA2",
    "Raster",
    "interpolate",
    "interpolation_matrix",
    "rasterize",
    "rasterize_reference",
    "render_colors",
    "vertex_normals",
]
