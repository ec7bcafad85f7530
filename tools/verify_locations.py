"""Tool: verify_locations: score candidate coordinates against the photo (G3 geo-verification)."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import Field

from retrieval_service.core.types import Candidate, Location, Verification
from tools.common import PhotoArgs, Runtime, ToolOutput, build_tool, error_output, photo_of, r
from tools.services import Services

DESCRIPTION = """Check candidate locations against the photo: each (lat, lon) is scored by the similarity
between the photo's embedding and the location's embedding (GeoCLIP image-GPS space).
Use it to decide between a few hypotheses (your own guesses, cluster centres, places from text).
Returns {"ranked": [{lat, lon, score}]} best first; scores are cosine similarities: compare them with
each other, not with a fixed threshold."""


class VerifyLocationsArgs(PhotoArgs):
    candidates: list[Location] = Field(min_length=1, max_length=50, description="Locations to score [{lat, lon}].")


def summarise(content: dict[str, Any]) -> str:
    ranked = content.get("ranked") or []
    if not ranked:
        return "nothing to verify"
    return f"{len(ranked)} ranked; best {ranked[0]['lat']:.3f}, {ranked[0]['lon']:.3f} ({ranked[0]['score']:.3f})"


def _source(point: Location) -> Any:
    return point.source if isinstance(point, Candidate) else "lmm"


def make_verify_locations(services: Services) -> BaseTool:
    def run(runtime: Runtime, candidates: list[Location | dict]) -> ToolOutput:
        points = [c if isinstance(c, Location) else Location.model_validate(c) for c in candidates]
        scores = list(services.retriever.verify(photo_of(runtime), [(p.lat, p.lon) for p in points]))
        if len(scores) != len(points):
            return error_output(f"verification returned {len(scores)} scores for {len(points)} candidates")
        ranked = sorted(
            (Candidate(lat=p.lat, lon=p.lon, score=s, source=_source(p)) for p, s in zip(points, scores, strict=True)),
            key=lambda c: c.score,
            reverse=True,
        )
        content = {"ranked": [{"lat": r(c.lat, 4), "lon": r(c.lon, 4), "score": r(c.score, 4)} for c in ranked]}
        return content, Verification(ranked=ranked)

    return build_tool("verify_locations", run, VerifyLocationsArgs, DESCRIPTION, summarise)
