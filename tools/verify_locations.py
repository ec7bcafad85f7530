"""Tool: verify_locations: score candidate coordinates against the photo (G3 geo-verification)."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from tools.common import IMAGE_DESCRIPTION, build_tool, check_image, r
from tools.services import Services

DESCRIPTION = """Check candidate locations against the photo: each (lat, lon) is scored by the similarity
between the photo's embedding and the location's embedding (GeoCLIP image-GPS space).
Use it to decide between a few hypotheses (your own guesses, cluster centres, places from text).
Returns {"ranked": [{lat, lon, score}]} best first; scores are cosine similarities: compare them with
each other, not with a fixed threshold."""


class LocationArg(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class VerifyLocationsArgs(BaseModel):
    image: str = Field(min_length=1, description=IMAGE_DESCRIPTION)
    candidates: list[LocationArg] = Field(min_length=1, max_length=50, description="Locations to score [{lat, lon}].")


def make_verify_locations(services: Services) -> BaseTool:
    def run(image: str, candidates: list[LocationArg | dict]) -> dict[str, Any]:
        ref = check_image(image)
        coords = [
            (c.lat, c.lon) if isinstance(c, LocationArg) else (float(c["lat"]), float(c["lon"])) for c in candidates
        ]
        scores = list(services.retriever.verify(ref, coords))
        if len(scores) != len(coords):
            return {"error": f"verification returned {len(scores)} scores for {len(coords)} candidates"}
        ranked = sorted(zip(coords, scores, strict=True), key=lambda cs: cs[1], reverse=True)
        return {"ranked": [{"lat": r(lat, 4), "lon": r(lon, 4), "score": r(s, 4)} for (lat, lon), s in ranked]}

    return build_tool("verify_locations", run, VerifyLocationsArgs, DESCRIPTION)
