"""The mixture's density on grids in a Lambert azimuthal equal-area projection, where the region
contours are drawn (``agent.decision.regions``).

A ``Plane`` is the projection about one point (km; areas in the plane are areas on the sphere of
``EARTH_RADIUS_KM``), a ``Tile`` a square of it, ``Field.grid(tile)`` the density on the tile's grid:
block by block, each block from the kernels that reach it (a kernel whose contribution there is below
``RELEVANT`` of the level's threshold is left out), the exponent in float64 and the kernels in
float32 like ``Mixture.density_xyz``. ``Grid.polygons(tau)`` are its filled contours at ``tau``
(``contourpy``) as shapely polygons with their holes.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from agent.decision.mixture import Mixture, _log_norm
from retrieval_service.core.geo import EARTH_RADIUS_KM

GRID_MIN = 32
GRID_MAX = 128
"""Grid points per side of a tile: at least enough to draw a round piece, at most what keeps the
decision fast (a tile that must grow past it is drawn at a coarser step)."""
CELLS_PER_SPREAD = 2.0
"""Grid steps per kernel spread of the narrowest kernel in a tile."""
MAX_RING_POINTS = 400
"""Vertices per outline after simplification (a longer ring is thinned evenly)."""
MIN_REGION_KM = 0.005
RELEVANT = 1e-4
"""A kernel is left out where it adds less than this share of the level's density threshold."""
BLOCK = 25
"""Grid points per side of the blocks a grid's density is evaluated in (each block with its kernels)."""
LIMIT_KM = 2.0 * EARTH_RADIUS_KM
"""The projection's radius: the antipode of the centre."""


class Plane:
    """The Lambert azimuthal equal-area projection about ``centre`` (a unit vector), in km: areas in
    the plane are areas on the sphere of ``EARTH_RADIUS_KM``."""

    def __init__(self, centre: np.ndarray) -> None:
        self.centre = np.asarray(centre, float)
        x, y, z = (float(v) for v in self.centre)
        across = math.hypot(x, y)  # east = z x centre, normalised (written out: np.cross is slow on one vector)
        ex, ey = (-y / across, x / across) if across > 1e-9 else (0.0, 1.0)  # at a pole any orthonormal pair will do
        self.east = np.array([ex, ey, 0.0])
        self.north = np.array([-z * ey, z * ex, x * ey - y * ex])  # centre x east
        self.axes = np.column_stack([self.east, self.north])  # (3, 2)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Unit vectors -> (n, 2) km."""
        rho = EARTH_RADIUS_KM * np.sqrt(2.0 * (1.0 - np.clip(x @ self.centre, -1.0, 1.0)))
        tangent = x @ self.axes
        norm = np.sqrt(np.einsum("ij,ij->i", tangent, tangent))
        return tangent * np.where(norm > 1e-15, rho / np.maximum(norm, 1e-15), 0.0)[:, None]

    def unproject(self, xy: np.ndarray) -> np.ndarray:
        """(n, 2) km -> unit vectors (points past the antipode's circle are clipped to it). With
        s = rho / 2R: cos(angle) = 1 - 2 s^2 and sin(angle) / rho = sqrt(1 - s^2) / R, so no
        trigonometry is needed."""
        s2 = np.minimum((xy[:, 0] ** 2 + xy[:, 1] ** 2) / (2.0 * EARTH_RADIUS_KM) ** 2, 1.0)
        x = np.outer(1.0 - 2.0 * s2, self.centre)
        x += (np.sqrt(1.0 - s2) / EARTH_RADIUS_KM)[:, None] * (xy @ self.axes.T)
        return x

    def ring(self, xy: np.ndarray) -> list[tuple[float, float]]:
        """A closed plane ring as (lat, lon) with unwrapped longitudes."""
        if len(xy) > MAX_RING_POINTS:
            xy = np.vstack([xy[np.linspace(0, len(xy) - 2, MAX_RING_POINTS - 1).astype(int)], xy[:1]])
        x = self.unproject(xy)
        lat = np.round(np.degrees(np.arcsin(np.clip(x[:, 2], -1.0, 1.0))), 5)
        lon = np.round(np.degrees(np.unwrap(np.arctan2(x[:, 1], x[:, 0]))), 5)
        ring = list(zip(lat.tolist(), lon.tolist(), strict=True))
        if abs(ring[-1][1] - ring[0][1]) > 180.0:  # the ring goes round a pole: close it along the pole
            pole = 90.0 if self.centre[2] > 0 else -90.0
            ring += [(pole, ring[-1][1]), (pole, ring[0][1])]
        if ring[0] != ring[-1]:
            ring.append(ring[0])
        return ring


