"""Tool: read_exif: GPS, capture time and camera from the photo's EXIF."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool

from retrieval_service.evidence.exif import read_exif
from tools.common import PhotoArgs, Runtime, ToolOutput, build_tool, photo_of, r
from tools.services import Services

DESCRIPTION = """Read the photo's EXIF metadata. Call this FIRST.
Returns {"gps": {"lat","lon","altitude_m"} or null, "datetime", "camera", "note"}.
If "gps" is present the photo's location is known from the camera: that short-circuits the search
(answer with these coordinates; other tools are only needed to double-check). With "gps": null,
locate the photo from its content (retrieve, read_text, segment_scene...)."""


class ReadExifArgs(PhotoArgs):
    """No arguments: the tool reads the photo being geolocated."""


def summarise(content: dict[str, Any]) -> str:
    gps = content.get("gps")
    return f"GPS {gps['lat']:.4f}, {gps['lon']:.4f}" if gps else "no GPS in EXIF"


def make_read_exif(services: Services) -> BaseTool:
    def run(runtime: Runtime) -> ToolOutput:
        info = read_exif(photo_of(runtime).path, services.settings)
        if info.gps is not None:
            gps = {
                "lat": r(info.gps.lat, 5),
                "lon": r(info.gps.lon, 5),
                "altitude_m": None if info.gps.altitude_m is None else r(info.gps.altitude_m, 1),
            }
            note = "GPS found in EXIF: this is where the photo was taken; it short-circuits the search."
        else:
            gps = None
            note = "no GPS in EXIF: locate the photo from its content."
            if info.gps_problem:
                note = f"{info.gps_problem}. {note}"
        return {"gps": gps, "datetime": info.datetime, "camera": info.camera, "note": note}, info

    return build_tool("read_exif", run, ReadExifArgs, DESCRIPTION, summarise)
