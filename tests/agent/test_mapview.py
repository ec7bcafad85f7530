"""The offline map: Leaflet, leaflet.heat and topojson-client inlined from package data (no CDN),
Natural Earth's countries as the basemap (coastlines and borders), and every part of a Prediction
drawn; headless Chromium screenshots taken with every host unresolvable show the land, the answer
(a black-and-white target, unlike any heat colour), the legend and the answer's place written on
the page, and an EXIF answer in its country rather than on an empty field."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.basemap import asset_path, countries_at, countries_topojson
from agent.mapview import leaflet_head, map_data, render_map, write_map
from agent.prediction import Prediction, ProbabilitySurface, Region
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
            regions={
                "50": [Region(outline=ring, area_km2=1.5e5, mass=0.5)],
                "90": [Region(outline=ring, area_km2=6e5, mass=0.9)],
            },
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
    assert "Leaflet 1.9.4" in html and "simpleheat" in html and "geoagentMap" in html and "topojson-client" in html
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
    assert row["surface"]["regions"]["50"][0]["area_km2"] == 1.5e5 and row["surface"]["regions"]["50"][0]["outline"]
    assert row["alternatives"][0]["source"] == "database" and row["search_area_km2"]["50"] == 1.5e5
    assert map_data([_prediction(with_surface=False)])[0]["surface"] is None
    html = render_map([_prediction()], tiles=False)
    assert "</script><b>" not in html.split("<body>")[1].replace("<\\/script", "")  # data cannot close the script


def test_vendored_assets_have_licences_and_the_countries_are_where_they_are():
    for name in (
        "leaflet/LICENSE",
        "leaflet.heat/LICENSE",
        "topojson-client/LICENSE",
        "world/LICENSE-world-atlas",
        "VENDORED.md",
    ):
        assert asset_path(name).is_file(), name
    assert "Natural Earth" in asset_path("VENDORED.md").read_text(encoding="utf-8")
    assert "Leaflet 1.9.4" in asset_path("leaflet/leaflet.js").read_text(encoding="utf-8")[:200]
    assert len(countries_topojson()["objects"]["countries"]["geometries"]) == 241
    lats, lons = np.array([PARIS[0], 45.5007, 40.0, 59.91, 43.70]), np.array([PARIS[1], 9.1103, -35.0, 10.75, 7.27])
    assert countries_at(lats, lons) == ["FR", "IT", None, "NO", "FR"]  # mid-Atlantic: none; Nice's harbour: France
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


def _screenshot(page: Path, out: Path, size: str = "900,700") -> np.ndarray:
    """A headless Chromium screenshot of ``page`` with every host unresolvable (no network)."""
    cmd = [
        _chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--mute-audio",
        "--no-first-run",
        f"--user-data-dir={out.parent / (out.stem + '-profile')}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--window-size={size}",
        "--virtual-time-budget=6000",
        f"--screenshot={out}",
        page.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=GUARD_S)
    assert out.is_file(), res.stderr[-2000:]
    return np.asarray(Image.open(out).convert("RGB"))


def _dom(page: Path, out: Path) -> str:
    """The page's DOM after its scripts ran (Chromium's --dump-dom), with no network."""
    cmd = [
        _chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={out}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=900,700",
        "--virtual-time-budget=6000",
        "--dump-dom",
        page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=GUARD_S).stdout


LAND, SEA = (0xF2, 0xEF, 0xE6), (0xC6, 0xDB, 0xEF)
BLACK, WHITE = (0, 0, 0), (255, 255, 255)


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (apt-get install -y chromium; .ci/run does)")
def test_an_offline_screenshot_shows_the_land_the_answer_the_legend_and_the_candidates(tmp_path: Path):
    page = write_map([_prediction()], tmp_path / "map.html")  # online tiles asked for, but every host is unresolvable
    pixels = _screenshot(page, tmp_path / "shot.png")
    land, sea = _share(pixels, LAND), _share(pixels, SEA)
    gallery = _share(pixels, (0x2C, 0x7B, 0xB6), 20)
    (tmp_path / "shares.json").write_text(json.dumps([land, sea, gallery]))
    assert land > 0.05 and sea > 0.02, (land, sea)  # the bundled countries drew
    assert gallery > 0.0003, gallery  # the candidate markers drew
    assert _share(pixels, BLACK, 30) > 0.0005  # the answer's black-and-white target (and the legend's)
    dom = _dom(page, tmp_path / "dom-profile")
    assert dom.count('class="leaflet-marker-icon answer-marker') == 1
    assert "geoagent-legend" in dom and "50% search area" in dom and "probability density" in dom
    assert "48.85660, 2.35220" in dom and "confidence 0.40" in dom  # the answer written on the page
    assert dom.count('<path class="land"') == 241 and '<path class="border"' in dom and '<path class="coast"' in dom
    assert "search-area-50" in dom and "search-area-90" in dom


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (apt-get install -y chromium; .ci/run does)")
def test_an_exif_answer_is_shown_in_its_country_with_its_place_written(tmp_path: Path):
    """Before: a dot on an empty beige field at 30 km scale."""
    from agent.decision.mixture import Component, Mixture
    from agent.decision.summary import prediction_fields
    from agent.settings import Settings
    from retrieval_service.core.types import Place

    mixture = Mixture([Component(48.8578, 2.2970, 1000.0, 0.05, "exif")])
    fields = prediction_fields(mixture, 48.8578, 2.2970, settings=Settings(data_dir=tmp_path / "data"), mode="policy")
    pred = Prediction(
        image="/photos/eiffel.jpg",
        lat=48.8578,
        lon=2.2970,
        source="exif",
        place=Place(city="Vanves", region="Ile-de-France", country="France"),
        rationale="The photo's EXIF metadata holds GPS coordinates.",
        **fields,
    )
    page = write_map([pred], tmp_path / "exif.html", tiles=False)
    pixels = _screenshot(page, tmp_path / "exif.png")
    assert _share(pixels, SEA) > 0.02 and _share(pixels, LAND) > 0.2  # coasts in view: the country, not a blank field
    dom = _dom(page, tmp_path / "exif-dom")
    assert "Vanves, Ile-de-France, France" in dom and "48.85780, 2.29700" in dom and "P(within 25 km) 100.0%" in dom
    scale = re.search(r"leaflet-control-scale-line[^>]*>(\d+) km<", dom)
    assert scale and int(scale.group(1)) >= 100, scale  # country scale, not 30 km
