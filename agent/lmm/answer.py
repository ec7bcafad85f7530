"""The LMM's structured final answer: the schema, and extraction from a chat reply."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, ValidationError

from agent.prediction import Place
from retrieval_service.core.types import Candidate, CandidateSource, Location


class Proposal(Candidate):
    """A location the LMM proposes (source "lmm")."""

    source: CandidateSource = "lmm"


class FinalAnswer(Location):
    """What the model must commit to (the final-answer prompt shows this shape)."""

    confidence: float = Field(ge=0, le=1)
    place: Place = Field(default_factory=Place)
    alternatives: list[Proposal] = Field(default_factory=list, max_length=10)
    rationale: str = Field(min_length=1)


class MalformedAnswer(ValueError):
    """The reply holds no valid final answer; the message says what is wrong (sent back to the LMM)."""


def message_text(content: Any) -> str:
    """The text of a message content (a string or a list of content blocks)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "\n".join(parts)


def _json_objects(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    found = []
    i = text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            found.append(obj)
        i = text.find("{", end)
    return found


def parse_final_answer(content: Any) -> FinalAnswer:
    """The last JSON object in the reply that validates as a FinalAnswer; MalformedAnswer otherwise."""
    text = message_text(content)
    objects = _json_objects(text)
    if not objects:
        raise MalformedAnswer("the reply contains no JSON object")
    last_error: ValidationError | None = None
    for obj in reversed(objects):
        try:
            return FinalAnswer.model_validate(obj)
        except ValidationError as exc:
            last_error = exc
    assert last_error is not None
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in last_error.errors())
    raise MalformedAnswer(f"the JSON answer is invalid: {problems}")


def parse_coordinates(content: Any) -> list[tuple[float, float]]:
    """Every valid {"lat", "lon"} object in a reply (the RAG mode's candidate answers)."""
    coords = []
    for obj in _json_objects(message_text(content)):
        try:
            lat, lon = float(obj["lat"]), float(obj["lon"])
        except (KeyError, TypeError, ValueError):
            continue
        if -90 <= lat <= 90 and -180 <= lon <= 180:
            coords.append((lat, lon))
    return coords
