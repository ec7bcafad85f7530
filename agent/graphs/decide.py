"""The last node of every graph: turn the state into a Prediction. It calls no tool; the answer was
chosen and its place named by the steps before it."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.decision import rules
from agent.decision.mixture import Mixture
from agent.decision.rationale import describe
from agent.decision.sources import Mixtures
from agent.decision.summary import low_probability_warning, prediction_fields
from agent.lmm.answer import message_text
from agent.prediction import Evidence, Option, Prediction, Usage
from agent.state import Answer, Observations, RunState, observations
from retrieval_service.core.errors import NoAnswerError
from retrieval_service.core.geo import distance_km
from retrieval_service.core.types import Candidate, Place


def conversation(messages: list[Any]) -> list[dict[str, Any]]:
    """The LMM conversation as the Prediction reports it: role, text, tool calls (no image data)."""
    out = []
    for m in messages:
        row: dict[str, Any] = {"role": m.type, "text": message_text(m.content)}
        if getattr(m, "tool_calls", None):
            row["tool_calls"] = [
                {"name": c["name"], "args": {k: v for k, v in c["args"].items() if k != "image"}} for c in m.tool_calls
            ]
        if m.type == "tool":
            row["tool"] = m.name
        out.append(row)
    return out


def no_answer(image: str, warnings: list[str], trace: list[Any]) -> NoAnswerError:
    """The failure of a photo for which no step found any location (never a placeholder answer)."""
    failed = [f"{t.tool}: {t.error}" for t in trace if getattr(t, "error", None)]
    why = "; ".join(dict.fromkeys([*warnings, *failed])) or "retrieval returned no candidates and the EXIF holds no GPS"
    return NoAnswerError(
        f"no location found for {image}: {why}",
        "check the models and collections with `geoagent index info`, and run with -v to see each step",
        trace=trace,
    )


def probability_model(
    mixtures: Mixtures, answer: Answer | None, candidates: list[Candidate], obs: Observations
) -> tuple[Mixture | None, Mixture | None]:
    """(the run's mixture, the tools-only mixture) from the run's ``Mixtures``: EXIF GPS alone when
    it answered; otherwise the tools' evidence (gallery softmax and its rest, database softmax, OCR
    places) with the LMM's proposals and answer as point masses. Without LMM evidence the two are
    one evidence set, so one mixture."""
    if answer is not None and answer.source == "exif":
        return mixtures.of([], exif=Candidate(lat=answer.lat, lon=answer.lon, source="exif")), None
    rest = obs.retrieval.gallery_rest if obs.retrieval else []
    lmm = [c for c in candidates if c.source == "lmm"]
    if (
        answer is not None
        and answer.source == "lmm"
        and all(distance_km(answer.lat, answer.lon, c.lat, c.lon) > rules.SAME_PLACE_KM for c in lmm)
    ):
        lmm.append(Candidate(lat=answer.lat, lon=answer.lon, source="lmm"))
    return mixtures.of(candidates, rest, lmm=lmm), mixtures.of(candidates, rest)


def place_of(answer: Answer, obs: Observations) -> Place:
    """The answer's place: what the LMM named itself, gaps filled by reverse geocoding of that point."""
    named = (
        obs.place
        if obs.place and distance_km(answer.lat, answer.lon, obs.place.lat, obs.place.lon) <= rules.SAME_PLACE_KM
        else None
    )
    place = Place()
    if named is not None:
        place = named.named().model_copy(
            update={"distance_km": None if named.distance_km is None else round(named.distance_km, 1)}
        )
    if answer.place is None:
        return place
    given = answer.place
    return Place(
        city=given.city or place.city,
        region=given.region or place.region,
        country=given.country or place.country,
        country_code=given.country_code or place.country_code,
        distance_km=place.distance_km,
    )


def merged_alternatives(first: list[Option], then: list[Option], n: int = 5) -> list[Option]:
    """The answer's own alternatives first, then the probability model's, one per place, ``n`` at most."""
    out: list[Option] = []
    for option in [*first, *then]:
        if all(distance_km(option.lat, option.lon, o.lat, o.lon) > rules.SAME_PLACE_KM for o in out):
            out.append(option)
    return out[:n]


def decide(state: RunState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The Prediction: the answer, its place, and the probability model's fields (probabilities,
    confidence, areas, clusters, alternatives, surface) from the run's mixture, built once."""
    ctx = runtime.context
    obs = observations(state)
    answer = state.get("answer")
    candidates = state.get("candidates") or []
    photo = state.get("photo") or ctx.photo
    evidence: list[Evidence] = []
    warnings: list[str] = []
    if answer is None:
        raise no_answer(photo.ref, [*(state.get("warnings") or [])], list(state.get("trace") or []))
    lat, lon, source = answer.lat, answer.lon, answer.source
    place = place_of(answer, obs)
    rationale = answer.rationale or describe(answer, candidates=candidates, obs=obs, place_text=place.label() or None)
    if state.get("llm_failed") and answer.source not in ("lmm", "exif"):
        rationale = "The LMM failed, so the no-LMM policy decided. " + rationale
    if place.label():
        evidence.append(
            Evidence(
                kind="place",
                detail=f"Reverse geocoding names {place.label()} ({place.distance_km} km from the answer).",
                lat=lat,
                lon=lon,
            )
        )
    mixture, tools_only = probability_model(ctx.mixtures, answer, candidates, obs)
    fields = prediction_fields(mixture, lat, lon, settings=ctx.settings, mode=ctx.mode)
    if answer.source == "lmm":
        warning = low_probability_warning(tools_only, lat, lon)
        if warning:
            warnings.append(warning)
    fields["alternatives"] = merged_alternatives(answer.alternatives, fields["alternatives"])
    prediction = Prediction(
        image=photo.ref,
        lat=lat,
        lon=lon,
        source=source,
        mode=ctx.mode,
        place=place,
        candidates=candidates,
        rationale=rationale,
        **fields,
        evidence=[*(state.get("evidence") or []), *evidence],
        trace=list(state.get("trace") or []),
        messages=conversation(state.get("messages") or []),
        warnings=[*(state.get("warnings") or []), *warnings],
        usage=state.get("usage") or Usage(),
    )
    return {"evidence": evidence, "warnings": warnings, "prediction": prediction}
