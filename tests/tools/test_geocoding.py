"""Offline reverse geocoding with GeoNames (never Nominatim in tests)."""

from __future__ import annotations

import pytest

from retrieval_service.core.errors import GeoAgentError
from retrieval_service.evidence.geocoding import REMOTE_KM, ReverseGeocoder, country_name


@pytest.fixture(scope="module")
def geocoder() -> ReverseGeocoder:
    return ReverseGeocoder()


def test_eiffel_tower_is_in_paris_area(geocoder):
    info = geocoder.lookup(48.8584, 2.2945)
    assert info.country_code == "FR" and info.country == "France"
    assert info.region == "Ile-de-France" and info.city and info.town.lat
    assert 0 < info.distance_km < 10
    assert info.remote is False


def test_mid_atlantic_is_remote(geocoder):
    info = geocoder.lookup(30.0, -40.0)
    assert info.distance_km > 300
    assert info.remote is True and info.distance_km > REMOTE_KM


def test_out_of_range(geocoder):
    with pytest.raises(GeoAgentError, match="out of range"):
        geocoder.lookup(91, 0)


def test_country_names():
    assert country_name("de") == "Germany"
    assert country_name("XK") == "Kosovo"
    assert country_name("ZZ") == "ZZ"


def test_nominatim_is_off_by_default(tool_settings):
    assert ReverseGeocoder(tool_settings).use_nominatim is False


def test_nominatim_enrichment_when_enabled(tool_settings):
    """The online path with the network call replaced: result used, cached, failures tolerated."""
    calls = []

    class Location:
        address = "Champ de Mars, Paris, France"

    def fake_reverse(point, **kwargs):
        calls.append((point, kwargs))
        if point[0] < 0:
            raise TimeoutError("service timed out")
        return Location()

    geocoder = ReverseGeocoder(tool_settings.model_copy(update={"nominatim": True}))
    geocoder._nominatim = fake_reverse
    assert geocoder.lookup(48.8584, 2.2945).address == "Champ de Mars, Paris, France"
    assert geocoder.lookup(48.8584, 2.2945).address == "Champ de Mars, Paris, France"
    assert len(calls) == 1 and calls[0][1]["language"] == "en"
    southern = geocoder.lookup(-33.86, 151.21)
    assert southern.address is None and southern.country_code == "AU"
