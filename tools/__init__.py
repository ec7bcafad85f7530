"""The agent's tools: one LangChain tool per module, built around shared ``Services``.

``make_tools(services)`` gives the seven tools in ``TOOL_NAMES`` order; ``ALL_TOOLS`` (built lazily on
first access) uses ``Services(load_settings())``. The photo tools read the photo from their injected
runtime's context; outside a graph, pass ``runtime=photo_runtime(photo)``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool

from tools.common import GeoTool, photo_runtime
from tools.services import Services, ToolSettings

TOOL_NAMES = (
    "read_exif",
    "retrieve",
    "cluster_candidates",
    "reverse_geocode",
    "read_text",
    "segment_scene",
    "verify_locations",
)


def make_tools(services: Services) -> list[BaseTool]:
    """The seven tools, in ``TOOL_NAMES`` order, sharing ``services``."""
    from tools.cluster_candidates import make_cluster_candidates
    from tools.read_exif import make_read_exif
    from tools.read_text import make_read_text
    from tools.retrieve import make_retrieve
    from tools.reverse_geocode import make_reverse_geocode
    from tools.segment_scene import make_segment_scene
    from tools.verify_locations import make_verify_locations

    tools = [
        make_read_exif(services),
        make_retrieve(services),
        make_cluster_candidates(services),
        make_reverse_geocode(services),
        make_read_text(services),
        make_segment_scene(services),
        make_verify_locations(services),
    ]
    if tuple(t.name for t in tools) != TOOL_NAMES:
        raise RuntimeError(f"tool order drifted from TOOL_NAMES: {[t.name for t in tools]}")
    return tools


_ALL_TOOLS: list[BaseTool] | None = None


def __getattr__(name: str) -> Any:
    global _ALL_TOOLS
    if name == "ALL_TOOLS":
        if _ALL_TOOLS is None:
            from retrieval_service.core.settings import load_section

            _ALL_TOOLS = make_tools(Services(load_section(ToolSettings)))
        return _ALL_TOOLS
    raise AttributeError(f"module 'tools' has no attribute {name!r}")


__all__ = ["ALL_TOOLS", "TOOL_NAMES", "GeoTool", "Services", "ToolSettings", "make_tools", "photo_runtime"]
