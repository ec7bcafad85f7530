"""geoagent as a Model Context Protocol server (the official ``mcp`` Python SDK): ``locate`` and the
evidence tools, for MCP clients (desktop assistants, other agents).

* ``locate(image, mode?, top_k?)``: the agent's answer (coordinates, place, P(error <= t), search
  areas, alternatives with their places, the rationale, warnings), without the map surface;
* one MCP tool per evidence tool (``read_exif``, ``retrieve``, ``cluster_candidates``,
  ``reverse_geocode``, ``read_text``, ``segment_scene``, ``verify_locations``): the same argument
  schema the LMM sees (``tool.tool_call_schema``) and, for the photo tools, an ``image`` argument.
  The photo is resolved once at this boundary (``Photo.resolve``: a local path, or an http(s) URL
  fetched under the download policy) and reaches the tool through ``tools.photo_runtime(photo)``.

A tool's failure is an MCP error result whose text names the problem and the fix. Blocking work
runs on a worker thread, so one slow photo does not stall the server's event loop.
"""

from __future__ import annotations

import inspect
import logging
from typing import Annotated, Any

from pydantic import Field
from pydantic_core import PydanticUndefined

from retrieval_service.core.errors import GeoAgentError

log = logging.getLogger(__name__)

IMAGE_HELP = "The photo: a path on the machine this server runs on, or an http(s) URL."
LOCATE_HELP = (
    "Where was this photo taken? Runs geoagent on the photo (retrieval over GeoCLIP's GPS gallery and the "
    "image database, clustering, OCR, scene segmentation, EXIF, verification; an LMM when one is configured) and "
    "returns the answer's coordinates and place, P(error <= 1, 25, 200, 750, 2500 km), the areas holding 50% and "
    "90% of the probability, alternatives with their places, the rationale and warnings."
)
MAX_CANDIDATES = 10
"""Retrieval candidates a ``locate`` answer keeps (the strongest; the full list is in the agent's Prediction)."""


def _fail(exc: BaseException) -> Exception:
    from mcp.server.mcpserver.exceptions import ToolError

    if isinstance(exc, GeoAgentError):
        return ToolError(exc.message + (f" (fix: {exc.hint})" if exc.hint else ""))
    return ToolError(f"{type(exc).__name__}: {exc}")


def answer_of(pred: Any) -> dict[str, Any]:
    """A Prediction as ``locate`` returns it: everything but the map surface, the kept mixture and the
    LMM conversation; the alternatives named; the strongest candidates only."""
    from agent.decision.summary import named

    row = pred.model_dump(mode="json", exclude={"surface", "model", "messages", "alternatives", "candidates"})
    row["alternatives"] = [a.model_dump(mode="json", exclude_none=True) for a in named(pred.alternatives)]
    row["candidates"] = [
        c.model_dump(mode="json", include={"lat", "lon", "score", "probability", "source"})
        for c in sorted(pred.candidates, key=lambda c: -c.score)[:MAX_CANDIDATES]
    ]
    row["trace"] = [f"{t.tool}: {t.error or t.summary}" for t in pred.trace]
    return row


def _parameters(tool: Any, photo: bool) -> list[inspect.Parameter]:
    """The MCP tool's parameters: ``image`` for a photo tool, then the fields the LMM fills."""
    params = []
    if photo:
        params.append(
            inspect.Parameter("image", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, Field(description=IMAGE_HELP)])
        )
    for name, field in tool.tool_call_schema.model_fields.items():
        metadata = (field.annotation, *field.metadata, Field(description=field.description))
        annotation = Annotated[metadata]  # type: ignore[valid-type]  # the field's own type and constraints
        if field.default is not PydanticUndefined:
            default = field.default
        elif field.default_factory is not None:
            default = field.default_factory()
        else:
            default = inspect.Parameter.empty
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return params


def _as_mcp_tool(tool: Any, settings: Any) -> Any:
    """An async function with the tool's own argument schema that MCPServer can register."""
    import anyio

    from retrieval_service.core.photo import Photo
    from tools.common import photo_runtime

    photo = "runtime" in tool.args_schema.model_fields

    def call(arguments: dict[str, Any]) -> dict[str, Any]:
        if photo:
            image = arguments.pop("image")
            arguments["runtime"] = photo_runtime(Photo.resolve(image, settings.cache_dir, settings))
        content = tool.invoke(arguments)
        if isinstance(content, dict) and "error" in content:
            raise GeoAgentError(str(content["error"]))
        return content if isinstance(content, dict) else {"result": content}

    async def run(**arguments: Any) -> dict[str, Any]:
        try:
            return await anyio.to_thread.run_sync(call, {k: v for k, v in arguments.items() if v is not None or k == "image"})
        except Exception as exc:
            raise _fail(exc) from exc

    run.__signature__ = inspect.Signature(_parameters(tool, photo), return_annotation=dict[str, Any])  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in _parameters(tool, photo)} | {"return": dict[str, Any]}
    run.__name__ = tool.name
    return run


def build_server(agent: Any) -> Any:
    """The MCP server over ``agent`` (a ``GeoAgent``: its settings, tools and graph)."""
    from importlib.metadata import PackageNotFoundError, version

    import anyio
    from mcp.server.mcpserver import MCPServer

    try:
        release = version("geoagent")
    except PackageNotFoundError:
        release = "unknown"
    server = MCPServer(
        "geoagent",
        title="geoagent: where was this photo taken?",
        instructions=(
            "Call locate with a photo (a local path or an http(s) URL) for the answer with its probabilities; the "
            "evidence tools (read_exif, retrieve, cluster_candidates, reverse_geocode, read_text, segment_scene, "
            "verify_locations) give the pieces on their own."
        ),
        version=release,
        log_level="WARNING",
    )

    async def locate(
        image: Annotated[str, Field(description=IMAGE_HELP)],
        mode: Annotated[str | None, Field(description="policy, agent, rag, retrieval or rerank (default: the server's).")] = None,
        top_k: Annotated[
            int | None, Field(ge=1, le=100, description="Retrieval candidates per list (default: the server's).")
        ] = None,
    ) -> dict[str, Any]:
        options = {k: v for k, v in {"mode": mode, "top_k": top_k}.items() if v is not None}
        try:
            pred = await anyio.to_thread.run_sync(lambda: agent.invoke({"image": image}, **options))
        except Exception as exc:
            raise _fail(exc) from exc
        return answer_of(pred)

    server.add_tool(locate, name="locate", description=LOCATE_HELP)
    for tool in agent.tools:
        server.add_tool(_as_mcp_tool(tool, agent.settings), name=tool.name, description=tool.description)
    return server
