"""The no-LMM decision: the point with the most probability within the confidence radius under the
one probability model.

Pure functions over typed observations, shared by the policy, the LMM fallbacks and the RAG recipe.
The locations to choose between are ``Option``s: a label, ``support`` (the probability within
``SUPPORT_RADIUS_KM`` under the retrieval evidence's mixture) and ``verification`` (cosine of the
photo and the location, reported but not counted again: for a gallery point it is the very score the
gallery's softmax already holds). The answer is the point with the most probability within the
confidence radius (``Mixture.best_point``); ``score`` is that probability. Mixtures come from the
run's ``Mixtures`` (one per evidence set).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from agent.decision.mixture import Mixture, Mode
from agent.decision.sources import Mixtures, usable
from agent.prediction import Option
from retrieval_service.core.geo import distance_km, distances_km
from retrieval_service.core.types import Candidate, Verification
from retrieval_service.evidence.clustering import Cluster
from retrieval_service.evidence.ocr import TextReading

SUPPORT_RADIUS_KM = 50.0
SAME_PLACE_KM = 1.0
CONFIDENCE_KM = 25
RETRIEVAL_SOURCES = ("gallery", "database")


class Choice(NamedTuple):
    """The option the rule picked, its confidence, the runners-up, and each source's share of the
    probability at the chosen point."""

    chosen: Option
    confidence: float
    alternatives: list[Option]
    shares: dict[str, float]


def retrieval_candidates(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates that came from image retrieval (gallery and database), not from a
    geo-filtered ("zoom") search."""
    return [c for c in usable(candidates) if c.source in RETRIEVAL_SOURCES]


def rerank_pool(candidates: Sequence[Candidate]) -> list[Candidate]:
    """What the geographic re-rank clusters (DualGeo re-ranks the retrieved photos): the image
    database's neighbours when retrieval found any, else the GPS gallery's candidates."""
    pool = retrieval_candidates(candidates)
    return [c for c in pool if c.source == "database"] or [c for c in pool if c.source == "gallery"]


def pool_name(pool: Sequence[Candidate]) -> str:
    """How the rationale and prompts name a re-rank pool."""
    return "similar database photos" if pool and pool[0].source == "database" else "GPS gallery candidates"


def ocr_candidates(reading: TextReading | None) -> list[Candidate]:
    """The places the photo's text names reliably (``PlaceMatch.reliable``: its region or country
    named beside it, or a place phrase of several words) become candidates (source "ocr"); a lone
    word that is also a town's name (a surname, a brand) is not evidence."""
    return [
        Candidate(
            lat=p.lat,
            lon=p.lon,
            score=0.0,
            source="ocr",
            payload={"name": p.name, "region": p.region, "country_code": p.country_code, "why": p.why},
        )
        for p in (reading.reliable_places if reading else [])
    ]


def retrieval_mixture(mixtures: Mixtures, candidates: Sequence[Candidate], rest: Sequence[Candidate] = ()) -> Mixture | None:
    """The retrieval evidence's mixture (gallery softmax and its rest, database softmax)."""
    return mixtures.of(retrieval_candidates(candidates), rest)


def tools_mixture(mixtures: Mixtures, candidates: Sequence[Candidate], rest: Sequence[Candidate] = ()) -> Mixture | None:
    """The tools' evidence's mixture: retrieval and the places the photo's text names."""
    return mixtures.of(candidates, rest)


def support_within(mixture: Mixture | None, lat: float, lon: float, radius_km: float = SUPPORT_RADIUS_KM) -> float:
    """The probability within ``radius_km`` of a point under ``mixture`` (0 without one)."""
    return float(mixture.prob_within(lat, lon, [radius_km])[0]) if mixture is not None else 0.0


