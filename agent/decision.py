"""The decide node: turn the state into a Prediction, whatever path the run took."""

from __future__ import annotations

import logging
from typing import Any, Callable

from agent import policy
from agent.final_answer import message_text
from agent.prediction import Evidence, Place, Prediction, TraceEntry
from retrieval_service.schemas import Candidate

log = logging.getLogger(__name__)


def _place(geo: dict[str, Any] | None) -> tuple[Place, str | None]:
    if not geo or "error" in geo:
        return Place(), None
    place = Place(city=geo.get("place"), region=geo.get("admin1"), country=geo.get("country"),
                  country_code=geo.get("country_code"), distance_km=geo.get("distance_km"))
    text = ", ".join(p for p in (place.city, place.region, place.country) if p) or None
    return place, text


def _messages(state: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for m in state.get("messages") or []:
        row: dict[str, Any] = {"role": m.type, "text": message_text(m.content)}
        if getattr(m, "tool_calls", None):
            row["tool_calls"] = [{"name": c["name"], "args": {k: v for k, v in c["args"].items() if k != "image"}}
                                 for c in m.tool_calls]
        if m.type == "tool":
            row["tool"] = m.name
        out.append(row)
    return out


def _candidate(c: dict[str, Any]) -> Candidate:
    src = c.get("source", "gallery")
    return Candidate(lat=c["lat"], lon=c["lon"], score=float(c.get("score", 0.0)),
                     source=src if src in ("gallery", "database", "lmm", "exif", "ocr", "cluster") else "cluster",
                     payload=c.get("payload"))


def _option_candidate(o: policy.Option) -> Candidate:
    return _candidate({"lat": o.lat, "lon": o.lon, "score": round(o.combined, 4), "source": o.source,
                       "payload": {"support": round(o.support, 4), "verify": o.verify, "label": o.label}})


def build_prediction(state: dict[str, Any], runtime: Any, tool: Callable[..., tuple[dict, dict]]) -> dict[str, Any]:
    ctx = runtime.context
    mode = ctx.mode
    candidates = [c for c in state.get("candidates") or []]
    clusters = state.get("clusters") or []
    obs = dict(state.get("observations") or {})
    trace: list[dict] = []
    evidence: list[dict] = []
    warnings: list[str] = []
    final = state.get("final") or None
    lmm_failed = bool(state.get("llm_failed"))
    rationale = ""
    decision: policy.Decision | None = None
    alternatives: list[Candidate] = []

    if final and final.get("source") == "exif":
        lat, lon, confidence, source = final["lat"], final["lon"], final["confidence"], "exif"
        rationale = f"The photo's EXIF metadata holds GPS coordinates ({lat:.5f}, {lon:.5f}); they are used as the answer."
    elif final and final.get("source") == "lmm" and "rationale" in final and mode == "agent":
        lat, lon, confidence, source = final["lat"], final["lon"], final["confidence"], "lmm"
        rationale = final["rationale"]
        alternatives = [_candidate({**a, "source": "lmm"}) for a in final.get("alternatives") or []]
        evidence.append({"kind": "lmm", "detail": rationale, "lat": lat, "lon": lon, "weight": confidence})
    elif final and mode == "rag":
        lat, lon, confidence, source = final["lat"], final["lon"], final["confidence"], final["source"]
        rationale = final.get("rationale", "")
        alternatives = [_candidate(a) for a in final.get("alternatives") or []]
    elif mode == "retrieval" and candidates:
        top = max((c for c in candidates if c["source"] in ("gallery", "database")), key=lambda c: c["score"], default=candidates[0])
        lat, lon, source = top["lat"], top["lon"], top["source"]
        confidence = round(max(0.0, min(1.0, policy.support_share(lat, lon, candidates))), 4)
        rationale = f"Top-1 retrieval candidate (similarity {top['score']:.3f})."
        alternatives = [_candidate(c) for c in sorted(candidates, key=lambda c: -c["score"])[1:6]]
    elif mode == "rerank" and candidates:
        anchor = clusters[0] if clusters else max(candidates, key=lambda c: c["score"])
        lat, lon, source = anchor["lat"], anchor["lon"], "cluster" if clusters else anchor["source"]
        confidence = round(max(0.0, min(1.0, policy.support_share(lat, lon, candidates))), 4)
        rationale = (f"Centre of the strongest geographic cluster ({anchor.get('support')} candidates)."
                     if clusters else "No cluster formed; top-1 retrieval candidate.")
        alternatives = [_candidate({**c, "score": c.get("score_mass", 0.0), "source": "cluster"}) for c in clusters[1:6]]
    elif candidates:
        # the policy, and the fallback for a failed or malformed LMM answer: best verified option
        if (mode == "agent" or mode == "rag") and not lmm_failed:
            warnings.append("no usable LMM answer; decided by cluster support and verification")
        ocr = [c for c in candidates if c["source"] == "ocr"]
        options = policy.build_options(candidates, clusters, ocr)
        policy.attach_verification(options, obs.get("verify"))
        if any(o.verify is None for o in options):
            res, entry = tool(runtime, "verify_locations", {"image": ctx.image_input,
                                                            "candidates": [{"lat": o.lat, "lon": o.lon} for o in options]})
            trace.append(entry)
            if "error" not in res:
                obs["verify"] = res
        policy.attach_verification(options, obs.get("verify"))
        d = policy.decide(options, candidates)
        assert d is not None
        lat, lon, confidence = d.lat, d.lon, d.confidence
        source = d.source if mode == "policy" or lmm_failed else "fallback"
        alternatives = [_option_candidate(o) for o in d.alternatives]
        if d.chosen is not None:
            evidence.append({"kind": "decision", "detail": f"{d.chosen.label or d.chosen.source}: support {d.chosen.support:.0%}, "
                             f"verification {d.chosen.verify}", "lat": lat, "lon": lon, "weight": d.chosen.combined})
        decision = d
    else:
        lat, lon, confidence, source = 0.0, 0.0, 0.0, "fallback"
        warnings.append("no candidate locations at all (retrieval returned nothing); the answer 0, 0 is a placeholder "
                        "with confidence 0 - check the retrieval service")
        rationale = "No tool produced a candidate location, so there is no evidence for any place."

    # name the place of the answer (reuse the geocode when it is of the same point)
    geo = obs.get("geocode")
    at = (geo or {}).get("_at")
    if (candidates or final) and not (at and policy.haversine_km(lat, lon, at[0], at[1]) <= 1.0):
        geo, entry = tool(runtime, "reverse_geocode", {"lat": lat, "lon": lon})
        trace.append(entry)
    place, place_text = _place(geo)
    if final and final.get("source") == "lmm" and final.get("place"):
        given = final["place"]
        place = Place(city=given.get("city") or place.city, region=given.get("region") or place.region,
                      country=given.get("country") or place.country,
                      country_code=(given.get("country_code") or place.country_code or None), distance_km=place.distance_km)
    if not rationale and decision is not None:
        rationale = policy.describe(decision, candidates=candidates, clusters=clusters, observations=obs,
                                    place_text=place_text)
        if lmm_failed:
            rationale = "The LMM failed, so the no-LMM policy decided. " + rationale
    if place_text:
        evidence.append({"kind": "place", "detail": f"Reverse geocoding names {place_text} "
                         f"({place.distance_km} km from the answer).", "lat": lat, "lon": lon})

    all_trace = [*(state.get("trace") or []), *trace]
    pred = Prediction(
        image=state.get("image", ""), lat=lat, lon=lon, confidence=max(0.0, min(1.0, float(confidence))),
        source=source, mode=mode, place=place, alternatives=alternatives,
        candidates=[_candidate(c) for c in candidates], clusters=clusters, rationale=rationale,
        evidence=[Evidence(**e) for e in [*(state.get("evidence") or []), *evidence]],
        trace=[TraceEntry(**{k: v for k, v in t.items() if k in TraceEntry.model_fields}) for t in all_trace],
        messages=_messages(state), warnings=[*(state.get("warnings") or []), *warnings],
    )
    return {"trace": trace, "evidence": evidence, "warnings": warnings, "observations": obs,
            "prediction": pred.model_dump(mode="json")}
