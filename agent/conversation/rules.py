"""Answers to follow-up questions without an LMM, from the photo's analysis: its Prediction (with
the probability model it kept) and, on a thread, the tools' typed observations. Used by threads and
the chat when no LMM is configured, and as the fallback reply when the LMM fails during a follow-up.

* "could it be X?" (a country, region or city, resolved offline): P(X) integrated from the
  Prediction's mixture, and where in X the mass lies (``agent.conversation.places``);
* "what text did you read?", "what did you see?", "why?", "how sure?", "alternatives?", "where?",
  "what camera / when?": read off the typed evidence;
* anything else: a short summary and what can be asked.
"""

from __future__ import annotations

import re
from typing import Any

from agent.conversation.places import asked_place, probability_in, resolve
from agent.prediction import Prediction

NO_PHOTO = "No photo yet: attach one with /image PATH and I will tell you where it was taken."
HINT = (
    "(No LMM is configured: I answer from the analysis. Ask e.g. 'could it be Norway?', 'how sure are you?', "
    "'what text did you read?', 'what did you see?', 'why?', 'alternatives?'.)"
)
FEW_SAMPLES = 20
"""Below this many samples inside a place, its parts are named without shares (too few to split)."""
_FIRM = re.compile(r"^\s*(?:so\s+)?(?:could|can|might|may|would|what\s+about|how\s+(?:likely|probable)|maybe|perhaps|"
                   r"(?:what\s+is\s+)?(?:the\s+)?(?:probability|chance|odds))\b", re.IGNORECASE)  # fmt: skip


def _place(pred: Prediction) -> str:
    return pred.place.label("an unnamed place")


def _pct(p: float) -> str:
    return f"{100 * p:.1f}%" if p < 0.995 else f"{100 * p:.2f}%"


def _area(km2: float) -> str:
    if km2 <= 0:
        return "under 0.1 km²"
    return f"{km2:,.0f} km²" if km2 >= 10 else f"{km2:.2g} km²"


def summary(pred: Prediction | dict[str, Any]) -> str:
    """The answer in one paragraph: where, how sure, how large an area to search, why."""
    pred = Prediction.model_validate(pred)
    area = pred.search_area_km2.get("50")
    sure = (
        f"P(within 25 km) {pred.probabilities['25']:.2f}" if "25" in pred.probabilities else f"confidence {pred.confidence:.2f}"
    )
    return (
        f"{pred.image}: {pred.lat:.5f}, {pred.lon:.5f} near {_place(pred)} ({sure}, source {pred.source}"
        + (f"; half the probability lies within {_area(area)}" if area is not None else "")
        + f"). {pred.rationale}"
    ).strip()


def place_answer(pred: Prediction, name: str) -> str | None:
    """P(name) and where in it the mass lies; None when ``name`` is no known place."""
    place = resolve(name)
    if place is None:
        return None
    if pred.model is None:
        return (
            f"This analysis was saved before geoagent kept its probability model, so I cannot integrate P({place.label()}); "
            "analyse the photo again to ask about places."
        )
    result = probability_in(pred.model, place)
    what = f"within {place.radius_km:.0f} km of" if place.kind == "city" else "in"
    share = _pct(result.probability) if result.probability > 0 else f"0 (none of {result.samples} samples)"
    text = f"P(taken {what} {place.label()}) ≈ {share} under the analysis's probability model"
    if result.probability >= 0.995:
        text += " (near certain)"
    elif result.probability < 0.01:
        text += " (very unlikely)"
    text += "."
    inside = round(result.probability * result.samples)
    if result.parts and inside >= FEW_SAMPLES:
        text += (
            " Within it the mass lies in " + ", ".join(f"{n or 'an unnamed place'} ({_pct(s)})" for n, s in result.parts) + "."
        )
    elif inside:
        text += f" Only {inside} of the {result.samples} samples fall there, near " + ", ".join(n for n, _ in result.parts) + "."
    if result.probability < 0.5:
        text += f" The analysis puts the photo near {_place(pred)} ({pred.lat:.4f}, {pred.lon:.4f})."
    return text + f" ({result.samples} Monte Carlo samples; {place.kind} resolved offline.)"


def _text(pred: Prediction, obs: Any) -> str:
    reading = getattr(obs, "text", None)
    if reading is not None:
        if not reading.lines:
            return "I read no text in the photo."
        lines = "; ".join(f"'{line.text}'" for line in reading.lines[:10])
        places = ", ".join(f"{p.name} ({p.country_code})" for p in reading.places[:5])
        scripts = ", ".join(reading.scripts)
        return (
            f"Text in the photo: {lines}."
            + (f" Scripts: {scripts}." if scripts else "")
            + (f" Places it names: {places}." if places else "")
        )
    read = [t for t in pred.trace if t.tool == "read_text"]
    if read:
        return f"Text reading: {read[-1].error or read[-1].summary}."
    return "The analysis did not read text in this photo (no OCR step ran)."


