"""Reverse geocoding: offline GeoNames (``reverse_geocoder``, single-process mode) with the distance
to the matched place, and optionally OpenStreetMap Nominatim through geopy (online, off by default)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from cachetools import LRUCache

from retrieval_service.core.errors import ConfigError, GeoAgentError
from retrieval_service.core.geo import country_name, distance_km, nearest_places
from retrieval_service.core.types import Location, Place
from retrieval_service.evidence.settings import EvidenceSettings

logger = logging.getLogger(__name__)

_FAILED = object()
REMOTE_KM = 100.0
"""A point whose nearest GeoNames place (population >= 1000) is farther than this is 'remote'."""


class GeocodedPlace(Place, Location):
    """The place nearest to a coordinate (``lat``, ``lon``: the coordinate that was looked up;
    ``town``: where the named place itself is)."""

    remote: bool
    town: Location
    address: str | None = None  # Nominatim display name, when enabled


class ReverseGeocoder:
    """Nearest-place lookup. The GeoNames K-D tree is built once on first use and reused."""

    def __init__(self, settings: EvidenceSettings | None = None, *, remote_km: float = REMOTE_KM) -> None:
        self.use_nominatim = bool(settings and settings.nominatim)
        self.user_agent = settings.nominatim_user_agent if settings else "geoagent"
        self.remote_km = remote_km
        self._nominatim: Any = None
        self._addresses: LRUCache[tuple[float, float], str | None] = LRUCache(maxsize=1024)  # answers only, never failures
        self._lock = threading.Lock()

    def lookup(self, lat: float, lon: float) -> GeocodedPlace:
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise GeoAgentError(f"coordinates out of range: ({lat}, {lon})", "lat must be in [-90, 90], lon in [-180, 180]")
        row = nearest_places([(lat, lon)])[0]
        p_lat, p_lon = float(row["lat"]), float(row["lon"])
        dist = distance_km(lat, lon, p_lat, p_lon)
        cc = str(row.get("cc", "")).upper()
        address = self._nominatim_address(round(lat, 4), round(lon, 4)) if self.use_nominatim else None
        return GeocodedPlace(
            lat=lat,
            lon=lon,
            city=row.get("name") or None,
            region=row.get("admin1") or None,
            country=country_name(cc) or None,
            country_code=cc or None,
            distance_km=dist,
            remote=dist > self.remote_km,
            town=Location(lat=p_lat, lon=p_lon),
            address=address,
        )

    def _nominatim_address(self, lat: float, lon: float) -> str | None:
        """Nominatim's address for a rounded coordinate; answers are cached, failures are not (the
        next lookup of that point asks again)."""
        with self._lock:
            if (lat, lon) in self._addresses:
                return self._addresses[(lat, lon)]
        address = self._ask_nominatim(lat, lon)
        if address is not _FAILED:
            with self._lock:
                self._addresses[(lat, lon)] = address  # type: ignore[assignment]
            return address  # type: ignore[return-value]
        return None

    def _ask_nominatim(self, lat: float, lon: float) -> str | object | None:
        try:
            if self._nominatim is None:
                from geopy.extra.rate_limiter import RateLimiter
                from geopy.geocoders import Nominatim

                if not self.user_agent:
                    raise ConfigError("Nominatim needs a user agent", "set GEOAGENT_NOMINATIM_USER_AGENT")
                geocoder = Nominatim(user_agent=self.user_agent, timeout=10)
                self._nominatim = RateLimiter(geocoder.reverse, min_delay_seconds=1.0, max_retries=1)
            loc = self._nominatim((lat, lon), language="en", zoom=14)
            return loc.address if loc is not None else None
        except ConfigError:
            raise
        except Exception as exc:  # online lookup is best-effort; offline result stands
            logger.warning("Nominatim reverse geocoding failed for (%s, %s): %s", lat, lon, exc)
            return _FAILED
