"""What flows between the graph nodes: typed observations, the committed answer, the graph states.

The state carries a reference to the image (path, URL or content hash), never its bytes; the
resolved photo travels in the run context (``agent.context.RunContext``), which LangGraph does not
checkpoint. Lists marked with a reducer accumulate across nodes.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field

from agent.lmm.calls import add_usage
from agent.prediction import Evidence, Place, Prediction, PredictionSource, TraceEntry, Usage
from retrieval_service.core.types import Candidate, Location, RetrievalResult, Verification
from retrieval_service.evidence.clustering import ClusteringResult
from retrieval_service.evidence.exif import ExifInfo
from retrieval_service.evidence.geocoding import PlaceInfo
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
    place: PlaceInfo | None = None


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
    source: PredictionSource
    rationale: str = ""
    alternatives: list[Candidate] = Field(default_factory=list)
    place: Place | None = Field(default=None, description="A place the LMM named itself (kept over reverse geocoding).")
    chosen: Candidate | None = Field(default=None, description="The option the decision picked, with its support and verification.")


class RunState(TypedDict, total=False):
    """The state every graph shares (``messages``: the LMM conversation, empty without an LMM).

    A node sees the keys of the state type it is annotated with, so the shared steps take this one.
    ``image`` is the photo's reference (path, URL or content hash) and ``image_path`` where the tools
    read it (a local path or URL): references, never bytes. ``usage`` adds up the LMM's requests."""

    image: str
    image_path: str
    messages: Annotated[list[AnyMessage], add_messages]
    obs: Annotated[Observations, merge_observations]
    candidates: Annotated[list[Candidate], add_candidates]
    options: list[Candidate]
    answer: Answer | None
    evidence: Annotated[list[Evidence], operator.add]
    trace: Annotated[list[TraceEntry], operator.add]
    warnings: Annotated[list[str], operator.add]
    llm_failed: bool
    usage: Annotated[Usage, add_usage]
    prediction: Prediction | None


class AgentState(RunState, total=False):
    """The LMM loop's state: the step budget (``steps`` tool rounds used, invalid calls included),
    the repair rounds, where the loop goes next (``loop_next``, set by ``reason``) and the turn: the
    photo's ``analysis`` or a ``follow_up`` question on the same thread."""

    steps: int
    repairs: int
    budget_exhausted: bool
    wants_fallback: bool
    loop_next: str
    turn: str
    reply_error: str | None


class RagState(AgentState, total=False):
    """The G3 recipe's state: the LMM's proposals (follow-up questions use the LMM loop's keys)."""

    proposals: list[Candidate]


def observations(state: dict[str, Any]) -> Observations:
    """The state's observations (empty before the first tool ran)."""
    return state.get("obs") or Observations()
