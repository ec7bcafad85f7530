"""The no-LMM decision: cluster support plus image-to-GPS verification, explained in words.

Pure functions over tool results, shared by the policy mode, the baselines ("retrieval",
"rerank") and the LMM fallbacks (best verified candidate).
"""

from __future__ import annotations

import math
from typing import Any

from geopy.distance import great_circle
from pydantic import BaseModel, Field

SUPPORT_RADIUS_KM = 50.0
SUPPORT_WEIGHT = 0.6  # the rest goes to the verification softmax
VERIFY_TEMPERATURE = 0.05  # cosine units: a 0.05 lead is worth a factor e in the softmax


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km (geopy's, the same one reverse geocoding reports)."""
    return float(great_circle((lat1, lon1), (lat2, lon2)).km)


class Option(BaseModel):
    """A location the decision can pick."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    source: str
    support: float = 0.0  # share of the retrieval score mass within SUPPORT_RADIUS_KM
    verify: float | None = None  # cosine(image, location) from verify_locations
    combined: float = 0.0
    label: str = ""


class Decision(BaseModel):
    lat: float
    lon: float
    confidence: float = Field(ge=0, le=1)
    source: str
    alternatives: list[Option] = Field(default_factory=list)
    chosen: Option | None = None


def candidates_from_retrieval(result: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Candidate dicts (gallery first, then database) and the dissimilar ones from a retrieve result."""
    out: list[dict[str, Any]] = []
    for key, source in (("gallery", "gallery"), ("database", "database")):
        for row in result.get(key) or []:
            payload = {k: v for k, v in row.items() if k not in ("lat", "lon", "score")}
            out.append({"lat": row["lat"], "lon": row["lon"], "score": float(row.get("score", 0.0)),
                        "source": source, "payload": payload or None})
    dissimilar = [{"lat": r["lat"], "lon": r["lon"], "score": float(r.get("score", 0.0)), "source": "gallery"}
                  for r in result.get("dissimilar") or []]
    return out, dissimilar


def ocr_candidates(text_result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Places named in the photo's text become candidates (source "ocr")."""
    out = []
    for place in (text_result or {}).get("places") or []:
        if place.get("lat") is None or place.get("lon") is None:
            continue
        out.append({"lat": float(place["lat"]), "lon": float(place["lon"]), "score": 0.0, "source": "ocr",
                    "payload": {"name": place.get("name"), "country_code": place.get("country_code")}})
    return out


def _mass(candidates: list[dict[str, Any]]) -> float:
    return sum(max(0.0, c["score"]) for c in candidates if c["source"] in ("gallery", "database"))


def support_share(lat: float, lon: float, candidates: list[dict[str, Any]], radius_km: float = SUPPORT_RADIUS_KM) -> float:
    """Share of the retrieval score mass within ``radius_km`` of a point (0 when there is none)."""
    total = _mass(candidates)
    if total <= 0:
        return 0.0
    near = sum(max(0.0, c["score"]) for c in candidates
               if c["source"] in ("gallery", "database") and haversine_km(lat, lon, c["lat"], c["lon"]) <= radius_km)
    return near / total


def build_options(candidates: list[dict[str, Any]], clusters: list[dict[str, Any]],
                  extra: list[dict[str, Any]] = (), top_singletons: int = 3) -> list[Option]:
    """The locations to choose between: cluster centres, the best single candidates, OCR places."""
    options: list[Option] = []
    for i, cl in enumerate(clusters):
        options.append(Option(lat=cl["lat"], lon=cl["lon"], source="cluster",
                              label=f"cluster {i + 1} ({cl.get('support', '?')} candidates)"))
    ranked = sorted((c for c in candidates if c["source"] in ("gallery", "database")), key=lambda c: -c["score"])
    for c in ranked[:top_singletons]:
        options.append(Option(lat=c["lat"], lon=c["lon"], source=c["source"], label=f"{c['source']} neighbour"))
    for c in extra:
        name = (c.get("payload") or {}).get("name") or c["source"]
        options.append(Option(lat=c["lat"], lon=c["lon"], source=c["source"], label=str(name)))
    deduped: list[Option] = []
    for opt in options:
        if all(haversine_km(opt.lat, opt.lon, o.lat, o.lon) > 1.0 for o in deduped):
            deduped.append(opt)
    for opt in deduped:
        opt.support = support_share(opt.lat, opt.lon, candidates)
    return deduped


def attach_verification(options: list[Option], verify_result: dict[str, Any] | None) -> None:
    """Copy verify_locations scores onto the options (matched to within 1 km: results are rounded)."""
    ranked = (verify_result or {}).get("ranked") or []
    for opt in options:
        best = min(ranked, key=lambda r: haversine_km(opt.lat, opt.lon, r["lat"], r["lon"]), default=None)
        if best is not None and haversine_km(opt.lat, opt.lon, best["lat"], best["lon"]) <= 1.0:
            opt.verify = float(best["score"])


def decide(options: list[Option], candidates: list[dict[str, Any]], *, n_alternatives: int = 5) -> Decision | None:
    """Pick by ``SUPPORT_WEIGHT * support + (1 - SUPPORT_WEIGHT) * p_verify`` where ``p_verify`` is a
    softmax of the verification cosines at temperature ``VERIFY_TEMPERATURE`` (so small cosine
    differences move little, large ones decide)."""
    if not options:
        return None
    verified = [o for o in options if o.verify is not None]
    probs: dict[int, float] = {}
    if verified:
        top = max(o.verify for o in verified)  # type: ignore[type-var]
        weights = {id(o): math.exp((o.verify - top) / VERIFY_TEMPERATURE) for o in verified}  # type: ignore[operator]
        norm = sum(weights.values())
        probs = {k: v / norm for k, v in weights.items()}
    for o in options:
        if verified:
            o.combined = SUPPORT_WEIGHT * o.support + (1 - SUPPORT_WEIGHT) * probs.get(id(o), 0.0)
        else:
            o.combined = o.support
    ordered = sorted(options, key=lambda o: (-o.combined, -(o.verify if o.verify is not None else -2.0)))
    best = ordered[0]
    p_best = probs.get(id(best), 0.0) / max(probs.values()) if probs else 1.0
    confidence = max(0.02, min(0.95, best.support * (0.5 + 0.5 * p_best))) if candidates else 0.0
    alternatives = [o for o in ordered[1:] if haversine_km(o.lat, o.lon, best.lat, best.lon) > 1.0][:n_alternatives]
    return Decision(lat=best.lat, lon=best.lon, confidence=round(confidence, 4), source=best.source,
                    alternatives=alternatives, chosen=best)


def describe(decision: Decision, *, candidates: list[dict[str, Any]], clusters: list[dict[str, Any]],
             observations: dict[str, Any], place_text: str | None) -> str:
    """The rationale in plain words, built only from what the tools reported."""
    parts: list[str] = []
    n = sum(1 for c in candidates if c["source"] in ("gallery", "database"))
    chosen = decision.chosen
    where = f" near {place_text}" if place_text else ""
    if n:
        parts.append(f"Image retrieval returned {n} candidate locations.")
    if clusters:
        top = clusters[0]
        parts.append(f"The strongest cluster groups {top.get('support')} of them within about "
                     f"{top.get('radius_km', '?')} km.")
    if chosen is not None:
        parts.append(f"The answer{where} ({decision.lat:.4f}, {decision.lon:.4f}) is a {chosen.label or chosen.source} "
                     f"holding {chosen.support:.0%} of the retrieval score mass within {SUPPORT_RADIUS_KM:.0f} km.")
        if chosen.verify is not None:
            others = [o.verify for o in decision.alternatives if o.verify is not None]
            versus = f" against at most {max(others):.3f} for the alternatives" if others else ""
            parts.append(f"Image-to-GPS verification scored it {chosen.verify:.3f}{versus}.")
    text = observations.get("text") or {}
    lines = [ln.get("text") for ln in text.get("lines") or [] if ln.get("text")]
    if lines:
        places = list(dict.fromkeys(p.get("name") for p in text.get("places") or [] if p.get("name")))
        parts.append(f"Text read in the photo: {', '.join(repr(s) for s in lines[:3])}"
                     + (f" (place names: {', '.join(places[:3])})." if places else " (no known place names)."))
    scene = observations.get("scene") or {}
    if scene.get("shares"):
        top = sorted(scene["shares"].items(), key=lambda kv: -kv[1])[:3]
        parts.append("Scene: " + ", ".join(f"{k} {v:.0%}" for k, v in top) + ".")
    if scene.get("hints"):
        parts.append("Scene hints: " + "; ".join(str(h) for h in scene["hints"][:3]) + ".")
    if decision.confidence < 0.2:
        parts.append("The candidates disagree, so the confidence is low.")
    return " ".join(parts)