def build_options(
    candidates: Sequence[Candidate],
    clusters: Sequence[Cluster],
    extra: Sequence[Candidate] = (),
    *,
    support: Mixture | None,
    top_singletons: int = 3,
) -> list[Option]:
    """The locations to choose between: cluster centres, the best single candidates, OCR places,
    each with its support under the retrieval evidence's mixture ``support``."""
    options: list[Option] = []
    for i, cl in enumerate(clusters):
        options.append(Option(lat=cl.lat, lon=cl.lon, source="cluster", label=f"cluster {i + 1} ({cl.support} candidates)"))
    ranked = sorted(retrieval_candidates(candidates), key=lambda c: -c.score)
    for c in ranked[:top_singletons]:
        options.append(Option(lat=c.lat, lon=c.lon, source=c.source, label=f"{c.source} neighbour"))
    for c in extra:
        options.append(Option(lat=c.lat, lon=c.lon, source=c.source, label=str(c.get("name") or c.source)))
    deduped: list[Option] = []
    for opt in options:
        if all(distance_km(opt.lat, opt.lon, o.lat, o.lon) > SAME_PLACE_KM for o in deduped):
            deduped.append(opt)
    return [o.model_copy(update={"support": round(support_within(support, o.lat, o.lon), 4)}) for o in deduped]


def attach_verification(options: Sequence[Option], verification: Verification | None) -> list[Option]:
    """The options with their verification score (matched within 1 km: tool results are rounded);
    options that were not verified keep ``None``."""
    return [
        o.model_copy(update={"verification": verification.score_near(o.lat, o.lon, SAME_PLACE_KM) if verification else None})
        for o in options
    ]


def unverified(options: Sequence[Option]) -> list[Option]:
    return [o for o in options if o.verification is None]


def mode_option(mixture: Mixture, mode: Mode, label: str | None = None, *, own_source: bool = False) -> Option:
    """A mode of the mixture as an option: source "cluster", or with ``own_source`` the source that
    made it when only one did."""
    sources = {mixture.components[i].source for i in mode.members} if own_source else set()
    source = sources.pop() if len(sources) == 1 else "cluster"
    return Option(
        lat=mode.lat,
        lon=mode.lon,
        score=round(mode.mass, 6),
        probability=round(min(1.0, mode.mass), 6),
        source=source,  # type: ignore[arg-type]
        label=label or f"mode holding {mode.mass:.1%} of the probability",
    )


SINGLE_SOURCE_SHARE = 0.9
"""The answer is reported under one source when that source put this share of its probability there."""


def choose(
    options: Sequence[Option], mixture: Mixture | None, *, radius_km: float = CONFIDENCE_KM, n_alternatives: int = 5
) -> Choice | None:
    """The point with the most probability within ``radius_km`` (the confidence threshold) under
    the tools' ``mixture`` (gallery, database, places read): a narrow component wins only when it
    carries the mass. The chosen option carries the label and verification of the option at that
    place when there is one, its support under ``mixture`` and which sources put the probability
    there (``Choice.shares``). Confidence: that probability."""
    if mixture is None:
        if not options:
            return None
        best = options[0]
        return Choice(best.model_copy(update={"score": 0.0}), 0.0, list(options[1 : 1 + n_alternatives]), {})
    lat, lon, mass = mixture.best_point(radius_km)
    shares = mixture.source_shares(lat, lon, radius_km)
    modes = mixture.modes()
    apart = distances_km(lat, lon, [md.lat for md in modes], [md.lon for md in modes]) > SAME_PLACE_KM
    others = [md for md, far in zip(modes, apart.tolist(), strict=True) if far][:n_alternatives]
    top = next(iter(shares), "cluster")
    source = top if shares.get(top, 0.0) >= SINGLE_SOURCE_SHARE else "cluster"
    chosen = Option(
        lat=lat,
        lon=lon,
        score=round(mass, 6),
        probability=round(min(1.0, mass), 6),
        source=source,  # type: ignore[arg-type]
        label=f"the point with the most probability within {radius_km:g} km",
    )
    near = [o for o in options if distance_km(o.lat, o.lon, lat, lon) <= SAME_PLACE_KM]
    if near:
        chosen = chosen.model_copy(update={"label": near[0].label, "verification": near[0].verification})
    chosen = chosen.model_copy(update={"support": round(support_within(mixture, lat, lon), 4)})
    return Choice(chosen, round(mass, 4), [mode_option(mixture, md) for md in others], shares)
