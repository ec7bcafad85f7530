"""A self-contained HTML map (folium/Leaflet) of the predictions: answer, clusters, candidates."""

from __future__ import annotations

from html import escape
from pathlib import Path

from agent.prediction import Prediction
from retrieval_service.core.errors import GeoAgentError

_SOURCE_COLOURS = {"gallery": "#3388ff", "database": "#7b3294", "lmm": "#e66101", "ocr": "#1a9641", "cluster": "#555555"}


def write_map(predictions: list[Prediction], path: str | Path) -> Path:
    """Write one HTML file (Leaflet assets are referenced from their CDN by folium, the data is inline)."""
    import folium

    if not predictions:
        raise GeoAgentError("no prediction to put on the map", "give at least one photo that can be located")
    out = Path(path)
    if out.suffix.lower() not in (".html", ".htm"):
        raise GeoAgentError(f"the map file {out} does not end in .html", "pass e.g. --map out.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    fmap = folium.Map(location=[predictions[0].lat, predictions[0].lon], zoom_start=3, tiles="OpenStreetMap")
    for pred in predictions:
        name = escape(Path(pred.image).name or pred.image)
        group = folium.FeatureGroup(name=name)
        for c in pred.candidates:
            folium.CircleMarker([c.lat, c.lon], radius=4, color=_SOURCE_COLOURS.get(c.source, "#3388ff"), fill=True,
                                tooltip=f"{c.source} candidate {c.lat:.4f}, {c.lon:.4f} (score {c.score:.3f})").add_to(group)
        for i, cl in enumerate(pred.clusters):
            folium.Circle([cl.lat, cl.lon], radius=max(1000.0, cl.radius_km * 1000),
                          color="#555555", fill=True, fill_opacity=0.15,
                          tooltip=f"cluster {i + 1}: {cl.support} candidates").add_to(group)
        for a in pred.alternatives:
            folium.Marker([a.lat, a.lon], icon=folium.Icon(color="gray", icon="question-sign"),
                          tooltip=f"alternative {a.lat:.4f}, {a.lon:.4f}").add_to(group)
        place = pred.place.label()
        popup = (f"<b>{name}</b><br>{pred.lat:.5f}, {pred.lon:.5f}<br>{escape(place)}<br>"
                 f"confidence {pred.confidence:.2f} ({pred.source})<br><small>{escape(pred.rationale)}</small>")
        folium.Marker([pred.lat, pred.lon], icon=folium.Icon(color="red", icon="camera"),
                      popup=folium.Popup(popup, max_width=400), tooltip=f"answer for {name}").add_to(group)
        group.add_to(fmap)
    folium.LayerControl().add_to(fmap)
    fmap.save(str(out))
    return out
