"""What every tool shares: building a StructuredTool that never raises into the graph, and rounding.

Every tool answers twice (LangChain's ``response_format="content_and_artifact"``):

* the *content*, a compact JSON-serialisable dict the LMM reads (numbers rounded, lists short), or
  ``{"error": "... (fix: ...)"}`` when it failed;
* the *artifact*, the typed result the graph keeps (``RetrievalResult``, ``ClusteringResult``,
  ``PlaceInfo``, ``TextReading``, ``SceneComposition``, ``Verification``, ``ExifInfo``), or ``None``
  when it failed.

The photo is an injected argument (``image: Photo``): it is not in ``tool.tool_call_schema``, so a
model never sees or fills it. ``tool.invoke(args)`` returns the content; invoked with a tool call (as ``ToolNode`` and the
graph's own steps do) it returns a ``ToolMessage`` carrying both.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Annotated, Any

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import InjectedState
from pydantic import BaseModel, ValidationError

from retrieval_service.core.errors import GeoAgentError

logger = logging.getLogger(__name__)

IMAGE_DESCRIPTION = "Path (or http(s) URL) of the photo being geolocated."

PHOTO_STATE_KEY = "image_path"
Photo = Annotated[str, InjectedState(PHOTO_STATE_KEY)]
"""The type of a tool's ``image`` argument: the photo's path or URL, injected by LangGraph's ToolNode
from the graph state's ``image_path`` (a value the model sends for it is dropped) and therefore absent
from the schema the LMM sees (``tool.tool_call_schema``); ``tool.invoke({"image": path, ...})``
still passes it directly."""

ToolOutput = tuple[dict[str, Any], BaseModel | None]


def error_output(message: str) -> ToolOutput:
    """The content and (missing) artifact of a failed call."""
    return {"error": message}, None


def _validation_message(tool_name: str, exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err.get('loc', ())) or 'arguments'}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    )
    return f"invalid arguments for {tool_name}: {problems}. Fix the arguments and call again."


def build_tool(name: str, func: Callable[..., ToolOutput], args_schema: type[BaseModel], description: str) -> BaseTool:
    """A content-and-artifact StructuredTool whose failures (bad arguments included) come back as
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

    return StructuredTool.from_function(
        func=safe,
        name=name,
        description=description,
        args_schema=args_schema,
        response_format="content_and_artifact",
        handle_validation_error=lambda exc: {"error": _validation_message(name, exc)},  # type: ignore[arg-type]
    )


def r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)
