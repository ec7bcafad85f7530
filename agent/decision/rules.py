"""The no-LMM decision: cluster support plus image-to-GPS verification, explained in words.

Pure functions over typed observations, shared by the policy, the LMM fallbacks and the baselines.
The locations to choose between ("options") are ``Candidate``s whose payload carries the policy's
working values: ``label``, ``support`` (share of the retrieval score mass within
``SUPPORT_RADIUS_KM``) and ``verify`` (cosine of the photo and the location); ``score`` is the
combined value the choice ranks by.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from retrieval_service.core.geo import distance_km
from retrieval_service.core.types import Candidate, Verification
from retrieval_service.evidence.clustering import Cluster
from retrieval_service.evidence.ocr import TextReading

SUPPORT_RADIUS_KM = 50.0
SUPPORT_WEIGHT = 0.6  # the rest goes to the verification softmax
VERIFY_TEMPERATURE = 0.05  # cosine units: a 0.05 lead is worth a factor e in the softmax
SAME_PLACE_KM = 1.0
RETRIEVAL_SOURCES = ("gallery", "database")


class Choice(NamedTuple):
    """The option the rule picked, its confidence and the runners-up."""

    chosen: Candidate
    confidence: float
    alternatives: list[Candidate]


def retrieval_candidates(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates that came from image retrieval (gallery and database)."""
    return [c for c in candidates if c.source in RETRIEVAL_SOURCES]


def ocr_candidates(reading: TextReading | None) -> list[Candidate]:
    """Places named in the photo's text become candidates (source "ocr")."""
    return [Candidate(lat=p.lat, lon=p.lon, score=0.0, source="ocr", payload={"name": p.name, "country_code": p.country_code})
            for p in (reading.places if reading else [])]


def support_share(lat: float, lon: float, candidates: list[Candidate], radius_km: float = SUPPORT_RADIUS_KM) -> float:
    """Share of the retrieval score mass within ``radius_km`` of a point (0 when there is none)."""
    pool = retrieval_candidates(candidates)
    total = sum(max(0.0, c.score) for c in pool)
    if total <= 0:
        return 0.0
    near = sum(max(0.0, c.score) for c in pool if distance_km(lat, lon, c.lat, c.lon) <= radius_km)
    return near / total


def build_options(candidates: list[Candidate], clusters: list[Cluster], extra: list[Candidate] = (),
                  top_singletons: int = 3) -> list[Candidate]:
    """The locations to choose between: cluster centres, the best single candidates, OCR places."""
    options: list[Candidate] = []
    for i, cl in enumerate(clusters):
        options.append(Candidate(lat=cl.lat, lon=cl.lon, source="cluster",
                                 payload={"label": f"cluster {i + 1} ({cl.support} candidates)"}))
    ranked = sorted(retrieval_candidates(candidates), key=lambda c: -c.score)
    for c in ranked[:top_singletons]:
        options.append(Candidate(lat=c.lat, lon=c.lon, source=c.source, payload={"label": f"{c.source} neighbour"}))
    for c in extra:
        options.append(Candidate(lat=c.lat, lon=c.lon, source=c.source, payload={"label": str(c.get("name") or c.source)}))
    deduped: list[Candidate] = []
    for opt in options:
        if all(distance_km(opt.lat, opt.lon, o.lat, o.lon) > SAME_PLACE_KM for o in deduped):
            deduped.append(opt)
    for opt in deduped:
        opt.payload = {**(opt.payload or {}), "support": round(support_share(opt.lat, opt.lon, candidates), 4)}
    return deduped


def attach_verification(options: list[Candidate], verification: Verification | None) -> list[Candidate]:
    """The options with their verification score in ``payload["verify"]`` (matched within 1 km:
    tool results are rounded); options that were not verified keep ``None``."""
    out = []
    for opt in options:
        score = verification.score_near(opt.lat, opt.lon, SAME_PLACE_KM) if verification else None
        out.append(opt.model_copy(update={"payload": {**(opt.payload or {}), "verify": score}}))
    return out


def unverified(options: list[Candidate]) -> list[Candidate]:
    return [o for o in options if o.get("verify") is None]


def choose(options: list[Candidate], candidates: list[Candidate], *, n_alternatives: int = 5) -> Choice | None:
    """Pick by ``SUPPORT_WEIGHT * support + (1 - SUPPORT_WEIGHT) * p_verify`` where ``p_verify`` is a
    softmax of the verification cosines at temperature ``VERIFY_TEMPERATURE`` (so small cosine
    differences move little, large ones decide)."""
    if not options:
        return None
    verified = [i for i, o in enumerate(options) if o.get("verify") is not None]
    probs: dict[int, float] = {}
    if verified:
        top = max(options[i].get("verify") for i in verified)
        weights = {i: math.exp((options[i].get("verify") - top) / VERIFY_TEMPERATURE) for i in verified}
        norm = sum(weights.values())
        probs = {i: w / norm for i, w in weights.items()}
    scored = []
    for i, o in enumerate(options):
        support = float(o.get("support", 0.0))
        combined = SUPPORT_WEIGHT * support + (1 - SUPPORT_WEIGHT) * probs.get(i, 0.0) if verified else support
        scored.append((i, o.model_copy(update={"score": round(combined, 4)})))
    scored.sort(key=lambda io: (-io[1].score, -(io[1].get("verify") if io[1].get("verify") is not None else -2.0)))
    best_i, best = scored[0]
    p_best = probs.get(best_i, 0.0) / max(probs.values()) if probs else 1.0
    support = float(best.get("support", 0.0))
    confidence = max(0.02, min(0.95, support * (0.5 + 0.5 * p_best))) if candidates else 0.0
    alternatives = [o for _, o in scored[1:] if distance_km(o.lat, o.lon, best.lat, best.lon) > SAME_PLACE_KM]
    return Choice(best, round(confidence, 4), alternatives[:n_alternatives])
