"""What flows between the graph nodes: typed observations, the committed answer, the graph states.

The state carries the photo's handle (``Photo``: its reference, a checked local path and its content
hash, never its bytes), so a thread continued later knows its photo; the run context
(``agent.context.RunContext``) carries the same handle to the tools. Lists marked with a reducer
accumulate across nodes. No routing flags: the LMM loop's nodes route with ``Command``; ``loop``
holds only the loop's budget.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field

from agent.decision.record import DecisionRecord
from agent.lmm.calls import add_usage
from agent.prediction import Evidence, Option, Prediction, TraceEntry, Usage
from retrieval_service.core.photo import Photo
from retrieval_service.core.types import Candidate, Location, Place, RetrievalResult, Source, Verification
from retrieval_service.evidence.clustering import ClusteringResult
from retrieval_service.evidence.exif import ExifInfo
from retrieval_service.evidence.geocoding import GeocodedPlace
from retrieval_service.evidence.ocr import TextReading
from retrieval_service.evidence.scene import SceneComposition


class Observations(BaseModel):
    """The latest typed result of each evidence tool in this run (None: not run or failed)."""

    exif: ExifInfo | None = None
    retrieval: RetrievalResult | None = None
    clusters: ClusteringResult | None = None
    text: TextReading | None = None
    scene: SceneComposition | None = None
    verification: Verification | None = None
    place: GeocodedPlace | None = None


def merge_observations(old: Observations | None, new: Observations | None) -> Observations:
    """Reducer: the fields a node set replace the earlier ones; the rest are kept."""
    if old is None:
        return new or Observations()
    if new is None:
        return old
    return old.model_copy(update={name: getattr(new, name) for name in new.model_fields_set})


def add_candidates(old: list[Candidate] | None, new: list[Candidate] | None) -> list[Candidate]:
    """Reducer: append the new candidates, except those the state already holds (same source at the
    same place, to 1e-4 degrees: a zoomed-in search repeating the first one's points)."""
    held = {(c.source, round(c.lat, 4), round(c.lon, 4)) for c in old or []}
    return [*(old or []), *(c for c in new or [] if (c.source, round(c.lat, 4), round(c.lon, 4)) not in held)]


class Answer(Location):
    """The location a run commits to, before the place is named and the Prediction is built."""

    confidence: float = Field(ge=0, le=1)
    source: Source
    rationale: str = ""
    alternatives: list[Option] = Field(default_factory=list)
    place: Place | None = Field(default=None, description="A place the LMM named itself (kept over reverse geocoding).")
    chosen: Option | None = Field(default=None, description="The option the decision picked, with its support and verification.")
    decision: DecisionRecord | None = Field(
        default=None, description="The policy's decision in numbers (its rationale's source)."
    )


class Loop(BaseModel):
    """The LMM loop's budget for one turn: the photo's ``analysis`` or a ``follow_up`` question on the
    same thread; ``steps`` tool rounds used (invalid calls included), ``repairs`` asked for, and
    whether the model was already told that the steps are spent (``warned``)."""

    turn: Literal["analysis", "follow_up"] = "analysis"
    steps: int = Field(default=0, ge=0)
    repairs: int = Field(default=0, ge=0)
    warned: bool = False


class RunState(TypedDict, total=False):
    """The state every graph shares (``messages``: the LMM conversation, empty without an LMM).

    A node sees the keys of the state type it is annotated with, so the shared steps take this one.
    ``photo`` is the photo's handle (reference, checked path, content hash). ``usage`` adds up the
    LMM's requests; ``llm_failed`` records that the LMM failed and the policy's steps decided."""

    photo: Photo
    messages: Annotated[list[AnyMessage], add_messages]
    obs: Annotated[Observations, merge_observations]
    candidates: Annotated[list[Candidate], add_candidates]
    options: list[Option]
    answer: Answer | None
    evidence: Annotated[list[Evidence], operator.add]
    trace: Annotated[list[TraceEntry], operator.add]
    warnings: Annotated[list[str], operator.add]
    llm_failed: bool
    usage: Annotated[Usage, add_usage]
    prediction: Prediction | None


class AgentState(RunState, total=False):
    """The LMM loop's state: its budget (``loop``) and, for a follow-up question, why the LMM gave no
    reply (``reply_error``)."""

    loop: Loop
    reply_error: str | None


class RagState(AgentState, total=False):
    """The G3 recipe's state: the LMM's proposals (follow-up questions use the LMM loop's keys)."""

    proposals: list[Candidate]


def observations(state: Mapping[str, Any]) -> Observations:
    """The state's observations (empty before the first tool ran)."""
    return state.get("obs") or Observations()