@dataclass
class Tile:
    """A grid's extent: its projection, half-width (km), narrowest kernel (km) and the samples it owns."""

    plane: Plane
    half: float
    narrowest: float
    samples: np.ndarray

    def size(self) -> int:
        return int(np.clip(math.ceil(2.0 * self.half * CELLS_PER_SPREAD / max(self.narrowest, 1e-6)), GRID_MIN, GRID_MAX))

    def key(self) -> tuple[bytes, float, float]:
        return self.plane.centre.tobytes(), self.half, self.narrowest


@dataclass
class Grid:
    """The density on a tile's grid."""

    plane: Plane
    axis: np.ndarray
    z: np.ndarray

    @property
    def step(self) -> float:
        return float(self.axis[1] - self.axis[0])

    @property
    def half(self) -> float:
        return float(self.axis[-1])

    @functools.cached_property
    def contours(self) -> Any:
        """The grid's contour generator, shared by its levels (made directly: ``contour_generator``
        would copy ``z`` into a masked array on every call, and this grid has no mask)."""
        import contourpy

        x, y = np.meshgrid(self.axis, self.axis)
        return contourpy.SerialContourGenerator(
            x,
            y,
            self.z,
            None,  # type: ignore[arg-type]  # no mask (contour_generator passes None too; the stub wants an array)
            corner_mask=True,
            line_type=contourpy.LineType.Separate,
            fill_type=contourpy.FillType.OuterOffset,
            quad_as_tri=False,
            z_interp=contourpy.ZInterp.Linear,
            x_chunk_size=0,
            y_chunk_size=0,
        )

    def polygons(self, tau: float) -> list[Any]:
        """The filled contours at ``tau``: shapely polygons (with their holes) in the plane."""
        from shapely.geometry import Polygon

        filled = self.contours.filled(tau, np.inf)  # OuterOffset: (points, offsets), one entry per polygon
        points = cast("list[np.ndarray]", filled[0])
        offsets = cast("list[np.ndarray]", filled[1])
        out = []
        for pts, off in zip(points, offsets, strict=True):
            rings = [pts[a:b] for a, b in itertools.pairwise(off.tolist())]
            poly = Polygon(rings[0], rings[1:])
            if not poly.is_valid:
                poly = poly.buffer(0)
            if not poly.is_empty and poly.area > 0:
                out.append(poly)
        return out


