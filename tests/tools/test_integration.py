"""retrieve + verify_locations with the real Retriever: tiny random open_clip model (plumbing) and the
real GeoCLIP gallery, built once per pytest cache (the `gallery_settings` fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tools.conftest import shot
from tools import Services, make_tools


@pytest.mark.slow
def test_retrieve_and_verify_with_the_real_retriever(gallery_settings, dev_photo: Path):
    by_name = {t.name: t for t in make_tools(Services(gallery_settings))}

    res = by_name["retrieve"].invoke({**shot(dev_photo), "k": 3})
    assert "error" not in res, res
    json.dumps(res)
    assert len(res["gallery"]) == 3
    assert all(-90 <= c["lat"] <= 90 and -180 <= c["lon"] <= 180 for c in res["gallery"])
    assert [c["score"] for c in res["gallery"]] == sorted((c["score"] for c in res["gallery"]), reverse=True)
    assert res["database"] == [] and res["filter"] is None

    zoom = by_name["retrieve"].invoke({**shot(dev_photo), "k": 3, "lat": 48.85, "lon": 2.35, "radius_km": 300})
    assert "error" not in zoom, zoom
    assert zoom["filter"]["radius_km"] == 300

    cands = [{"lat": c["lat"], "lon": c["lon"]} for c in res["gallery"]] + [{"lat": -45.0, "lon": 170.0}]
    ranked = by_name["verify_locations"].invoke({**shot(dev_photo), "candidates": cands})
    assert "error" not in ranked, ranked
    scores = [c["score"] for c in ranked["ranked"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)

    clustered = by_name["cluster_candidates"].invoke({"candidates": res["gallery"]})
    assert "error" not in clustered, clustered
