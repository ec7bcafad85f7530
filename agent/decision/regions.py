"""The highest-density regions of a mixture as the map draws them: contours of the density at the
level that holds the stated mass, split into the pieces they really have.

The region holding p of the mass is {x : f(x) >= f_p}, with f_p the density threshold the search
areas use (``Mixture.density_threshold``), so the drawn area is the stated ``search_area_km2`` up to
the Monte Carlo error of that estimate. The regions are found where the mixture's samples are, each level on its own (a grid fine
enough for the 90% region can be far too coarse for the small pieces of the 50% one):

1. the samples inside the level's region are assigned to the nearest mode inside it, and modes whose
   samples overlap are grouped (a group is one part of the Earth);
2. groups are packed into tiles, each a grid in its own Lambert azimuthal equal-area projection (so
   areas on the grid are areas on the sphere) as fine as its narrowest kernel needs, at most
   ``GRID_MAX`` points a side; a tile grows while a piece it holds touches its edge, and two tiles
   whose pieces meet are joined;
3. the level's density threshold is contoured on the tiles' grids (``contourpy``): each filled
   polygon, with its holes, is one piece, drawn by the tile that owns most of its samples;
4. a group that only one kernel reaches needs no grid: its piece is the disk where that kernel's
   density (with the uniform part's) reaches the threshold.

Each piece carries its area (km2, on the sphere of ``EARTH_RADIUS_KM``) and the share of the samples
inside it. Outlines are simplified to within a tenth of a grid step and returned as (lat, lon) rings
with unwrapped longitudes, so a piece across the antimeridian stays one ring. A level that needs the
mixture's uniform part (the density nowhere meaningfully below its threshold) is the whole Earth.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from agent.decision.blas import single_blas_thread
from agent.decision.grids import CELLS_PER_SPREAD, GRID_MAX, LIMIT_KM, Field, Grid, Plane, Tile
from agent.decision.mixture import Mixture, _log_norm
from agent.prediction import Region
from retrieval_service.core.geo import EARTH_RADIUS_KM, to_unit_vectors

MARGIN = 0.25
"""A group's grid reaches this share beyond its farthest sample (plus two narrowest spreads) ..."""
GROWTH = 1.7
MAX_ROUNDS = 6
"""... and a tile grows by GROWTH, or joins another, for at most MAX_ROUNDS rounds."""
SIMPLIFY = 0.1
"""Outlines are simplified to within this share of a grid step (a coarser outline cuts off area)."""
WHOLE_EARTH_TOLERANCE = 1e-3
"""A level whose density is within this share of the uniform part's is the whole Earth."""
DISK_POINTS = 48
"""Vertices of the outline of a piece shaped by one kernel alone (a disk)."""
EARTH_KM2 = 4 * math.pi * EARTH_RADIUS_KM**2


def _extent(field: Field, plane: Plane, idx: np.ndarray) -> tuple[float, float]:
    """The half-width a grid about ``plane`` needs for the samples ``idx``, and their narrowest kernel."""
    xy = plane.project(field.x[idx])
    reach = float(np.abs(xy).max()) if len(idx) else 0.0
    narrowest = field.narrowest(plane.centre, reach)
    return reach * (1.0 + MARGIN) + 2.0 * narrowest, narrowest


def _fits(half: float, narrowest: float) -> bool:
    return 2.0 * half * CELLS_PER_SPREAD / max(narrowest, 1e-6) <= GRID_MAX


def _tiles(field: Field, groups: list[np.ndarray]) -> list[Tile]:
    """The groups packed into as few tiles as their resolution allows, the largest group first."""
    tiles: list[Tile] = []
    for idx in sorted(groups, key=len, reverse=True):
        for tile in tiles:
            apart = EARTH_RADIUS_KM * float(np.arccos(np.clip((field.x[idx] @ tile.plane.centre).min(), -1.0, 1.0)))
            if apart > min(GRID_MAX * tile.narrowest / (2.0 * CELLS_PER_SPREAD), EARTH_RADIUS_KM):
                continue  # too far for this tile's resolution (or more than a radian away)
            half, narrowest = _extent(field, tile.plane, idx)
            half, narrowest = max(half, tile.half), min(narrowest, tile.narrowest)
            if _fits(half, narrowest):
                tile.half, tile.narrowest = half, narrowest
                tile.samples = np.concatenate([tile.samples, idx])
                break
        else:
            plane = Plane(field.x[idx[int(np.argmax(field.dens[idx]))]])  # centred on its densest sample
            half, narrowest = _extent(field, plane, idx)
            tiles.append(Tile(plane, half, narrowest, idx))
    return tiles


