"""Clustering re-rank on known synthetic layouts (real DBSCAN, no mocks)."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval_service.core.errors import GeoAgentError
from retrieval_service.core.geo import distances_km as great_circle_km
from retrieval_service.core.geo import spherical_mean
from retrieval_service.core.types import Candidate
from retrieval_service.evidence.clustering import cluster_points


def _around(lat: float, lon: float, n: int, spread: float, score: float, seed: int) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        la = float(np.clip(lat + rng.normal(0, spread), -90, 90))
        lo = float((lon + rng.normal(0, spread) + 180) % 360 - 180)
        out.append(Candidate(lat=la, lon=lo, score=score))
    return out


def test_two_cities_and_an_outlier():
    paris = _around(48.8566, 2.3522, 6, 0.05, 0.30, seed=1)
    tokyo = _around(35.6762, 139.6503, 4, 0.05, 0.25, seed=2)
    outlier = [Candidate(lat=-33.9, lon=18.4, score=0.9)]  # Cape Town, high score but alone
    res = cluster_points(paris + tokyo + outlier, eps_km=50, min_samples=2)
    assert len(res.clusters) == 2
    best, second = res.clusters
    assert best.support == 6 and second.support == 4
    assert great_circle_km(48.8566, 2.3522, np.array([best.lat]), np.array([best.lon]))[0] < 10
    assert great_circle_km(35.6762, 139.6503, np.array([second.lat]), np.array([second.lon]))[0] < 10
    assert best.score_mass == pytest.approx(1.8)
    assert 0 < best.radius_km < 50
    assert res.noise == 1
    assert res.best_support == 6
    # re-ranked by distance to the Paris centre: Paris points first, the outlier is not last but
    # the farthest (Tokyo ~9700 km, Cape Town ~9300 km): Tokyo points come last
    pts = paris + tokyo + outlier
    assert all(abs(pts[i].lat - 48.86) < 1 for i in res.reranked[:6])
    assert [res.distance_km[i] for i in res.reranked] == sorted(res.distance_km)


def test_cluster_across_the_antimeridian():
    pts = [
        Candidate(lat=-17.8, lon=179.9, score=0.5),
        Candidate(lat=-17.8, lon=-179.9, score=0.5),
        Candidate(lat=-17.7, lon=179.95, score=0.5),
        Candidate(lat=10.0, lon=0.0, score=0.5),
    ]
    res = cluster_points(pts, eps_km=50, min_samples=2)
    assert len(res.clusters) == 1
    c = res.clusters[0]
    assert c.support == 3
    assert abs(abs(c.lon) - 180) < 0.2, c.lon  # a naive mean of lons would give ~60
    assert c.radius_km < 20


def test_cluster_near_the_north_pole():
    pts = [Candidate(lat=89.9, lon=lon, score=1.0) for lon in (0, 90, 180, -90)]
    res = cluster_points(pts, eps_km=50, min_samples=2)
    assert len(res.clusters) == 1
    assert res.clusters[0].lat > 89.99
    assert res.clusters[0].radius_km == pytest.approx(11.1, abs=0.2)


def test_no_cluster_gives_the_heaviest_candidate_not_a_centroid():
    """Four scattered candidates (Paris, Tokyo, New York, Sydney): the answer is the most probable
    candidate, not their centroid (which lies in Siberia, near none of them)."""
    pts = [
        Candidate(lat=48.86, lon=2.35, score=0.30),
        Candidate(lat=35.68, lon=139.65, score=0.35),
        Candidate(lat=40.71, lon=-74.0, score=0.25),
        Candidate(lat=-33.87, lon=151.21, score=0.28),
    ]
    res = cluster_points(pts, eps_km=50, min_samples=2)
    assert res.clusters == [] and res.best_support == 0 and res.noise == 4
    assert (res.best.lat, res.best.lon) == (35.68, 139.65)
    assert pts[res.reranked[0]].lon == 139.65


@pytest.mark.parametrize("weighting", ["none", "score"])
def test_clusters_are_ordered_by_weight_not_raw_score_mass(weighting):
    """Scores <= 0 (dissimilarities): a 5-point cluster outranks a 2-point one; raw score sums said otherwise."""
    five = [Candidate(lat=10, lon=10 + 0.01 * i, score=-0.20) for i in range(5)]
    two = [Candidate(lat=-20, lon=-40 + 0.01 * i, score=-0.19) for i in range(2)]
    res = cluster_points(two + five, eps_km=50, min_samples=2, weighting=weighting)
    assert [c.support for c in res.clusters] == [5, 2]
    assert res.best_support == 5


def test_sources_are_weighted_on_their_own_scales():
    """Three gallery points agreeing on Rome (cosines ~0.3) and two database photos in Madrid
    (cosines ~0.9): pooled on one scale Rome became noise; each source on its own scale, both cluster."""
    rome = [Candidate(lat=41.90 + 0.01 * i, lon=12.50, score=0.30, source="gallery") for i in range(3)]
    madrid = [Candidate(lat=40.42 + 0.01 * i, lon=-3.70, score=0.90, source="database") for i in range(2)]
    res = cluster_points(rome + madrid, eps_km=50, min_samples=2, weighting="score")
    supports = {round(c.lat): c.support for c in res.clusters}
    assert supports == {42: 3, 40: 2}
    assert res.noise == 0


def test_similarity_weights_decide_core_points_in_the_weighted_variant():
    # two near points with tiny scores next to a far, strong pair: weights (mean 1) matter
    pts = [
        Candidate(lat=0, lon=0, score=0.05),
        Candidate(lat=0, lon=0.1, score=0.05),
        Candidate(lat=40, lon=40, score=0.9),
        Candidate(lat=40, lon=40.1, score=0.9),
    ]
    res = cluster_points(pts, eps_km=50, min_samples=2, weighting="score")
    assert len(res.clusters) == 1 and res.clusters[0].lat == pytest.approx(40, abs=0.01)
    # DualGeo's DBSCAN is unweighted: both pairs are clusters; the tie on members goes to the larger summed score
    res = cluster_points(pts, eps_km=50, min_samples=2)
    assert [c.support for c in res.clusters] == [2, 2] and res.clusters[0].lat == pytest.approx(40, abs=0.01)


PARIS_A, PARIS_B = (48.8566, 2.3522), (48.8606, 2.3376)


def test_dualgeo_reranks_as_published():
    """The issue's example: two Paris candidates at 0.2 and three scattered ones at 0.9. The
    score-weighted DBSCAN found no cluster and answered 10.0, 10.0; DualGeo's unweighted DBSCAN
    labels them [0 0 -1 -1 -1] and answers the REAL Paris candidate nearest the cluster's mean."""
    from sklearn.cluster import DBSCAN

    pts = [
        Candidate(lat=PARIS_A[0], lon=PARIS_A[1], score=0.2),
        Candidate(lat=PARIS_B[0], lon=PARIS_B[1], score=0.2),
        Candidate(lat=10.0, lon=10.0, score=0.9),
        Candidate(lat=-30.0, lon=60.0, score=0.9),
        Candidate(lat=40.0, lon=-100.0, score=0.9),
    ]
    labels = DBSCAN(eps=50 / 6371.0088, min_samples=2, metric="haversine").fit_predict(np.radians([[p.lat, p.lon] for p in pts]))
    assert labels.tolist() == [0, 0, -1, -1, -1]  # DualGeo's clustering of these points
    weighted = cluster_points(pts, weighting="score")
    assert weighted.clusters == [] and (weighted.best.lat, weighted.best.lon) == (10.0, 10.0)
    res = cluster_points(pts)  # the default: DualGeo's rule
    assert res.weighting == "none" and len(res.clusters) == 1 and res.noise == 3
    main = res.clusters[0]
    assert main.members == [0, 1] and main.support == 2
    assert res.best_index in (0, 1)
    real = pts[res.best_index]
    assert (res.best.lat, res.best.lon) == (real.lat, real.lon)  # a real candidate, not the synthetic centre
    assert (main.lat, main.lon) != (real.lat, real.lon)
    other = pts[1 - res.best_index]
    assert (
        great_circle_km(main.lat, main.lon, np.array([real.lat]), np.array([real.lon]))[0]
        <= great_circle_km(main.lat, main.lon, np.array([other.lat]), np.array([other.lon]))[0]
    )
    assert res.reranked[:2] == sorted([0, 1], key=lambda i: i != res.best_index)  # the main cluster first


