"""Tool: read_text: OCR of signs and captions, writing scripts, and place names in the text."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool

from retrieval_service.evidence.scripts import SCRIPT_REGIONS
from tools.common import PhotoArgs, Runtime, ToolOutput, build_tool, photo_of, r
from tools.services import Services

DESCRIPTION = """Read the text visible in the photo (signs, shop fronts, plates, captions) with OCR.
Use it when the photo may show writing: text, its language and script are strong location clues.
Returns {"lines": [{text, confidence}], "scripts": ["Latin", "Cyrillic", ...],
"script_regions": {script: where it is written} (non-Latin scripts only),
"places": [{name, region, country_code, lat, lon}] (town names found in the text, GeoNames, best first;
a common name can match several countries: weigh them with the other evidence)}.
The OCR model reads Latin and Chinese characters best; empty lines = no readable text."""


class ReadTextArgs(PhotoArgs):
    """No arguments: the tool reads the photo being geolocated."""


def summarise(content: dict[str, Any]) -> str:
    lines = [ln.get("text", "") for ln in content.get("lines") or []][:3]
    places = [p.get("name") for p in content.get("places") or []][:3]
    return f"text {lines}; places {places}" if lines else "no text found"


def make_read_text(services: Services) -> BaseTool:
    def run(runtime: Runtime) -> ToolOutput:
        reading = services.text_reader.read(photo_of(runtime).decode(services.settings))
        return {
            "lines": [{"text": line.text[:200], "confidence": r(line.confidence, 2)} for line in reading.lines],
            "scripts": reading.scripts,
            "script_regions": {s: SCRIPT_REGIONS[s] for s in reading.scripts if s in SCRIPT_REGIONS},
            "places": [
                {"name": p.name, "region": p.region, "country_code": p.country_code, "lat": r(p.lat, 4), "lon": r(p.lon, 4)}
                for p in reading.places
            ],
        }, reading

    return build_tool("read_text", run, ReadTextArgs, DESCRIPTION, summarise)
