"""Tool: cluster_candidates: geographic clustering re-rank of candidate coordinates (DualGeo)."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from retrieval_service.core.types import Candidate
from retrieval_service.evidence.clustering import Weighting, cluster_points
from tools.common import ToolOutput, build_tool, r
from tools.services import Services

DESCRIPTION = """Group candidate coordinates (e.g. the "database" or "gallery" list from retrieve) into
geographic clusters with DBSCAN on the sphere (haversine), and re-rank them (DualGeo).
Agreement of many candidates in one area is strong evidence; use "best" as the consensus location.
Args: candidates [{lat, lon, score}], eps_km (cluster neighbourhood, default 50), min_samples (default 2),
weighting: "none" (DualGeo: every candidate counts once; main cluster = most members, ties by summed
score; best = the real candidate nearest its mean) or "score" (a candidate counts as score / mean score;
clusters by weight; best = the weighted centre). Default: the configured one.
Returns {"clusters": [{lat, lon, support, score_mass, radius_km}] main cluster first,
"best": {lat, lon, support} (support 0 = no cluster formed: the best single candidate),
"reranked": [{lat, lon, score, dist_km}] main cluster first, then nearest to best (top 10),
"noise": candidates in no cluster}."""

MAX_CLUSTERS = 5
MAX_RERANKED = 10


class CandidateArg(Candidate):
    """A candidate as a caller passes it: lat, lon and score (source and payload are optional)."""

    score: float = Field(default=1.0, description="Similarity of the candidate (higher = better).")


class ClusterCandidatesArgs(BaseModel):
    candidates: list[CandidateArg] = Field(min_length=1, max_length=500, description="Candidates [{lat, lon, score}].")
    eps_km: float = Field(default=50.0, gt=0, le=5000, description="Neighbourhood radius in km.")
    min_samples: int = Field(default=2, ge=1, le=100, description="Candidates needed to form a cluster.")
    weighting: Weighting | None = Field(
        default=None, description="'none' (DualGeo's unweighted DBSCAN) or 'score' (score-weighted); default: the configured one."
    )


def summarise(content: dict[str, Any]) -> str:
    best = content.get("best")
    where = f"; best {best['lat']:.3f}, {best['lon']:.3f} support {best.get('support')}" if best else ""
    return f"{len(content.get('clusters') or [])} clusters, {content.get('noise', 0)} noise{where}"


def make_cluster_candidates(services: Services) -> BaseTool:
    def run(
        candidates: list[Candidate | dict], eps_km: float = 50.0, min_samples: int = 2, weighting: Weighting | None = None
    ) -> ToolOutput:
        points = [c if isinstance(c, Candidate) else CandidateArg.model_validate(c) for c in candidates]
        how = weighting or services.settings.cluster_weighting
        res = cluster_points(points, eps_km=eps_km, min_samples=min_samples, weighting=how)
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
            "weighting": res.weighting,
        }
        if len(res.clusters) > MAX_CLUSTERS:
            out["more_clusters"] = len(res.clusters) - MAX_CLUSTERS
        return out, res

    return build_tool("cluster_candidates", run, ClusterCandidatesArgs, DESCRIPTION, summarise)
