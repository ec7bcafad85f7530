"""The LMM's structured answers: the ``submit_answer`` tool (the agent's final answer) and the
``propose_location`` tool (a RAG proposal), their pydantic schemas, and their validation.

The model answers by calling a tool whose arguments are validated by pydantic; nothing is scanned
out of free text. A call that fails validation gets an error naming each problem (sent back to the
model as that call's tool message: the repair path of every invalid call).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field, ValidationError

from agent.prediction import Option
from retrieval_service.core.types import Location, Place

SUBMIT_ANSWER = "submit_answer"
PROPOSE_LOCATION = "propose_location"


class AnswerPlace(BaseModel):
    """The place the model names (each part optional)."""

    city: str | None = None
    region: str | None = None
    country: str | None = None
    country_code: str | None = Field(default=None, description="ISO 3166-1 alpha-2, e.g. FR.")


class AnswerAlternative(Location):
    """Another location the model considers possible."""

    score: float = Field(default=0.0, ge=0, le=1, description="How likely, 0..1.")


class FinalAnswer(Location):
    """Where the photo was taken: the final answer (the arguments of ``submit_answer``)."""

    confidence: float = Field(ge=0, le=1, description="How sure, 0..1.")
    place: AnswerPlace = Field(default_factory=AnswerPlace)
    alternatives: list[AnswerAlternative] = Field(default_factory=list, max_length=10)
    rationale: str = Field(min_length=1, description="The evidence that decided it, naming only checks a tool actually did.")

    def named_place(self) -> Place | None:
        """The place the model named, as the Prediction's Place (None when it named none)."""
        given = self.place.model_dump(exclude_none=True)
        return Place(**given) if given else None

    def alternative_options(self) -> list[Option]:
        return [Option(lat=a.lat, lon=a.lon, score=a.score, source="lmm") for a in self.alternatives]


class LocationProposal(Location):
    """A RAG proposal: where the photo was most likely taken (the arguments of ``propose_location``)."""


class InvalidAnswer(ValueError):
    """A structured answer that does not validate; the message names each problem."""


def problems(exc: ValidationError) -> str:
    """A validation error as "field: problem; ..." (what the model is told)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors())


def validate_args(schema: type[BaseModel], args: Any) -> Any:
    """``schema`` validated from a tool call's arguments; InvalidAnswer naming the problems otherwise."""
    try:
        return schema.model_validate(args)
    except ValidationError as exc:
        raise InvalidAnswer(problems(exc)) from exc


def _received(**_: Any) -> str:
    return "received"


@lru_cache(maxsize=1)
def submit_answer_tool() -> BaseTool:
    """The tool the agent commits its final answer with (the graph handles its calls itself)."""
    return StructuredTool.from_function(
        func=_received,
        name=SUBMIT_ANSWER,
        args_schema=FinalAnswer,
        description=(
            "Submit your final answer: where the photo was taken, how sure you are, the place, "
            "alternatives and the rationale. Call it once, when the evidence is in."
        ),
    )


@lru_cache(maxsize=1)
def propose_location_tool() -> BaseTool:
    """The tool a RAG prompt answers with: the coordinates the model proposes."""
    return StructuredTool.from_function(
        func=_received,
        name=PROPOSE_LOCATION,
        args_schema=LocationProposal,
        description="Give the coordinates where the photo was most likely taken.",
    )


def bound_models(chat_model: Any, tools: Sequence[BaseTool], rag_temperature: float) -> dict[str, Any]:
    """The chat model with its tools bound, once per agent (converting the schemas on every request
    was most of the loop's own time): ``loop`` (the tools and submit_answer), ``answer``
    (submit_answer only: the step budget is spent), ``propose`` (a RAG prompt, sampled at
    ``rag_temperature``). Empty without a chat model."""
    if chat_model is None:
        return {}
    return {
        "loop": chat_model.bind_tools([*tools, submit_answer_tool()]),
        "answer": chat_model.bind_tools([submit_answer_tool()]),
        "propose": chat_model.bind_tools([propose_location_tool()]).bind(temperature=rag_temperature),
    }


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
