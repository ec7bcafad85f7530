"""Tool: retrieve: image->GPS retrieval (GeoCLIP gallery + image database), optionally geo-filtered."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import Field, ValidationError

from retrieval_service.core.errors import GeoAgentError
from retrieval_service.core.types import Candidate, GeoFilter, GeoFilterFields
from retrieval_service.retrieval.settings import MAX_TOP_K
from tools.common import PhotoArgs, Runtime, ToolOutput, build_tool, photo_of, r
from tools.services import Services

DESCRIPTION = """Find candidate locations for the photo by embedding retrieval.
Returns {"gallery": [{lat, lon, score, country_code}] (GeoCLIP GPS gallery, works everywhere),
"database": [{lat, lon, score, id}] (most similar geotagged photos, if an image database is indexed),
"dissimilar": [...] (least similar photos, only when dissimilar > 0), "filter": the geo filter used,
"text": [{lat, lon, place, probability}] (towns near the candidates whose descriptions match the photo,
only with a fusion model trained with text)}.
Scores are cosine similarities, best first. To "zoom in" on a hypothesis, call again with ONE filter:
lat+lon+radius_km (e.g. 300 km around a guess), or min_lat+max_lat+min_lon+max_lon, or country_code
(ISO 2 letters, e.g. "FR"). Pass the lists to cluster_candidates to find the consensus area."""


MAX_TEXT = 5


class RetrieveArgs(GeoFilterFields, PhotoArgs):
    """How many candidates, an optional geo filter (``GeoFilter``'s fields), dissimilar neighbours."""

    k: int | None = Field(default=None, ge=1, le=MAX_TOP_K, description="Candidates per list (default: the configured top_k).")
    dissimilar: int = Field(default=0, ge=0, le=20, description="Also return this many least similar database photos.")


def summarise(content: dict[str, Any]) -> str:
    g, d = content.get("gallery") or [], content.get("database") or []
    top = (g or d)[:1]
    head = f"; top {top[0]['lat']:.3f}, {top[0]['lon']:.3f} ({top[0].get('score', 0):.3f})" if top else ""
    filt = f" filter={content['filter']}" if content.get("filter") else ""
    return f"{len(g)} gallery + {len(d)} database candidates{head}{filt}"


def _db(c: Candidate) -> dict[str, Any]:
    row = {"lat": r(c.lat, 4), "lon": r(c.lon, 4), "score": r(c.score, 4), "id": c.get("id")}
    if c.source == "gallery":  # dissimilar points come from the gallery when there is no database
        row = {k: v for k, v in row.items() if k != "id"} | {"country_code": c.get("country_code")}
    return row


def _text(c: Candidate) -> dict[str, Any]:
    return {"lat": r(c.lat, 4), "lon": r(c.lon, 4), "place": c.get("name"), "probability": r(c.probability or 0.0, 4)}


def geo_filter(given: dict[str, Any]) -> GeoFilter | None:
    """The filter the set fields describe (None when none is set); a clear error when they do not
    make one filter."""
    if not given:
        return None
    try:
        return GeoFilter(**given)
    except ValidationError as exc:
        problems = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
        raise GeoAgentError(
            f"invalid geo filter {given}: {problems}",
            "give one of: lat+lon+radius_km, min_lat+max_lat+min_lon+max_lon, or country_code",
        ) from exc


def make_retrieve(services: Services) -> BaseTool:
    def run(runtime: Runtime, k: int | None = None, dissimilar: int = 0, **filter_args: Any) -> ToolOutput:
        k = k or services.settings.top_k
        requested = geo_filter(GeoFilterFields(**filter_args).filter_given())
        result = services.retriever.search(
            photo_of(runtime), k_gallery=k, k_database=k, geo_filter=requested, dissimilar=dissimilar
        )
        used = result.geo_filter or requested
        return {
            "gallery": [
                {"lat": r(c.lat, 4), "lon": r(c.lon, 4), "score": r(c.score, 4), "country_code": c.get("country_code")}
                for c in result.gallery[:k]
            ],
            "database": [_db(c) for c in result.database[:k]],
            "dissimilar": [_db(c) for c in result.dissimilar[:dissimilar]] if dissimilar else [],
            "filter": used.model_dump(exclude_none=True) if used is not None else None,
            **({"text": [_text(c) for c in result.text[:MAX_TEXT]]} if result.text else {}),
        }, result

    return build_tool("retrieve", run, RetrieveArgs, DESCRIPTION, summarise)
