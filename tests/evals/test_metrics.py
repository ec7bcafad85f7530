import math

import pytest

from evals.metrics import THRESHOLDS_KM, accuracy, bootstrap_ci, distance_km, geoscore, hits

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)


def test_paris_london_geodesic():
    assert distance_km(*PARIS, *LONDON) == pytest.approx(343.5, abs=1.0)
    assert distance_km(*PARIS, *PARIS) == 0.0


def test_geodesic_is_ellipsoidal_not_spherical():
    # one degree of latitude at the equator is 110.57 km on WGS-84 (111.19 on a sphere)
    assert distance_km(0, 0, 1, 0) == pytest.approx(110.57, abs=0.02)
    # antipodes across the date line
    assert distance_km(0, 179.5, 0, -179.5) == pytest.approx(111.32, abs=0.05)


def test_geoscore():
    assert geoscore(0.0) == 5000.0
    assert geoscore(1492.7) == pytest.approx(5000 / math.e)
    assert geoscore(None) == 0.0


def test_threshold_edges_count_as_hits_like_geoclip():
    """GeoCLIP's reference evaluation counts an error equal to the threshold as a hit (<=)."""
    assert hits(25.0)["25"] is True
    assert hits(25.001)["25"] is False
    assert hits(24.999)["25"] is True
    assert hits(0.0) == {str(t): True for t in THRESHOLDS_KM}
    assert hits(None) == {str(t): False for t in THRESHOLDS_KM}
    acc = accuracy([25.0, 1.0, 0.5, 2500.0])
    assert acc == {"1": 0.5, "25": 0.75, "200": 0.75, "750": 0.75, "2500": 1.0}


def test_failures_count_as_misses():
    acc = accuracy([0.1, None, None, None])
    assert acc["2500"] == 0.25
    assert accuracy([]) == {str(t): 0.0 for t in THRESHOLDS_KM}


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    d = [float(i) for i in range(100)]
    ci = bootstrap_ci(d, seed=3)
    assert ci == bootstrap_ci(d, seed=3)
    lo, hi = ci["25"]
    assert lo < 0.25 < hi and lo > 0.1 and hi < 0.4
    assert bootstrap_ci([0.0] * 10)["1"] == (1.0, 1.0)


def test_land_grid_is_land_not_ocean():
    import numpy as np

    from evals.plots import land_grid

    lons, lats, land = land_grid()

    def at(lat, lon):
        return bool(land[np.abs(lats - lat).argmin(), np.abs(lons - lon).argmin()])

    assert at(48.85, 2.35) and at(-25.0, 134.0)  # Paris, central Australia
    assert not at(0.0, -30.0) and not at(-40.0, -120.0)  # Atlantic, Pacific
    assert 0.2 < land.mean() < 0.4