class Field:
    """The mixture's density on grids, each block of a grid from the kernels that reach it."""

    def __init__(self, mixture: Mixture, tau: float) -> None:
        self.mixture = mixture
        self.x, self.dens = mixture.samples()
        kappa = mixture.kappa
        self.spread = np.where(kappa > 0, EARTH_RADIUS_KM / np.sqrt(np.maximum(kappa, 1e-300)), np.inf)
        log_c = _log_norm(kappa)
        self.kmu, self.offset = mixture.mu * kappa[:, None], log_c - kappa
        self.weights32 = mixture.weights.astype(np.float32)
        self._pieces: dict[tuple[int, float], list[tuple[Any, np.ndarray]]] = {}
        self._projected: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # how far each kernel matters: beyond this angle it adds less than RELEVANT * tau
        gap = np.maximum(0.0, np.log(mixture.weights) + log_c - math.log(RELEVANT * tau))
        one_minus_cos = np.where(kappa > 0, gap / np.maximum(kappa, 1e-300), 2.0)
        self.reach = np.arccos(np.clip(1.0 - one_minus_cos, -1.0, 1.0))

    def narrowest(self, centre: np.ndarray, reach_km: float) -> float:
        """The narrowest spread among the kernels that can shape the region within ``reach_km``."""
        dist = EARTH_RADIUS_KM * np.arccos(np.clip(self.mixture.mu @ centre, -1.0, 1.0))
        near = np.isfinite(self.spread) & (dist <= reach_km + 4.0 * self.spread)
        return float(self.spread[near].min()) if near.any() else max(reach_km, MIN_REGION_KM)

    def grid(self, tile: Tile) -> Grid:
        """The density on ``tile``'s grid, all blocks at once: each block's points with the kernels
        that reach the block (those within the block's own angular radius plus their ``reach``)."""
        n = tile.size()
        half = min(max(tile.half, MIN_REGION_KM), LIMIT_KM)
        axis = np.linspace(-half, half, n)
        count = -(-n // BLOCK)  # blocks a side, each of side <= BLOCK points; the last ones padded
        side = -(-n // count)
        padded = np.concatenate([axis, axis[-1] + (axis[1] - axis[0]) * np.arange(1, count * side - n + 1)])
        # the points block by block: (blocks, points per block), block (i, j) holding rows i*side..
        # and columns j*side.. of the padded grid
        px = np.broadcast_to(padded.reshape(1, count, 1, side), (count, count, side, side)).reshape(count * count, -1)
        py = np.broadcast_to(padded.reshape(count, 1, side, 1), (count, count, side, side)).reshape(count * count, -1)
        s2 = (px**2 + py**2) / (2.0 * EARTH_RADIUS_KM) ** 2  # (rho / 2R)^2, as Plane.unproject
        real = (px <= axis[-1]) & (py <= axis[-1]) & (s2 < 1.0)  # not padding; inside the antipode's circle
        cos_c, sin_r = 1.0 - 2.0 * s2, np.sqrt(np.maximum(1.0 - s2, 0.0)) / EARTH_RADIUS_KM
        plane = tile.plane
        xyz = np.stack(
            [cos_c * c + sin_r * (px * e + py * u) for c, e, u in zip(plane.centre, plane.east, plane.north, strict=True)], -1
        )
        centre = np.where(real[..., None], xyz, 0.0).sum(axis=1)
        centre /= np.maximum(np.linalg.norm(centre, axis=1), 1e-300)[:, None]
        cos = np.where(real, np.einsum("bpi,bi->bp", xyz, centre), 1.0).min(axis=1)
        angle = np.where(real.any(axis=1), np.arccos(np.clip(cos, -1.0, 1.0)), -np.inf)
        apart = np.arccos(np.clip(centre @ self.mixture.mu.T, -1.0, 1.0))  # (blocks, kernels)
        blocks, kernels = np.nonzero(apart <= angle[:, None] + self.reach[None, :])
        z = np.zeros(px.shape)
        if len(blocks):  # else no kernel reaches the grid: the density there is below every level
            # one row per (block, kernel) pair: the exponent in float64 (a 50 m kernel's kappa is
            # 1.6e10), the kernels and their weighted sum in float32, as Mixture.density_xyz
            arg = np.matmul(xyz[blocks], self.kmu[kernels][:, :, None])[..., 0]
            arg += self.offset[kernels][:, None]
            k32 = arg.astype(np.float32)
            np.maximum(k32, np.float32(-87.0), out=k32)
            np.exp(k32, out=k32)
            weights = np.zeros((len(z), len(blocks)), np.float32)
            weights[blocks, np.arange(len(blocks))] = self.weights32[kernels]
            z = np.where(real, weights @ k32, 0.0)
        z = z.reshape(count, count, side, side).transpose(0, 2, 1, 3).reshape(count * side, count * side)[:n, :n]
        return Grid(tile.plane, axis, np.ascontiguousarray(z))

    def pieces(self, grid: Grid, tau: float) -> list[tuple[Any, np.ndarray]]:
        """The filled contours of ``grid`` at ``tau``, each with the samples inside it (computed once
        per grid and level: settling the tiles and drawing the level ask for the same)."""
        from shapely import contains_xy

        key = (id(grid), tau)
        if key not in self._pieces:
            near, xy = self._near(grid)
            found = []
            for poly in grid.polygons(tau):
                x0, y0, x1, y1 = poly.bounds
                box = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))
                found.append((poly, near[box[contains_xy(poly, xy[box, 0], xy[box, 1])]]))
            self._pieces[key] = found
        return self._pieces[key]

    def _near(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """The samples that may lie on ``grid`` and where they fall in its plane (projected once per grid)."""
        if id(grid) not in self._projected:
            far = grid.half * math.sqrt(2.0)
            cos_far = math.cos(2.0 * math.asin(min(1.0, far / LIMIT_KM)))
            near = np.flatnonzero(self.x @ grid.plane.centre >= max(cos_far, -0.999))
            self._projected[id(grid)] = near, grid.plane.project(self.x[near])
        return self._projected[id(grid)]
