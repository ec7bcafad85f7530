"""Benchmark readers: a CSV of image ids and coordinates plus a folder of images.

Layouts (columns are found by name, case-insensitively; their order is never assumed):
IM2GPS (237 photos), IM2GPS3k (``im2gps3k_places365.csv``: IMG_ID, AUTHOR, LAT, LON, scene labels),
YFCC4k (``yfcc4k_places365.csv``), YFCC26k (``yfcc25600_places365.csv``) and a generic CSV whose
id/lat/lon columns are configurable.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, Field

from retrieval_service.core.errors import DatasetError
from retrieval_service.core.tables import ID_COLUMNS, LAT_COLUMNS, LON_COLUMNS, find_column, read_csv_table
from retrieval_service.core.types import Location

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".JPG", ".JPEG", ".PNG")


class DatasetLayout(BaseModel):
    """How one benchmark's CSV names its columns, and its published size."""

    name: str
    id_columns: tuple[str, ...] = (*ID_COLUMNS, "path")
    lat_columns: tuple[str, ...] = LAT_COLUMNS
    lon_columns: tuple[str, ...] = LON_COLUMNS
    expected_size: int | None = None
    description: str = ""


LAYOUTS: dict[str, DatasetLayout] = {
    "im2gps": DatasetLayout(name="im2gps", expected_size=237, description="IM2GPS test set (Hays & Efros), 237 photos"),
    "im2gps3k": DatasetLayout(name="im2gps3k", expected_size=2997, description="IM2GPS3k, im2gps3k_places365.csv"),
    "yfcc4k": DatasetLayout(name="yfcc4k", expected_size=4536, description="YFCC4k, yfcc4k_places365.csv"),
    "yfcc26k": DatasetLayout(name="yfcc26k", expected_size=25600, description="YFCC26k, yfcc25600_places365.csv"),
    "csv": DatasetLayout(name="csv", description="any CSV: set --id-col/--lat-col/--lon-col when the names differ"),
}


class EvalItem(Location):
    """One labelled photo of a benchmark."""

    id: str
    image: Path


class InvalidRow(BaseModel):
    """A label row that cannot be evaluated (bad coordinates, empty or repeated id, an id outside
    the image folder): recorded as a failed row of the run, never a refusal of the whole run."""

    id: str
    line: int
    reason: str


class Dataset(BaseModel):
    """The rows that can be evaluated, and the rows left out because their image is missing."""

    name: str
    labels: Path
    images: Path
    items: list[EvalItem]
    missing: list[str] = Field(default_factory=list, description="ids whose image file is not in the folder")
    invalid: list[InvalidRow] = Field(default_factory=list, description="rows that cannot be evaluated, with the reason")
    columns: dict[str, str] = Field(default_factory=dict, description="role -> CSV column used (id, lat, lon)")

    def describe_missing(self, first: int = 5) -> str:
        if not self.missing:
            return "no missing images"
        shown = ", ".join(self.missing[:first])
        more = f" and {len(self.missing) - first} more" if len(self.missing) > first else ""
        return f"{len(self.missing)} image(s) missing from {self.images}: {shown}{more}"


def _image_index(images: Path) -> dict[str, Path]:
    """File name and stem -> path for every file in the folder (one directory listing)."""
    index: dict[str, Path] = {}
    for path in images.iterdir():
        if path.is_file():
            index.setdefault(path.name, path)
            if path.suffix in IMAGE_SUFFIXES:
                index.setdefault(path.stem, path)
    return index


def _confined(image_id: str) -> bool:
    """True when the id names a file inside the image folder (no absolute path, no escaping ``..``)."""
    if Path(image_id).is_absolute() or image_id.startswith("~"):
        return False
    norm = os.path.normpath(image_id)
    return norm != ".." and not norm.startswith(".." + os.sep)


def _resolve(image_id: str, images: Path, index: dict[str, Path]) -> Path | None:
    if image_id in index:
        return index[image_id]
    name = Path(image_id).name
    if name in index:
        return index[name]
    nested = images / image_id
    return nested if nested.is_file() else None


