"""Geometry on the Earth, in one place.

* ``distance_km`` / ``distances_km``: great-circle (haversine) distance on a sphere of the mean
  Earth radius. Every geometric decision (clusters, support radii, de-duplication) uses it.
* ``geodesic_km``: distance on the WGS-84 ellipsoid (Karney, through geopy), the distance the
  papers' evaluation code reports; only scoring against ground truth uses it.
* ``spherical_mean``: weighted mean position through 3-D unit vectors (right across the
  antimeridian and near the poles).
* ``nearest_places`` / ``country_codes`` / ``country_name``: the offline GeoNames gazetteer
  (``reverse_geocoder``, single-process mode) and ISO country names (pycountry).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), the sphere behind every great-circle distance here."""

_EXTRA_COUNTRIES = {"XK": "Kosovo"}
_rg_lock = threading.Lock()
_rg: Any = None


def distances_km(lat: float, lon: float, lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray) -> np.ndarray:
    """Great-circle distances in km from one point to many (degrees in)."""
    lat1, lon1 = np.radians(lat), np.radians(lon)
    lat2, lon2 = np.radians(np.asarray(lats, float)), np.radians(np.asarray(lons, float))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points (degrees in)."""
    return float(distances_km(lat1, lon1, [lat2], [lon2])[0])


def geodesic_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Geodesic distance in km on the WGS-84 ellipsoid, as the published evaluations measure errors."""
    from geopy.distance import geodesic

    return float(geodesic((lat1, lon1), (lat2, lon2), ellipsoid="WGS-84").km)


def to_unit_vectors(lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors of (lat, lon) degrees."""
    lat_r, lon_r = np.radians(np.asarray(lats, float)), np.radians(np.asarray(lons, float))
    return np.column_stack([np.cos(lat_r) * np.cos(lon_r), np.cos(lat_r) * np.sin(lon_r), np.sin(lat_r)])


def from_unit_vector(v: np.ndarray) -> tuple[float, float]:
    """(lat, lon) degrees of a (not necessarily unit) 3-D vector."""
    v = np.asarray(v, float) / max(float(np.linalg.norm(v)), 1e-300)
    return float(np.degrees(np.arcsin(np.clip(v[2], -1.0, 1.0)))), float(np.degrees(np.arctan2(v[1], v[0])))


def spherical_mean(
    lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray | None = None
) -> tuple[float, float]:
    """Weighted mean position on the sphere, in degrees.

    Falls back to the heaviest point when the vectors cancel out (e.g. antipodal points).
    """
    lats, lons = np.asarray(lats, float), np.asarray(lons, float)
    w = np.ones_like(lats) if weights is None else np.asarray(weights, float)
    v = (to_unit_vectors(lats, lons) * w[:, None]).sum(axis=0)
    if float(np.linalg.norm(v)) < 1e-9 * max(float(np.abs(w).sum()), 1e-12):
        i = int(np.argmax(w))
        return float(lats[i]), float(lons[i])
    return from_unit_vector(v)


def _geocoder() -> Any:
    global _rg
    if _rg is None:
        import reverse_geocoder

        # mode=1: a single-process K-D tree (mode 2 spawns worker processes)
        _rg = reverse_geocoder.RGeocoder(mode=1, verbose=False)
    return _rg


def nearest_places(coords: Sequence[tuple[float, float]]) -> list[dict[str, Any]]:
    """The nearest GeoNames place (population >= 1000) of each (lat, lon): dicts with name, admin1,
    admin2, cc, lat, lon. Thread-safe; the K-D tree is built once per process."""
    if len(coords) == 0:
        return []
    with _rg_lock:
        return list(_geocoder().query([(float(a), float(b)) for a, b in coords]))


def country_codes(coords: Sequence[tuple[float, float]]) -> list[str | None]:
    """ISO 3166-1 alpha-2 code of the nearest GeoNames place of each (lat, lon), in one batch."""
    return [(str(row.get("cc") or "").upper() or None) for row in nearest_places(coords)]


def country_code(lat: float, lon: float) -> str | None:
    """Country code of one point (see ``country_codes``)."""
    return country_codes([(lat, lon)])[0]


def country_name(code: str | None) -> str:
    """English short name of an ISO 3166-1 alpha-2 code (the code itself when unknown)."""
    import pycountry

    code = (code or "").upper()
    if code in _EXTRA_COUNTRIES:
        return _EXTRA_COUNTRIES[code]
    country = pycountry.countries.get(alpha_2=code) if len(code) == 2 else None
    if country is None:
        return code
    return getattr(country, "common_name", None) or country.name
