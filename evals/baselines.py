"""The retrieval baselines the papers' tables compare against, as predictors:

* ``retrieval``: GeoCLIP's own recipe, the top-1 retrieval candidate;
* ``rerank``: the centre of the strongest geographic cluster of the candidates (DualGeo's re-rank).

They use the same tools as the agent (so their traces look alike) but no graph, no EXIF and no LMM.
Registered as ``geoagent.predictors`` entry points, so ``geoagent locate --mode retrieval`` and
``load_agent(mode="rerank")`` offer them.
"""

from __future__ import annotations

import time
from typing import Any

from agent.decision.rules import retrieval_candidates
from agent.decision.sources import build_mixture
from agent.decision.summary import prediction_fields
from agent.graphs.steps import cluster_args
from agent.prediction import Evidence, Place, Prediction, TraceEntry
from agent.predictor import Predictor, RunResult
from agent.settings import Settings
from agent.tool_calls import call_tool
from retrieval_service.core.errors import NoAnswerError
from retrieval_service.core.types import Candidate, RetrievalResult
from retrieval_service.evidence.clustering import ClusteringResult
from retrieval_service.evidence.geocoding import PlaceInfo

N_ALTERNATIVES = 5


class RetrievalBaseline(Predictor):
    """Top-1 retrieval candidate (``mode="retrieval"``)."""

    mode = "retrieval"

    def __init__(self, settings: Settings, *, tools: list[Any], services: Any = None) -> None:
        self.settings = settings
        self.services = services
        self.tools = {t.name: t for t in tools}

    def check(self) -> None:
        if self.services is not None:
            self.services.retriever.warm_up()

    def _pick(self, candidates: list[Candidate], trace: list[TraceEntry]) -> tuple[Candidate, str, list[Candidate], list[Any]]:
        """(answer, rationale, alternatives, clusters): GeoCLIP's top-1, the gallery point of highest
        probability (the database's best neighbour when there is no gallery candidate); scores of
        different sources are never compared."""
        gallery = [c for c in candidates if c.source == "gallery"]
        pool = gallery or candidates
        ranked = sorted(pool, key=lambda c: -(c.probability if c.probability is not None else c.score))
        top = ranked[0]
        p = f", probability {top.probability:.4f}" if top.probability is not None else ""
        return top, f"Top-1 retrieval candidate (similarity {top.score:.3f}{p}).", ranked[1:1 + N_ALTERNATIVES], []

    def run(self, input: Any, config: dict | None = None) -> RunResult:
        start = time.perf_counter()
        image = self.resolve(input)
        prepared = time.perf_counter()
        trace: list[TraceEntry] = []
        content, retrieval, entry = call_tool(self.tools, "retrieve", {"image": image.path, "k": self.settings.top_k})
        trace.append(entry)
        candidates = retrieval_candidates(retrieval.gallery + retrieval.database) if isinstance(retrieval, RetrievalResult) else []
        if not candidates:
            why = content.get("error") or "retrieval returned no candidates"
            raise NoAnswerError(f"no location found for {image.ref}: {why}",
                                "check the models and collections with `geoagent index info`", trace=trace)
        answer, rationale, alternatives, clusters = self._pick(candidates, trace)
        _, info, entry = call_tool(self.tools, "reverse_geocode", {"lat": answer.lat, "lon": answer.lon})
        trace.append(entry)
        place = Place.from_info(info if isinstance(info, PlaceInfo) else None)
        evidence = [Evidence(kind="place", detail=f"Reverse geocoding names {place.label()} ({place.distance_km} km "
                             "from the answer).", lat=answer.lat, lon=answer.lon)] if place.label() else []
        fields = prediction_fields(build_mixture(candidates, retrieval.gallery_rest), answer.lat, answer.lon,
                                   settings=self.settings, mode=self.mode)
        fields["alternatives"] = alternatives or fields["alternatives"]
        fields["clusters"] = clusters or fields["clusters"]
        pred = Prediction(image=image.ref, lat=answer.lat, lon=answer.lon, mode=self.mode, source=answer.source,
                          place=place, candidates=candidates, rationale=rationale, evidence=evidence, trace=trace, **fields)
        return RunResult(prediction=pred, total_ms=(time.perf_counter() - start) * 1000, prepare_ms=(prepared - start) * 1000)


class RerankBaseline(RetrievalBaseline):
    """Centre of the strongest geographic cluster of the candidates (``mode="rerank"``)."""

    mode = "rerank"

    def _pick(self, candidates: list[Candidate], trace: list[TraceEntry]) -> tuple[Candidate, str, list[Candidate], list[Any]]:
        _, result, entry = call_tool(self.tools, "cluster_candidates", cluster_args(candidates))
        trace.append(entry)
        clusters = result.clusters if isinstance(result, ClusteringResult) else []
        if not clusters:
            top = max(candidates, key=lambda c: c.score)
            return top, "No cluster formed; top-1 retrieval candidate.", [], []
        best = clusters[0]
        answer = Candidate(lat=best.lat, lon=best.lon, score=best.score_mass, source="cluster")
        alternatives = [Candidate(lat=c.lat, lon=c.lon, score=c.score_mass, source="cluster")
                        for c in clusters[1:1 + N_ALTERNATIVES]]
        return answer, f"Centre of the strongest geographic cluster ({best.support} candidates).", alternatives, clusters

