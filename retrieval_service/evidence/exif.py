"""EXIF metadata of a photo: GPS position (decimal degrees), altitude, capture time, camera."""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import exifread
from pydantic import BaseModel

from retrieval_service.core.media import check_image_file, image_format, local_image_path

logger = logging.getLogger(__name__)


class GpsFix(BaseModel):
    lat: float
    lon: float
    altitude_m: float | None = None


class ExifInfo(BaseModel):
    gps: GpsFix | None = None
    datetime: str | None = None
    camera: str | None = None


def _ratio(value: Any) -> float:
    num, den = getattr(value, "num", None), getattr(value, "den", None)
    if num is not None and den is not None:
        if den == 0:
            raise ValueError("zero denominator")
        return float(num) / float(den)
    return float(value)


def _dms(tag: Any) -> float:
    values = list(tag.values)
    if not values:
        raise ValueError("empty GPS coordinate")
    parts = [_ratio(v) for v in values[:3]] + [0.0] * (3 - min(len(values), 3))
    return parts[0] + parts[1] / 60.0 + parts[2] / 3600.0


def _text(tags: dict[str, Any], key: str) -> str | None:
    tag = tags.get(key)
    if tag is None:
        return None
    text = str(tag.printable if hasattr(tag, "printable") else tag).strip().strip("\x00").strip()
    return text or None


def _gps(tags: dict[str, Any]) -> GpsFix | None:
    if "GPS GPSLatitude" not in tags or "GPS GPSLongitude" not in tags:
        return None
    try:
        lat = _dms(tags["GPS GPSLatitude"])
        lon = _dms(tags["GPS GPSLongitude"])
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        logger.info("unreadable GPS coordinates in EXIF: %s", exc)
        return None
    if (_text(tags, "GPS GPSLatitudeRef") or "N").upper().startswith("S"):
        lat = -lat
    if (_text(tags, "GPS GPSLongitudeRef") or "E").upper().startswith("W"):
        lon = -lon
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
        logger.info("ignoring implausible EXIF GPS (%s, %s)", lat, lon)
        return None
    altitude = None
    if "GPS GPSAltitude" in tags:
        try:
            altitude = _ratio(tags["GPS GPSAltitude"].values[0])
            ref = tags.get("GPS GPSAltitudeRef")
            if ref is not None and list(ref.values)[:1] == [1]:
                altitude = -altitude
        except (ValueError, TypeError, ZeroDivisionError, IndexError):
            altitude = None
    return GpsFix(lat=lat, lon=lon, altitude_m=altitude)


def read_exif(src: str | os.PathLike[str] | bytes) -> ExifInfo:
    """Read EXIF from an image file or its bytes.

    Raises ImageLoadError when the file is missing or is not an image.
    """
    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
        image_format(data, "the image bytes")
    else:
        path = local_image_path(os.fspath(src))
        check_image_file(path)
        data = path.read_bytes()
    tags = exifread.process_file(io.BytesIO(data), details=False)
    camera = " ".join(p for p in (_text(tags, "Image Make"), _text(tags, "Image Model")) if p) or None
    when = _text(tags, "EXIF DateTimeOriginal") or _text(tags, "Image DateTime")
    return ExifInfo(gps=_gps(tags), datetime=when, camera=camera)
