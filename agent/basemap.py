"""The bundled offline world map: Natural Earth's countries at 1:50m, so that a map opened offline
shows coastlines and country borders, and so that "could it be Norway?" can be answered by testing
the probability model's samples against Norway's outline.

``agent/assets/world/countries-50m.json`` is Natural Earth 4.1.0's admin-0 countries (public
domain) as TopoJSON, from the ``world-atlas`` 2.0.2 npm package (ISC; ``VENDORED.md``). Map pages
inline it and draw it with the vendored ``topojson-client``; here it is decoded once into shapely
geometries keyed by ISO 3166-1 alpha-2 code (the file's ids are ISO numeric codes; the five shapes
without one are mapped below, Siachen Glacier left unassigned).
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

COUNTRIES_FILE = "world/countries-50m.json"
NO_ID = {"Somaliland": "SO", "Kosovo": "XK", "N. Cyprus": "CY", "Indian Ocean Ter.": "AU"}
"""Shapes of the file without an ISO numeric id: the country GeoNames (the reverse geocoder) files them under."""
COAST_DEG = 0.1
"""A point this close (degrees, ~11 km of latitude) to a country's outline counts as in it."""
_lock = threading.Lock()


def asset_path(name: str) -> Path:
    """A file under ``agent/assets`` (package data)."""
    return Path(str(files("agent").joinpath("assets", name)))


@lru_cache(maxsize=1)
def countries_topojson() -> dict[str, Any]:
    """The shipped countries (TopoJSON, object ``countries``), as map pages inline it."""
    return json.loads(asset_path(COUNTRIES_FILE).read_text(encoding="utf-8"))


def _arcs(topology: dict[str, Any]) -> list[np.ndarray]:
    """The topology's arcs as (lon, lat) arrays (delta-decoded, de-quantized)."""
    scale = np.array(topology["transform"]["scale"], float)
    shift = np.array(topology["transform"]["translate"], float)
    return [np.cumsum(np.asarray(arc, float), axis=0) * scale + shift for arc in topology["arcs"]]


def _ring(arcs: list[np.ndarray], indices: list[int]) -> np.ndarray:
    parts: list[np.ndarray] = []
    for i in indices:  # ~i is arc i reversed; consecutive arcs share their joining point
        arc = arcs[i] if i >= 0 else arcs[~i][::-1]
        parts.append(arc if not parts else arc[1:])
    return np.vstack(parts)


def _alpha2(geometry: dict[str, Any]) -> str | None:
    import pycountry

    name = (geometry.get("properties") or {}).get("name", "")
    numeric = geometry.get("id")
    country = pycountry.countries.get(numeric=str(numeric)) if numeric else None
    return country.alpha_2 if country is not None else NO_ID.get(name)


@lru_cache(maxsize=1)
def country_shapes() -> dict[str, Any]:
    """ISO alpha-2 code -> the country's shapely (Multi)Polygon in (lon, lat) degrees."""
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    topology = countries_topojson()
    arcs = _arcs(topology)
    parts: dict[str, list[Any]] = {}
    for geometry in topology["objects"]["countries"]["geometries"]:
        code = _alpha2(geometry)
        if code is None or geometry.get("type") not in ("Polygon", "MultiPolygon"):
            continue
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        for rings in polygons:
            shell, *holes = (_ring(arcs, ring) for ring in rings)
            poly = Polygon(shell, holes)
            parts.setdefault(code, []).append(poly if poly.is_valid else poly.buffer(0))
    return {code: (polys[0] if len(polys) == 1 else unary_union(polys)) for code, polys in parts.items()}


@lru_cache(maxsize=1)
def _index() -> tuple[Any, list[str]]:
    from shapely import STRtree

    shapes = country_shapes()
    codes = sorted(shapes)
    return STRtree([shapes[c] for c in codes]), codes


def countries_at(lats: np.ndarray, lons: np.ndarray) -> list[str | None]:
    """The country (ISO alpha-2) whose Natural Earth outline holds each point, or whose outline is
    within ``COAST_DEG`` of it (the 1:50m coast is a few km off in places: a harbour photo is in its
    country); None further out at sea."""
    import shapely

    with _lock:  # STRtree queries are not documented as thread-safe
        tree, codes = _index()
        points = shapely.points(np.asarray(lons, float), np.asarray(lats, float))
        which, shape = tree.query(points, predicate="within")
        out: list[str | None] = [None] * len(points)
        for i, j in zip(which.tolist(), shape.tolist(), strict=True):
            out[i] = codes[j]
        sea = np.array([i for i, code in enumerate(out) if code is None], dtype=int)
        if len(sea):
            near, nearest = tree.query_nearest(points[sea], max_distance=COAST_DEG, all_matches=False)
            for i, j in zip(near.tolist(), nearest.tolist(), strict=True):
                out[int(sea[i])] = codes[j]
    return out
