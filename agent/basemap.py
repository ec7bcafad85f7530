"""The bundled offline world basemap: low-resolution land polygons as GeoJSON, shipped in
``agent/assets/world/land.geojson`` so that a map opened offline still shows the continents.

The file is made from the land mask that the MIT-licensed ``global-land-mask`` wheel ships (derived
from NOAA's public-domain GLOBE 1 km elevation data): the mask is averaged over ``step_deg`` cells,
cells more than half land become squares, and the squares are merged and simplified with shapely.
Regenerate it with ``python -m agent.basemap`` (needs ``global-land-mask``, a dependency, and
``shapely``, installed with rapidocr); at run time only the JSON file is read.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LAND_FILE = "world/land.geojson"
DEFAULT_STEP_DEG = 0.5


def asset_path(name: str) -> Path:
    """A file under ``agent/assets`` (package data)."""
    return Path(str(files("agent").joinpath("assets", name)))


@lru_cache(maxsize=1)
def land_geojson() -> dict[str, Any]:
    """The shipped land polygons (a GeoJSON FeatureCollection, coordinates as lon, lat)."""
    return json.loads(asset_path(LAND_FILE).read_text(encoding="utf-8"))


def build_land(step_deg: float = DEFAULT_STEP_DEG, tolerance_deg: float = 0.3) -> dict[str, Any]:
    """Land polygons from global-land-mask at ``step_deg`` resolution, simplified to ``tolerance_deg``."""
    import numpy as np
    from global_land_mask import globe
    from shapely.geometry import box, mapping
    from shapely.ops import unary_union

    water = globe._mask  # (21600, 43200) booleans, True on water, north up, 1/120 degree cells
    cell = round(step_deg * 120)
    rows, cols = water.shape[0] // cell, water.shape[1] // cell
    share = 1.0 - water[: rows * cell, : cols * cell].reshape(rows, cell, cols, cell).mean(axis=(1, 3))
    land = share > 0.5
    lat_top = np.linspace(90.0, -90.0, rows + 1)
    lon_left = np.linspace(-180.0, 180.0, cols + 1)
    squares = []
    for r in range(rows):  # one rectangle per run of land cells in a row
        c = 0
        while c < cols:
            if not land[r, c]:
                c += 1
                continue
            start = c
            while c < cols and land[r, c]:
                c += 1
            squares.append(box(lon_left[start], lat_top[r + 1], lon_left[c], lat_top[r]))
    merged = unary_union(squares).simplify(tolerance_deg, preserve_topology=True)
    polygons = list(getattr(merged, "geoms", [merged]))

    def rounded(geometry: Any) -> Any:
        if isinstance(geometry, (list, tuple)):
            if geometry and isinstance(geometry[0], float):
                return [round(v, 2) for v in geometry]
            return [rounded(g) for g in geometry]
        return geometry

    features = [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": rounded(mapping(p)["coordinates"])}}
        for p in polygons
        if p.area >= step_deg * step_deg
    ]
    return {
        "type": "FeatureCollection",
        "properties": {"source": "global-land-mask 1.0.0 (MIT; NOAA GLOBE, public domain)", "step_deg": step_deg},
        "features": features,
    }


def main() -> None:
    """Regenerate the shipped land file."""
    data = build_land()
    out = asset_path(LAND_FILE)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    logger.warning("wrote %s: %d polygons, %d bytes", out, len(data["features"]), out.stat().st_size)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
