"""Country codes for coordinates, offline (GeoNames cities via ``reverse_geocoder``, mode=1).

Country accuracy compares the country of the prediction with the country of the ground truth,
both found the same way, so the nearest-populated-place approximation cancels out.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import reverse_geocoder

_lock = threading.Lock()


def country_codes(coords: Sequence[tuple[float, float]]) -> list[str | None]:
    """ISO 3166-1 alpha-2 code of the nearest GeoNames place for each (lat, lon), in one batch.

    Uses single-process mode (mode=1) so that it is safe inside threads and under pytest.
    """
    if not coords:
        return []
    with _lock:
        found = reverse_geocoder.search([(float(a), float(b)) for a, b in coords], mode=1, verbose=False)
    return [(row.get("cc") or None) for row in found]


def country_code(lat: float, lon: float) -> str | None:
    """Country code of one point (see ``country_codes``)."""
    return country_codes([(lat, lon)])[0]