def _scene(pred: Prediction, obs: Any) -> str:
    scene = getattr(obs, "scene", None)
    if scene is not None:
        return f"Scene: {scene.describe() or 'nothing the segmenter recognised'}."
    seen = [t for t in pred.trace if t.tool == "segment_scene"]
    return f"Scene: {seen[-1].error or seen[-1].summary}." if seen else "The analysis ran no scene segmentation."


def _exif(obs: Any) -> str:
    exif = getattr(obs, "exif", None)
    if exif is None:
        return "The analysis read no EXIF."
    parts = []
    if exif.gps is not None:
        alt = f", altitude {exif.gps.altitude_m:.0f} m" if exif.gps.altitude_m is not None else ""
        parts.append(f"GPS {exif.gps.lat:.5f}, {exif.gps.lon:.5f}{alt}")
    if exif.datetime:
        parts.append(f"taken {exif.datetime}")
    if exif.camera:
        parts.append(f"camera {exif.camera}")
    return ("EXIF: " + "; ".join(parts) + ".") if parts else "The photo's EXIF holds no GPS, time or camera."


def _why(pred: Prediction) -> str:
    lines = [pred.rationale or "The analysis recorded no rationale."]
    lines += [f"- {e.kind}: {e.detail}" for e in pred.evidence if e.detail and e.detail not in (pred.rationale or "")]
    return "\n".join(lines)


def _sure(pred: Prediction) -> str:
    probs = ", ".join(f"≤{k} km {_pct(v)}" for k, v in pred.probabilities.items())
    areas = ", ".join(f"{k}%: {_area(v)}" for k, v in pred.search_area_km2.items())
    calibrated = "calibrated on labelled runs" if pred.calibrated else "the model's own beliefs, not calibrated"
    return (
        f"P(error within t): {probs or 'not computed'} ({calibrated}). Search areas holding that share of the probability: "
        f"{areas or 'not computed'}. Confidence {pred.confidence:.2f} = P(within 25 km), from {pred.source} evidence."
    )


def _alternatives(pred: Prediction) -> str:
    if not pred.alternatives:
        return "The analysis kept no alternatives."
    from agent.decision.summary import named

    rows = []
    for a in named(pred.alternatives[:5]):
        where = a.place.label() if a.place is not None else ""
        mass = f", {_pct(a.probability)} of the probability" if a.probability is not None else ""
        rows.append(f"{a.lat:.4f}, {a.lon:.4f}" + (f" ({where})" if where else "") + mass)
    return "Alternatives: " + "; ".join(rows) + "."


_TOPICS: list[tuple[tuple[str, ...], Any]] = [
    (("text", "read", "written", "sign", "word", "ocr", "say"), lambda p, o: _text(p, o)),
    (("see", "seen", "scene", "look", "show", "visible"), lambda p, o: _scene(p, o)),
    (("exif", "camera", "when", "date", "time", "altitude", "metadata"), lambda p, o: _exif(o)),
    (("why", "reason", "evidence", "explain", "how do you know"), lambda p, o: _why(p)),
    (("sure", "confiden", "certain", "likely", "probab", "accura"), lambda p, o: _sure(p)),
    (("alternative", "else", "other", "instead"), lambda p, o: _alternatives(p)),
    (("country", "city", "where", "place", "region", "town"), lambda p, o: f"It was most likely taken near {_place(p)}."),
    (("coordinat", "lat", "gps", "position"), lambda p, o: f"Coordinates: {p.lat:.5f}, {p.lon:.5f}."),
    (("tool", "step", "trace", "check"), lambda p, o: "Steps: " + "; ".join(f"{t.tool} -> {t.summary}" for t in p.trace)),
]


def rule_answer(question: str, analyses: list[Prediction | dict[str, Any]], obs: Any = None) -> str:
    """Answer a follow-up from the last analysis (and the tools' ``obs``, when the thread has them)."""
    if not analyses:
        return NO_PHOTO
    pred = Prediction.model_validate(analyses[-1])
    name = asked_place(question)
    if name is not None:
        answer = place_answer(pred, name)
        if answer is not None:
            return answer
        if _FIRM.match(question):
            return (
                f"I do not know a country, region or town called '{name}' (offline: ISO country names, GeoNames "
                f"regions and towns). {summary(pred)}"
            )
    q = question.lower()
    parts = [answer(pred, obs) for words, answer in _TOPICS if any(w in q for w in words)]
    parts = list(dict.fromkeys(parts))  # "where is the text?" asks twice for nothing new
    return "\n".join(parts) if parts else f"{summary(pred)}\n{HINT}"
