"""Tool: segment_scene: scene composition (class shares) and hints from semantic segmentation."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool

from retrieval_service.evidence.scene import SceneComposition, describe_scene
from tools.common import PhotoArgs, Runtime, ToolOutput, build_tool, photo_of
from tools.services import Services

DESCRIPTION = """Describe what the photo is made of with semantic segmentation.
Use it to judge the kind of place (city street, coast, mountains, countryside) and to check whether a
candidate location fits the scenery.
Returns {"shares": {class: fraction of pixels} largest first (e.g. {"sky": 0.31, "vegetation": 0.22}),
"hints": short scene descriptions (e.g. "urban street", "coast", "mountains", "vegetation-dominated"),
"backend": the segmentation model used}. The classes depend on the backend (Cityscapes street classes
or ADE20K's 150 classes)."""


class SegmentSceneArgs(PhotoArgs):
    """No arguments: the tool segments the photo being geolocated."""


def summarise(content: dict[str, Any]) -> str:
    return SceneComposition.model_validate(content).describe() or "no segments"


def make_segment_scene(services: Services) -> BaseTool:
    def run(runtime: Runtime) -> ToolOutput:
        scene = describe_scene(services.segmenter, photo_of(runtime).decode(services.settings))
        return {"shares": scene.shares, "hints": scene.hints, "backend": scene.backend}, scene

    return build_tool("segment_scene", run, SegmentSceneArgs, DESCRIPTION, summarise)
