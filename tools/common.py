"""What every tool shares: building a StructuredTool that never raises into the graph, the photo it
works on, its one-line summary for the trace, and rounding.

Every tool answers twice (LangChain's ``response_format="content_and_artifact"``):

* the *content*, a compact JSON-serialisable dict the LMM reads (numbers rounded, lists short), or
  ``{"error": "... (fix: ...)"}`` when it failed;
* the *artifact*, the typed result the graph keeps (``RetrievalResult``, ``ClusteringResult``,
  ``GeocodedPlace``, ``TextReading``, ``SceneComposition``, ``Verification``, ``ExifInfo``), or
  ``None`` when it failed.

The photo reaches a tool through its injected ``runtime`` argument (LangGraph's ``ToolRuntime``):
``runtime.context.photo``, the ``Photo`` the API resolved once. ``runtime`` is not in
``tool.tool_call_schema``, so a model never sees or fills it; LangGraph's ``ToolNode`` injects it.
Outside a graph, pass ``photo_runtime(photo)`` as ``runtime``.

Each tool module writes its own ``summarise(content) -> str`` (the trace's one line), attached to
the tool (``GeoTool.summarise``).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.tools import StructuredTool
from langgraph.prebuilt import ToolRuntime
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrieval_service.core.errors import GeoAgentError
from retrieval_service.core.photo import Photo

logger = logging.getLogger(__name__)

ToolOutput = tuple[dict[str, Any], BaseModel | None]
Runtime = ToolRuntime[Any, Any]
"""The type of a tool's injected ``runtime`` argument; its ``context`` has the run's ``photo``."""
SUMMARY_CHARS = 200


class PhotoArgs(BaseModel):
    """The arguments every photo tool has: the injected runtime (the model never sees it)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    runtime: Runtime = Field(description="Injected by the graph: the run's context, with the photo.")


@dataclass(frozen=True)
class PhotoContext:
    """The smallest context a photo tool needs outside a graph."""

    photo: Photo


def photo_runtime(photo: Photo, tool_call_id: str = "direct") -> Runtime:
    """A ``ToolRuntime`` carrying ``photo``, to call a photo tool outside a graph:
    ``tool.invoke({"runtime": photo_runtime(photo), ...})``."""
    return ToolRuntime(
        state={}, context=PhotoContext(photo), config={}, stream_writer=lambda _event: None, tool_call_id=tool_call_id, store=None
    )


def photo_of(runtime: Any) -> Photo:
    """The photo of a tool's runtime; a clear error when the tool was called without one."""
    photo = getattr(getattr(runtime, "context", None), "photo", None)
    if not isinstance(photo, Photo):
        raise GeoAgentError(
            "the tool was called without a photo in its runtime context",
            "call it through the agent's graph, or pass runtime=tools.common.photo_runtime(photo)",
        )
    return photo


def error_output(message: str) -> ToolOutput:
    """The content and (missing) artifact of a failed call."""
    return {"error": message}, None


def _validation_message(tool_name: str, exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ())) or 'arguments'}: {err.get('msg', 'invalid')}" for err in exc.errors()
    )
    return f"invalid arguments for {tool_name}: {problems}. Fix the arguments and call again."


def default_summary(content: dict[str, Any]) -> str:
    return json.dumps(content, default=str)[:160]


class GeoTool(StructuredTool):
    """A content-and-artifact tool that also says, in one line, what a result of it means."""

    summariser: Callable[[dict[str, Any]], str] = default_summary

    def summarise(self, content: Any) -> str:
        """One short line describing a result's content, for the trace and the live view."""
        if not isinstance(content, dict):
            return str(content)[:160]
        if "error" in content:
            return f"error: {content['error']}"[:SUMMARY_CHARS]
        try:
            return self.summariser(content)
        except (KeyError, TypeError, ValueError, IndexError):  # pydantic's ValidationError is a ValueError
            return default_summary(content)


def build_tool(
    name: str,
    func: Callable[..., ToolOutput],
    args_schema: type[BaseModel],
    description: str,
    summarise: Callable[[dict[str, Any]], str] = default_summary,
) -> GeoTool:
    """A content-and-artifact tool whose failures (bad arguments included) come back as
    ``{"error": ...}`` content with no artifact."""

    @functools.wraps(func)
    def safe(**kwargs: Any) -> ToolOutput:
        try:
            return func(**kwargs)
        except GeoAgentError as exc:
            logger.info("tool %s failed: %s", name, exc.message)
            return error_output(f"{exc.message}" + (f" (fix: {exc.hint})" if exc.hint else ""))
        except ValidationError as exc:
            return error_output(_validation_message(name, exc))
        except Exception as exc:  # a tool must never raise into the graph
            logger.exception("tool %s crashed", name)
            return error_output(f"{name} failed: {type(exc).__name__}: {exc}")

    return GeoTool(
        name=name,
        func=safe,
        description=description,
        args_schema=args_schema,
        response_format="content_and_artifact",
        handle_validation_error=lambda exc: {"error": _validation_message(name, exc)},  # type: ignore[arg-type,return-value]
        summariser=summarise,
    )


def r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)
