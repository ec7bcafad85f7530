"""Tool: reverse_geocode: nearest GeoNames place, region and country for a coordinate."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool

from retrieval_service.core.types import Location
from retrieval_service.evidence.geocoding import REMOTE_KM
from tools.common import ToolOutput, build_tool, r
from tools.services import Services

DESCRIPTION = f"""Name the place at a coordinate (offline GeoNames gazetteer of towns with >= 1000 people).
Use it to turn a candidate (lat, lon) into a town, region and country, e.g. to check it against text,
language or scenery in the photo.
Returns {{"city","region","country","country_code","distance_km","remote"}}: distance_km is how far
the nearest town is; "remote" is true when it is more than {REMOTE_KM:.0f} km away (open sea, desert,
ice, wilderness), so the place name is then only a rough pointer."""


class ReverseGeocodeArgs(Location):
    """The coordinate to name."""


def summarise(content: dict[str, Any]) -> str:
    parts = [content.get(k) for k in ("city", "region", "country")]
    return ", ".join(p for p in parts if p) + f" ({content.get('distance_km', '?')} km)"


def make_reverse_geocode(services: Services) -> BaseTool:
    def run(lat: float, lon: float) -> ToolOutput:
        info = services.geocoder.lookup(lat, lon)
        out: dict[str, Any] = {
            "city": info.city,
            "region": info.region,
            "country": info.country,
            "country_code": info.country_code,
            "distance_km": r(info.distance_km or 0.0, 1),
            "remote": info.remote,
        }
        if info.address:
            out["address"] = info.address
        return out, info

    return build_tool("reverse_geocode", run, ReverseGeocodeArgs, DESCRIPTION, summarise)
