"""The offline map: Leaflet and leaflet.heat inlined from package data (no CDN), the bundled land
basemap, and every part of a Prediction drawn; a headless Chromium screenshot taken with every
host unresolvable shows the land, the answer and the candidates."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.basemap import asset_path, land_geojson
from agent.mapview import leaflet_head, map_data, render_map, write_map
from agent.prediction import Prediction, ProbabilitySurface
from retrieval_service.core.errors import GeoAgentError
from retrieval_service.core.types import Candidate
from retrieval_service.evidence.clustering import Cluster
from tests.waiting import GUARD_S

PARIS = (48.8566, 2.3522)


def _prediction(with_surface: bool = True) -> Prediction:
    rng = np.random.default_rng(0)
    cands = [
        Candidate(lat=PARIS[0] + dy, lon=PARIS[1] + dx, score=0.5 - i * 0.01, source="gallery")
        for i, (dy, dx) in enumerate(rng.normal(0, 1.5, (12, 2)))
    ]
    cands.append(Candidate(lat=40.4, lon=-3.7, score=0.1, source="database"))
    surface = None
    if with_surface:
        ring = [(PARIS[0] + 2 * np.sin(t), PARIS[1] + 3 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 24)]
        surface = ProbabilitySurface(
            heat=[(c.lat, c.lon, 1.0 - i / 20) for i, c in enumerate(cands)],
            regions={"50": [ring], "90": [[(a * 1.0, b * 1.0) for a, b in ring]]},
        )
    return Prediction(
        image="/photos/paris </script><b>.jpg",
        lat=PARIS[0],
        lon=PARIS[1],
        confidence=0.4,
        source="gallery",
        candidates=cands,
        clusters=[Cluster(lat=PARIS[0], lon=PARIS[1], support=12, score_mass=4.0, radius_km=120.0, members=list(range(12)))],
        alternatives=[Candidate(lat=40.4, lon=-3.7, score=0.1, source="database")],
        rationale="Most candidates <agree> on Paris.",
        search_area_km2={"50": 1.5e5, "90": 6e5},
        surface=surface,
    )


def test_the_page_references_no_external_script_style_or_image(tmp_path: Path):
    html = write_map([_prediction()], tmp_path / "m.html", tiles=False).read_text(encoding="utf-8")
    assert "Leaflet 1.9.4" in html and "simpleheat" in html and "geoagentMap" in html
    assert not re.search(r"<script[^>]+src=", html, re.I) and not re.search(r"<link\b", html, re.I)
    assert not re.search(r"@import", html) and not re.search(r"<img[^>]+src=[\"']https?:", html, re.I)
    urls = set(re.findall(r"url\(([^)]*)\)", html))
    assert urls and all(u.startswith("data:image/png;base64,") or u == "#default#VML" for u in urls), urls
    for cdn in ("unpkg.com", "cdn.jsdelivr", "cdnjs", "bootstrap", "jquery", "tile.openstreetmap.org"):
        assert cdn not in html
    assert "tile.openstreetmap.org" in render_map([_prediction()])  # online tiles only on top, when asked


def test_the_data_carries_every_part_of_the_prediction():
    [row] = map_data([_prediction()])
    assert row["lat"] == PARIS[0] and len(row["candidates"]) == 13 and row["clusters"][0]["support"] == 12
    assert len(row["surface"]["heat"]) == 13 and set(row["surface"]["regions"]) == {"50", "90"}
    assert row["alternatives"][0]["source"] == "database" and row["search_area_km2"]["50"] == 1.5e5
    assert map_data([_prediction(with_surface=False)])[0]["surface"] is None
    html = render_map([_prediction()], tiles=False)
    assert "</script><b>" not in html.split("<body>")[1].replace("<\\/script", "")  # data cannot close the script


def test_vendored_assets_have_licences_and_the_land_is_where_land_is():
    for name in ("leaflet/LICENSE", "leaflet.heat/LICENSE", "world/LICENSE-global-land-mask", "VENDORED.md"):
        assert asset_path(name).is_file(), name
    assert "Leaflet 1.9.4" in asset_path("leaflet/leaflet.js").read_text(encoding="utf-8")[:200]
    from shapely.geometry import Point, shape

    land = [shape(f["geometry"]) for f in land_geojson()["features"]]
    assert any(p.contains(Point(PARIS[1], PARIS[0])) for p in land)  # (lon, lat)
    assert not any(p.contains(Point(-35.0, 40.0)) for p in land)  # mid-Atlantic
    assert "<script>" in leaflet_head()


def test_no_prediction_and_bad_suffix_are_clear_errors(tmp_path: Path):
    with pytest.raises(GeoAgentError, match="no prediction"):
        render_map([])
    with pytest.raises(GeoAgentError, match=r"does not end in \.html"):
        write_map([_prediction()], tmp_path / "m.png")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _share(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> float:
    return float((np.abs(pixels[..., :3].astype(int) - rgb).max(axis=-1) <= tol).mean())


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (apt-get install -y chromium; .ci/run does)")
def test_an_offline_screenshot_shows_the_land_the_answer_and_the_candidates(tmp_path: Path):
    page = write_map([_prediction()], tmp_path / "map.html")  # online tiles asked for, but every host is unresolvable
    shot = tmp_path / "shot.png"
    cmd = [
        _chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--mute-audio",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=900,700",
        "--virtual-time-budget=4000",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=GUARD_S)
    assert shot.is_file(), res.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    land, sea = _share(pixels, (0xEC, 0xE6, 0xD4)), _share(pixels, (0xAA, 0xD3, 0xDF))
    answer, gallery = _share(pixels, (0xE3, 0x1A, 0x1C), 20), _share(pixels, (0x33, 0x88, 0xFF), 20)
    (tmp_path / "shares.json").write_text(json.dumps([land, sea, answer, gallery]))
    assert land > 0.05 and sea > 0.02, (land, sea)  # the bundled basemap drew
    assert answer > 0.0003 and gallery > 0.0003, (answer, gallery)  # the answer and the candidate markers drew