def load_dataset(
    name: str,
    labels: str | Path,
    images: str | Path,
    *,
    id_col: str | None = None,
    lat_col: str | None = None,
    lon_col: str | None = None,
) -> Dataset:
    """Read a benchmark CSV and match its rows to the images in a folder.

    Rows whose image is missing are listed in ``Dataset.missing`` (and logged), never dropped
    silently; rows with bad coordinates, an empty or repeated id, or an id pointing outside
    ``images`` are listed in ``Dataset.invalid`` with the reason (the runner records them as failed
    rows). Raises DatasetError on an unknown layout, an unreadable or empty CSV, missing columns, or
    when no row can be evaluated.
    """
    key = name.strip().lower()
    if key not in LAYOUTS:
        raise DatasetError(f"unknown dataset {name!r}", f"use one of: {', '.join(LAYOUTS)}")
    layout = LAYOUTS[key]
    labels, images = Path(labels).expanduser(), Path(images).expanduser()
    if not images.is_dir():
        raise DatasetError(f"image folder not found: {images}", "pass --images with the folder that holds the photos")
    frame = read_csv_table(labels, what="labels CSV", missing_hint="pass --labels with the path of the benchmark's CSV")
    columns = [str(c) for c in frame.columns]
    cid = find_column(columns, "id", layout.id_columns, wanted=id_col, source=labels)
    clat = find_column(columns, "lat", layout.lat_columns, wanted=lat_col, source=labels)
    clon = find_column(columns, "lon", layout.lon_columns, wanted=lon_col, source=labels)
    if frame.empty:
        raise DatasetError(f"{labels} has a header but no rows", "use a CSV with one row per image")

    ids = frame[cid].astype(str).str.strip()
    lats = pd.to_numeric(frame[clat].str.strip(), errors="coerce")
    lons = pd.to_numeric(frame[clon].str.strip(), errors="coerce")
    index = _image_index(images)
    items: list[EvalItem] = []
    missing: list[str] = []
    invalid: list[InvalidRow] = []
    seen: set[str] = set()
    for i, (image_id, lat, lon) in enumerate(zip(ids, lats, lons, strict=False)):
        line = i + 2
        reason = None
        if not image_id:
            image_id, reason = f"<line {line}>", f"empty id in column {cid}"
        elif not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            reason = (
                f"bad coordinates {frame[clat].iloc[i]!r}, {frame[clon].iloc[i]!r} in {clat}/{clon} "
                "(decimal degrees, latitude -90..90, longitude -180..180)"
            )
        elif image_id in seen:
            image_id, reason = f"{image_id} (line {line})", f"repeats the id {image_id!r} of an earlier row (the first is used)"
        elif not _confined(image_id):
            reason = f"the id {image_id!r} points outside the image folder {images}"
        if reason is not None:
            invalid.append(InvalidRow(id=image_id, line=line, reason=reason))
            continue
        seen.add(image_id)
        path = _resolve(image_id, images, index)
        if path is None:
            missing.append(image_id)
        else:
            items.append(EvalItem(id=image_id, lat=float(lat), lon=float(lon), image=path))
    if invalid:
        shown = "; ".join(f"line {r.line} ({r.id}): {r.reason}" for r in invalid[:5])
        log.warning("%s: %d bad row(s), recorded as failed rows of the run: %s", labels, len(invalid), shown)
    dataset = Dataset(
        name=layout.name,
        labels=labels,
        images=images,
        items=items,
        missing=missing,
        invalid=invalid,
        columns={"id": cid, "lat": clat, "lon": clon},
    )
    if missing:
        log.warning("%s; they are excluded from the run", dataset.describe_missing())
    if not items:
        bad = f"; {len(invalid)} bad row(s), e.g. line {invalid[0].line}: {invalid[0].reason}" if invalid else ""
        raise DatasetError(
            f"none of the {len(frame)} ids in {labels} has an image in {images} ({dataset.describe_missing()}{bad})",
            "point --images at the folder holding the benchmark photos (file names = the id column)",
        )
    if layout.expected_size and len(frame) != layout.expected_size:
        log.info("%s has %d rows; the published %s has %d", labels, len(frame), layout.name, layout.expected_size)
    return dataset
