"""A self-contained HTML map of the predictions that works offline.

Leaflet 1.9.4, leaflet.heat 0.2.0 and topojson-client 3.1.0 are vendored with their licences under
``agent/assets/`` (``VENDORED.md`` lists versions and digests) and inlined into the page, their
images as data URIs; Natural Earth's countries at 1:50m (``agent.basemap``) are inlined too, so the
answer, candidates, clusters, the probability surface (a heatmap) and the 50%/90% search areas show
over coastlines and borders with no network. A legend says what each mark is; a panel gives each
answer's place, coordinates, P(within 25 km) and search areas. OpenStreetMap tiles are drawn on top
when reachable (``tiles=False`` leaves them out).

The web chat draws with the same ``geoagent-map.js`` (served from ``/assets``): ``asset_path``,
``leaflet_head`` (the ``<style>``/``<script>`` block) and ``map_data`` (a Prediction's JSON, trimmed
for the page: what ``geoagentMap(elementId, data)`` draws).
"""

from __future__ import annotations

import base64
import json
import re
from html import escape
from pathlib import Path
from typing import Any

from agent.basemap import asset_path, countries_topojson
from agent.decision.summary import named
from agent.prediction import Prediction
from retrieval_service.core.errors import GeoAgentError

SCRIPTS = ("leaflet/leaflet.js", "leaflet.heat/leaflet-heat.js", "topojson-client/topojson-client.min.js", "geoagent-map.js")
STYLES = ("leaflet/leaflet.css", "geoagent-map.css")
ONLINE_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
MAX_CANDIDATES = 200
"""Candidates drawn per photo (the strongest first); the page stays small with large top_k."""


def asset_text(name: str) -> str:
    """The text of a vendored asset under ``agent/assets`` (GeoAgentError if the package lacks it)."""
    path = asset_path(name)
    if not path.is_file():
        raise GeoAgentError(
            f"the map asset {name} is missing from the installed package ({path})",
            "reinstall geoagent; the wheel ships agent/assets/",
        )
    return path.read_text(encoding="utf-8")


def _css_with_data_uris(name: str) -> str:
    css = asset_text(name)
    folder = asset_path(name).parent

    def inline(match: re.Match[str]) -> str:
        target = folder / match.group(1)
        if not target.is_file():
            return match.group(0)
        return f"url(data:image/png;base64,{base64.b64encode(target.read_bytes()).decode('ascii')})"

    return re.sub(r"url\((images/[\w.-]+\.png)\)", inline, css)


def _safe_script(text: str) -> str:
    return text.replace("</script", "<\\/script")


def leaflet_head() -> str:
    """``<style>`` and ``<script>`` elements with Leaflet, leaflet.heat, topojson-client and the geoagent
    drawing code inlined."""
    styles = "".join(f"<style>/* {n} */\n{_css_with_data_uris(n)}</style>\n" for n in STYLES)
    scripts = "".join(f"<script>/* {n} */\n{_safe_script(asset_text(n))}</script>\n" for n in SCRIPTS)
    return styles + scripts


def _point(c: Any) -> dict[str, Any]:
    return {
        "lat": round(float(c.lat), 5),
        "lon": round(float(c.lon), 5),
        "score": round(float(getattr(c, "score", 0.0)), 4),
        "source": str(getattr(c, "source", "")),
    }


def map_data(predictions: list[Prediction]) -> list[dict[str, Any]]:
    """What ``geoagentMap`` draws for each prediction: the Prediction's own fields (so the web chat
    can pass a Prediction's JSON as it is), trimmed: the strongest candidates, rounded numbers."""
    out: list[dict[str, Any]] = []
    for pred in predictions:
        candidates = sorted(pred.candidates, key=lambda c: -c.score)[:MAX_CANDIDATES]
        surface = None
        if pred.surface is not None:
            surface = {
                "heat": [[round(a, 4), round(b, 4), round(w, 4)] for a, b, w in pred.surface.heat],
                "regions": {
                    level: [
                        {
                            "outline": [[round(a, 4), round(b, 4)] for a, b in piece.outline],
                            "holes": [[[round(a, 4), round(b, 4)] for a, b in hole] for hole in piece.holes],
                            "area_km2": piece.area_km2,
                            "mass": piece.mass,
                        }
                        for piece in pieces
                    ]
                    for level, pieces in pred.surface.regions.items()
                },
            }
        out.append(
            {
                "name": Path(pred.image).name or pred.image,
                "image": pred.image,
                "lat": pred.lat,
                "lon": pred.lon,
                "confidence": pred.confidence,
                "probabilities": dict(pred.probabilities),
                "source": pred.source,
                "place": pred.place.model_dump(mode="json"),
                "rationale": pred.rationale[:1000],
                "candidates": [_point(c) for c in candidates],
                "alternatives": [
                    {**_point(a), "probability": a.probability, "place": a.place.model_dump(mode="json") if a.place else None}
                    for a in named(pred.alternatives)
                ],
                "clusters": [{"lat": c.lat, "lon": c.lon, "support": c.support, "radius_km": c.radius_km} for c in pred.clusters],
                "surface": surface,
                "search_area_km2": dict(pred.search_area_km2),
            }
        )
    return out


def _json_for_script(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")


def render_map(predictions: list[Prediction], *, tiles: bool = True, title: str = "geoagent map") -> str:
    """The whole page as one HTML string: no external script, style or image."""
    if not predictions:
        raise GeoAgentError("no prediction to put on the map", "give at least one photo that can be located")
    data = {"countries": countries_topojson(), "tiles": ONLINE_TILES if tiles else None, "predictions": map_data(predictions)}
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n{leaflet_head()}"
        "<style>html,body{margin:0;height:100%}#map{position:absolute;inset:0;background:#c6dbef}</style>\n"
        '</head><body><div id="map"></div>\n'
        f'<script>geoagentMap("map", {_json_for_script(data)});</script>\n</body></html>\n'
    )


def write_map(predictions: list[Prediction], path: str | Path, *, tiles: bool = True) -> Path:
    """Write the offline map page to ``path`` (an .html file); returns the path."""
    out = Path(path)
    if out.suffix.lower() not in (".html", ".htm"):
        raise GeoAgentError(f"the map file {out} does not end in .html", "pass e.g. --map out.html")
    html = render_map(predictions, tiles=tiles)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