def test_main_cluster_is_the_one_with_most_members_not_the_highest_scores():
    """Three photos in Lyon at 0.6 against two in Rome at 0.95: DualGeo takes the most members."""
    lyon = [Candidate(lat=45.76 + 0.01 * i, lon=4.84, score=0.6, source="database") for i in range(3)]
    rome = [Candidate(lat=41.90 + 0.01 * i, lon=12.50, score=0.95, source="database") for i in range(2)]
    res = cluster_points(rome + lyon)
    assert res.clusters[0].support == 3 and round(res.best.lat) == 46
    assert [c.source for c in res.reranked_candidates()[:3]] == ["database"] * 3
    assert all(round(c.lat) == 46 for c in res.reranked_candidates()[:3])
    assert res.main_members() == lyon


def test_the_tool_takes_the_weighting_from_the_argument_or_the_setting(tiny_settings):
    from tools import Services, make_tools

    pts = [
        {"lat": PARIS_A[0], "lon": PARIS_A[1], "score": 0.2},
        {"lat": PARIS_B[0], "lon": PARIS_B[1], "score": 0.2},
        {"lat": 10.0, "lon": 10.0, "score": 0.9},
        {"lat": -30.0, "lon": 60.0, "score": 0.9},
    ]
    tool = {t.name: t for t in make_tools(Services(tiny_settings))}["cluster_candidates"]
    out = tool.invoke({"candidates": pts})
    assert out["weighting"] == "none" and len(out["clusters"]) == 1 and out["best"]["support"] == 2
    assert (out["best"]["lat"], out["best"]["lon"]) in (PARIS_A, PARIS_B)
    assert tool.invoke({"candidates": pts, "weighting": "score"})["clusters"] == []
    scored = Services(tiny_settings.model_copy(update={"cluster_weighting": "score"}))
    tool = {t.name: t for t in make_tools(scored)}["cluster_candidates"]
    assert tool.invoke({"candidates": pts})["weighting"] == "score"
    assert "error" in tool.invoke({"candidates": pts, "weighting": "heavy"})


def test_spherical_mean_of_antipodes_falls_back_to_heaviest():
    lat, lon = spherical_mean(np.array([0.0, 0.0]), np.array([0.0, 180.0]), np.array([1.0, 1.0 + 1e-12]))
    assert (lat, lon) in ((0.0, 0.0), (0.0, 180.0))


@pytest.mark.parametrize("kwargs", [{"eps_km": 0}, {"min_samples": 0}])
def test_bad_parameters(kwargs):
    with pytest.raises(GeoAgentError):
        cluster_points([Candidate(lat=0, lon=0)], **kwargs)


def test_empty_and_nan():
    with pytest.raises(GeoAgentError, match="no candidates"):
        cluster_points([])
    with pytest.raises(GeoAgentError, match="finite"):
        cluster_points([Candidate(lat=0, lon=0, score=float("nan"))])
