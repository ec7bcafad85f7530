"""Tool: retrieve: image->GPS retrieval (GeoCLIP gallery + image database), optionally geo-filtered."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, ValidationError

from retrieval_service.core.errors import GeoAgentError
from retrieval_service.core.types import Candidate, GeoFilter
from retrieval_service.retrieval.settings import MAX_TOP_K
from retrieval_service.core.media import tool_image_path
from tools.common import IMAGE_DESCRIPTION, Photo, ToolOutput, build_tool, r
from tools.services import Services

DESCRIPTION = """Find candidate locations for the photo by embedding retrieval.
Returns {"gallery": [{lat, lon, score, country_code}] (GeoCLIP GPS gallery, works everywhere),
"database": [{lat, lon, score, id}] (most similar geotagged photos, if an image database is indexed),
"dissimilar": [...] (least similar photos, only when dissimilar > 0), "filter": the geo filter used}.
Scores are cosine similarities, best first. To "zoom in" on a hypothesis, call again with ONE filter:
lat+lon+radius_km (e.g. 300 km around a guess), or min_lat+max_lat+min_lon+max_lon, or country_code
(ISO 2 letters, e.g. "FR"). Pass the lists to cluster_candidates to find the consensus area."""


class RetrieveArgs(BaseModel):
    image: Photo = Field(min_length=1, description=IMAGE_DESCRIPTION)
    k: int = Field(default=10, ge=1, le=MAX_TOP_K, description="Candidates per list.")
    lat: float | None = Field(default=None, ge=-90, le=90, description="Circle filter centre latitude.")
    lon: float | None = Field(default=None, ge=-180, le=180, description="Circle filter centre longitude.")
    radius_km: float | None = Field(default=None, gt=0, le=20_038, description="Circle filter radius in km.")
    min_lat: float | None = Field(default=None, ge=-90, le=90)
    max_lat: float | None = Field(default=None, ge=-90, le=90)
    min_lon: float | None = Field(default=None, ge=-180, le=180)
    max_lon: float | None = Field(default=None, ge=-180, le=180)
    country_code: str | None = Field(default=None, min_length=2, max_length=2, description="ISO 3166-1 alpha-2 code.")
    dissimilar: int = Field(default=0, ge=0, le=20, description="Also return this many least similar database photos.")


_FILTER_FIELDS = ("lat", "lon", "radius_km", "min_lat", "max_lat", "min_lon", "max_lon", "country_code")


def _db(c: Candidate) -> dict[str, Any]:
    row = {"lat": r(c.lat, 4), "lon": r(c.lon, 4), "score": r(c.score, 4), "id": c.get("id")}
    if c.source == "gallery":  # dissimilar points come from the gallery when there is no database
        row = {k: v for k, v in row.items() if k != "id"} | {"country_code": c.get("country_code")}
    return row


def _geo_filter(given: dict[str, Any]) -> GeoFilter:
    try:
        return GeoFilter(**given)
    except ValidationError as exc:
        problems = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
        raise GeoAgentError(
            f"invalid geo filter {given}: {problems}",
            "give one of: lat+lon+radius_km, min_lat+max_lat+min_lon+max_lon, or country_code",
        ) from exc


def make_retrieve(services: Services) -> BaseTool:
    def run(image: str, k: int = 10, dissimilar: int = 0, **filter_args: Any) -> ToolOutput:
        ref = tool_image_path(image, services.settings)
        given = {key: filter_args.get(key) for key in _FILTER_FIELDS if filter_args.get(key) is not None}
        geo_filter = _geo_filter(given) if given else None
        result = services.retriever.search(ref, k_gallery=k, k_database=k, geo_filter=geo_filter, dissimilar=dissimilar)
        used = result.geo_filter or geo_filter
        return {
            "gallery": [
                {
                    "lat": r(c.lat, 4),
                    "lon": r(c.lon, 4),
                    "score": r(c.score, 4),
                    "country_code": c.get("country_code"),
                }
                for c in result.gallery[:k]
            ],
            "database": [_db(c) for c in result.database[:k]],
            "dissimilar": [_db(c) for c in result.dissimilar[:dissimilar]] if dissimilar else [],
            "filter": used.model_dump(exclude_none=True) if used is not None else None,
        }, result

    return build_tool("retrieve", run, RetrieveArgs, DESCRIPTION)
