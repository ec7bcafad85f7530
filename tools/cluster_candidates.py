"""Tool: cluster_candidates: geographic clustering re-rank of candidate coordinates (DualGeo)."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from retrieval_service.core.types import Candidate
from retrieval_service.evidence.clustering import cluster_points
from tools.common import ToolOutput, build_tool, r
from tools.services import Services

DESCRIPTION = """Group candidate coordinates (e.g. the "gallery" and "database" lists from retrieve) into
geographic clusters with similarity-weighted DBSCAN on the sphere, and re-rank them.
Agreement of many candidates in one area is strong evidence; use "best" as the consensus location.
Args: candidates [{lat, lon, score}], eps_km (cluster neighbourhood, default 50), min_samples (default 2).
Weighting: a candidate counts as score / mean score towards min_samples (capped so that one candidate
never forms a cluster alone).
Returns {"clusters": [{lat, lon, support, score_mass, radius_km}] strongest first,
"best": {lat, lon, support} (support 0 = no cluster formed: weighted centre of all candidates),
"reranked": [{lat, lon, score, dist_km}] nearest to best first (top 10), "noise": candidates in no cluster}."""

MAX_CLUSTERS = 5
MAX_RERANKED = 10


class CandidateArg(Candidate):
    """A candidate as a caller passes it: lat, lon and score (source and payload are optional)."""

    score: float = Field(default=1.0, description="Similarity of the candidate (higher = better).")


class ClusterCandidatesArgs(BaseModel):
    candidates: list[CandidateArg] = Field(min_length=1, max_length=500, description="Candidates [{lat, lon, score}].")
    eps_km: float = Field(default=50.0, gt=0, le=5000, description="Neighbourhood radius in km.")
    min_samples: int = Field(default=2, ge=1, le=100, description="Candidates needed to form a cluster.")


def summarise(content: dict[str, Any]) -> str:
    best = content.get("best")
    where = f"; best {best['lat']:.3f}, {best['lon']:.3f} support {best.get('support')}" if best else ""
    return f"{len(content.get('clusters') or [])} clusters, {content.get('noise', 0)} noise{where}"


def make_cluster_candidates(services: Services) -> BaseTool:
    del services

    def run(candidates: list[Candidate | dict], eps_km: float = 50.0, min_samples: int = 2) -> ToolOutput:
        points = [c if isinstance(c, Candidate) else CandidateArg.model_validate(c) for c in candidates]
        res = cluster_points(points, eps_km=eps_km, min_samples=min_samples)
        out: dict[str, Any] = {
            "clusters": [
                {
                    "lat": r(c.lat, 4),
                    "lon": r(c.lon, 4),
                    "support": c.support,
                    "score_mass": r(c.score_mass),
                    "radius_km": r(c.radius_km, 1),
                }
                for c in res.clusters[:MAX_CLUSTERS]
            ],
            "best": {"lat": r(res.best.lat, 4), "lon": r(res.best.lon, 4), "support": res.best_support},
            "reranked": [
                {
                    "lat": r(points[i].lat, 4),
                    "lon": r(points[i].lon, 4),
                    "score": r(points[i].score),
                    "dist_km": r(res.distance_km[i], 1),
                }
                for i in res.reranked[:MAX_RERANKED]
            ],
            "noise": res.noise,
        }
        if len(res.clusters) > MAX_CLUSTERS:
            out["more_clusters"] = len(res.clusters) - MAX_CLUSTERS
        return out, res

    return build_tool("cluster_candidates", run, ClusterCandidatesArgs, DESCRIPTION, summarise)
