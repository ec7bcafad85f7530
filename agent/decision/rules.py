"""The no-LMM decision: the mode of the one probability model, explained in words.

Pure functions over typed observations, shared by the policy, the LMM fallbacks and the baselines.
The locations to choose between ("options") are ``Candidate``s whose payload carries the policy's
working values: ``label``, ``support`` (the probability within ``SUPPORT_RADIUS_KM`` under the
tools' mixture, ``agent.decision.sources``) and ``verify`` (cosine of the photo and the location,
reported but not counted again: for a gallery point it is the very score the gallery's softmax
already holds). The answer is the mixture's most probable place; ``score`` is its probability mass.
"""

from __future__ import annotations

from typing import NamedTuple

from agent.decision.sources import build_mixture, usable
from retrieval_service.core.geo import distance_km, distances_km
from retrieval_service.core.types import Candidate, Verification
from retrieval_service.evidence.clustering import Cluster
from retrieval_service.evidence.ocr import TextReading

SUPPORT_RADIUS_KM = 50.0
SAME_PLACE_KM = 1.0
RETRIEVAL_SOURCES = ("gallery", "database")


class Choice(NamedTuple):
    """The option the rule picked, its confidence and the runners-up."""

    chosen: Candidate
    confidence: float
    alternatives: list[Candidate]


def retrieval_candidates(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates that came from image retrieval (gallery and database), not from a
    geo-filtered ("zoom") search."""
    return [c for c in usable(candidates) if c.source in RETRIEVAL_SOURCES]


def ocr_candidates(reading: TextReading | None) -> list[Candidate]:
    """Places named in the photo's text become candidates (source "ocr")."""
    return [Candidate(lat=p.lat, lon=p.lon, score=0.0, source="ocr", payload={"name": p.name, "country_code": p.country_code})
            for p in (reading.places if reading else [])]


def support_share(lat: float, lon: float, candidates: list[Candidate], radius_km: float = SUPPORT_RADIUS_KM,
                  rest: list[Candidate] = ()) -> float:
    """The probability within ``radius_km`` of a point under the retrieval evidence's mixture (gallery
    softmax and database softmax, each on its own scale; zoom-search candidates left out); 0 without any."""
    mixture = build_mixture(retrieval_candidates(candidates), list(rest))
    return float(mixture.prob_within(lat, lon, [radius_km])[0]) if mixture is not None else 0.0


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
    mixture = build_mixture(retrieval_candidates(candidates))
    for opt in deduped:
        support = float(mixture.prob_within(opt.lat, opt.lon, [SUPPORT_RADIUS_KM])[0]) if mixture is not None else 0.0
        opt.payload = {**(opt.payload or {}), "support": round(support, 4)}
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


def choose(options: list[Candidate], candidates: list[Candidate], *, rest: list[Candidate] = (),
           n_alternatives: int = 5) -> Choice | None:
    """The most probable place under the tools' mixture (gallery, database, OCR places; ``rest``: the
    gallery's probability outside the top-k). The chosen option carries the label, support and
    verification of the option at that place when there is one. Confidence: P(error <= 25 km)."""
    mixture = build_mixture(list(candidates), list(rest))
    if mixture is None:
        if not options:
            return None
        best = options[0]
        return Choice(best.model_copy(update={"score": 0.0}), 0.0, options[1:1 + n_alternatives])
    modes = mixture.modes()
    top = max(modes, key=lambda md: md.density)
    near = [o for o in options if distance_km(o.lat, o.lon, top.lat, top.lon) <= SAME_PLACE_KM]
    apart = distances_km(top.lat, top.lon, [md.lat for md in modes], [md.lon for md in modes]) > SAME_PLACE_KM
    others = [md for md, far in zip(modes, apart.tolist()) if far][:n_alternatives]
    sources = {mixture.components[i].source for i in top.members}  # gallery, database or ocr
    source = sources.pop() if len(sources) == 1 else "cluster"
    payload = {**(near[0].payload or {})} if near else {"label": f"most probable place ({len(top.members)} candidates)"}
    payload["support"] = round(float(mixture.prob_within(top.lat, top.lon, [SUPPORT_RADIUS_KM])[0]), 4)
    chosen = Candidate(lat=top.lat, lon=top.lon, score=round(top.mass, 6), probability=round(min(1.0, top.mass), 6),
                       source=source,  # type: ignore[arg-type]
                       payload=payload)
    confidence = float(mixture.prob_within(top.lat, top.lon, [25])[0])
    alternatives = [Candidate(lat=md.lat, lon=md.lon, score=round(md.mass, 6), probability=round(min(1.0, md.mass), 6),
                              source="cluster", payload={"label": f"mode holding {md.mass:.1%} of the probability"})
                    for md in others]
    return Choice(chosen, round(confidence, 4), alternatives)