def _roots(n: int, pairs: Any) -> list[int]:
    """The root of each of ``n`` items once the ``pairs`` (i, j) are joined (union-find)."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[find(int(a))] = find(int(b))
    return [find(i) for i in range(n)]


def _joined(tiles: list[Tile], pairs: set[tuple[int, int]], field: Field) -> list[Tile]:
    """Tiles whose pieces meet, joined (in the plane of the one with more samples)."""
    members: dict[int, list[int]] = {}
    for i, root in enumerate(_roots(len(tiles), pairs)):
        members.setdefault(root, []).append(i)
    out = []
    for ids in members.values():
        if len(ids) == 1:
            out.append(tiles[ids[0]])
            continue
        base = max((tiles[i] for i in ids), key=lambda t: len(t.samples))
        idx = np.concatenate([tiles[i].samples for i in ids])
        half, narrowest = _extent(field, base.plane, idx)
        out.append(Tile(base.plane, max(half, *(tiles[i].half for i in ids)), narrowest, idx))
    return out


def _groups(mixture: Mixture, tau: float) -> list[np.ndarray]:
    """The samples inside the region (density >= ``tau``) grouped by the mode inside the region
    nearest each; modes whose samples overlap are one group."""
    x, dens = mixture.samples()
    idx = np.flatnonzero(dens >= tau)
    if not len(idx):
        return []
    modes = [m for m in mixture.modes() if m.density >= tau]
    if not modes:
        return [idx]
    centres = to_unit_vectors([m.lat for m in modes], [m.lon for m in modes])
    nearest = np.argmax(x[idx] @ centres.T, axis=1)
    members = [idx[nearest == j] for j in range(len(modes))]
    radius = np.array(
        [float(np.arccos(np.clip(x[m] @ centres[j], -1, 1)).max()) if len(m) else 0.0 for j, m in enumerate(members)]
    )
    apart = np.arccos(np.clip(centres @ centres.T, -1, 1))
    overlap = apart <= (radius[:, None] + radius[None, :]) * (1 + MARGIN)
    roots = _roots(len(modes), zip(*np.nonzero(np.triu(overlap, 1)), strict=True))
    joined: dict[int, list[np.ndarray]] = {}
    for m, root in zip(members, roots, strict=True):
        if len(m):
            joined.setdefault(root, []).append(m)
    return [np.concatenate(parts) for parts in joined.values()]


def _settled(field: Field, tiles: list[Tile], tau: float) -> tuple[list[Tile], list[Grid], np.ndarray]:
    """The tiles (and their grids) once no piece at ``tau`` touches its tile's edge or holds another
    tile's samples; and each sample's owning tile (-1: outside the region)."""
    cache: dict[tuple[bytes, float, float], Grid] = {}
    owner = np.full(len(field.x), -1)
    grids: list[Grid] = []
    for rounds in range(MAX_ROUNDS + 1):
        owner[:] = -1
        for t, tile in enumerate(tiles):
            owner[tile.samples] = t
        grids = []
        for tile in tiles:
            if tile.key() not in cache:
                cache[tile.key()] = field.grid(tile)
            grids.append(cache[tile.key()])
        if rounds == MAX_ROUNDS:
            break
        meet: set[tuple[int, int]] = set()
        grew = False
        for t, (tile, grid) in enumerate(zip(tiles, grids, strict=True)):
            for poly, idx in field.pieces(grid, tau):
                if not (owner[idx] == t).any():
                    continue  # another tile's piece seen from here
                meet |= {(t, int(o)) for o in set(owner[idx].tolist()) - {t, -1}}
                x0, y0, x1, y1 = poly.bounds
                if max(-x0, -y0, x1, y1) >= grid.half - grid.step and tile.half < LIMIT_KM:
                    tile.half, grew = min(tile.half * GROWTH, LIMIT_KM), True
                    break
        if meet:
            tiles = _joined(tiles, meet, field)
        elif not grew:
            break
    return tiles, grids, owner


def _regions(field: Field, tiles: list[Tile], grids: list[Grid], owner: np.ndarray, tau: float) -> list[Region]:
    """The pieces at ``tau``, each drawn by the tile that owns most of its samples."""
    n = len(field.x)
    out: list[Region] = []
    for t, grid in enumerate(grids):
        for poly, idx in field.pieces(grid, tau):
            owners = owner[idx][owner[idx] >= 0]
            if not len(owners) or np.bincount(owners, minlength=len(tiles)).argmax() != t:
                continue  # no sample reached it, or another tile draws it
            simple = poly.simplify(grid.step * SIMPLIFY, preserve_topology=True)
            for shape in getattr(simple, "geoms", [simple]):
                if shape.is_empty:
                    continue
                share = shape.area / max(poly.area, 1e-300)
                out.append(
                    Region(
                        outline=grid.plane.ring(np.asarray(shape.exterior.coords)),
                        holes=[grid.plane.ring(np.asarray(h.coords)) for h in shape.interiors],
                        area_km2=round(float(shape.area), 4 if shape.area < 1 else 1),
                        mass=round(min(1.0, len(idx) / n * share), 4),
                    )
                )
    out.sort(key=lambda r: -(r.mass or 0.0))
    return out


def _lone_kernel(field: Field, idx: np.ndarray) -> int | None:
    """The one kernel that shapes the region around the samples ``idx``, when only one reaches
    them (the region there is then a disk around it), else None."""
    centre = field.x[idx[int(np.argmax(field.dens[idx]))]]
    spread = float(np.arccos(np.clip((field.x[idx] @ centre).min(), -1.0, 1.0)))
    apart = np.arccos(np.clip(field.mixture.mu @ centre, -1.0, 1.0))
    near = np.flatnonzero((field.mixture.kappa > 0) & (apart <= spread * (1.0 + MARGIN) + field.reach))
    return int(near[0]) if len(near) == 1 else None


def _disk(field: Field, kernel: int, cos: np.ndarray, tau: float, floor: float) -> Region | None:
    """The region {f >= tau} around a lone kernel: the disk where it adds tau - floor (the uniform
    part gives the floor), drawn as a ``DISK_POINTS``-gon (its area is the polygon's); ``cos`` is
    each sample's cosine to the kernel's centre."""
    mixture = field.mixture
    kappa = float(mixture.kappa[kernel])
    peak = float(np.log(mixture.weights[kernel]) + _log_norm(np.array([kappa]))[0])
    gap = peak - math.log(max(tau - floor, 1e-300))
    if gap <= 0:
        return None
    angle = math.acos(max(-1.0, 1.0 - gap / kappa))
    plane = Plane(mixture.mu[kernel])
    rho = 2.0 * EARTH_RADIUS_KM * math.sin(angle / 2.0)
    turn = np.linspace(0.0, 2.0 * math.pi, DISK_POINTS + 1)
    area = 0.5 * DISK_POINTS * rho**2 * math.sin(2.0 * math.pi / DISK_POINTS)
    inside = int((cos >= math.cos(angle)).sum())
    return Region(
        outline=plane.ring(np.column_stack([rho * np.cos(turn), rho * np.sin(turn)])),
        area_km2=round(area, 4 if area < 1 else 1),
        mass=round(inside / len(field.x), 4),
    )


def _level_regions(mixture: Mixture, tau: float, floor: float) -> list[Region]:
    """The pieces of {f >= ``tau``}, heaviest first: contoured on tiles fit for this level, or disks."""
    field = Field(mixture, tau)
    groups: list[np.ndarray] = []
    lone: list[int] = []
    for idx in _groups(mixture, tau):
        kernel = _lone_kernel(field, idx)
        if kernel is None:
            groups.append(idx)
        else:
            lone.append(kernel)
    tiles, grids, owner = _settled(field, _tiles(field, groups), tau) if groups else ([], [], np.full(len(field.x), -1))
    cos = field.x @ mixture.mu[lone].T  # each sample's cosine to each lone kernel's centre
    disks = [_disk(field, kernel, cos[:, i], tau, floor) for i, kernel in enumerate(lone)]
    pieces = _regions(field, tiles, grids, owner, tau) + [d for d in disks if d is not None]
    return sorted(pieces, key=lambda r: -(r.mass or 0.0))


@single_blas_thread
def density_regions(mixture: Mixture, levels: tuple[float, ...]) -> dict[float, list[Region]]:
    """For each level (0..1), the pieces of the highest-density region holding that share of the
    mass, heaviest first; the whole Earth is one piece with no outline. Each level is contoured on
    tiles of its own: the grids the widest level needs can be too coarse for a narrower level's peaks."""
    taus = {level: mixture.density_threshold(level) for level in levels}
    floor = float(mixture.weights[mixture.kappa <= 0].sum()) / (4 * math.pi)  # the uniform part's density
    out: dict[float, list[Region]] = {}
    drawn: list[float] = []
    for level, tau in taus.items():
        if tau <= floor * (1.0 + WHOLE_EARTH_TOLERANCE):
            out[level] = [Region(outline=[], area_km2=round(EARTH_KM2, 1), mass=1.0)]
        else:
            drawn.append(level)
    for level in drawn:  # each level on its own tiles: a grid fit for the widest level is too coarse for a narrow peak
        out[level] = _level_regions(mixture, taus[level], floor)
    return out
