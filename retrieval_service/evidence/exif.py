"""EXIF metadata of a photo: GPS position (decimal degrees), altitude, capture time, camera."""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import exifread
from pydantic import BaseModel

from retrieval_service.core.media import decode_bytes, inspect_image, local_file
from retrieval_service.core.media_settings import DEFAULT_LIMITS, MediaLimits
from retrieval_service.core.types import Location

logger = logging.getLogger(__name__)
if logging.getLogger("exifread").level == logging.NOTSET:
    # exifread warns on every photo without EXIF ("File format not recognized"): normal here, not news
    logging.getLogger("exifread").setLevel(logging.ERROR)


class GpsFix(Location):
    """The GPS position the camera recorded."""

    altitude_m: float | None = None


class ExifInfo(BaseModel):
    gps: GpsFix | None = None
    datetime: str | None = None
    camera: str | None = None
    gps_problem: str | None = None  # why GPS found in the EXIF was not used (out of range, unreadable)


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


def _gps(tags: dict[str, Any]) -> GpsFix | str | None:
    """The GPS fix, None when there is none, or the reason why the one there cannot be used."""
    if "GPS GPSLatitude" not in tags or "GPS GPSLongitude" not in tags:
        return None
    try:
        lat = _dms(tags["GPS GPSLatitude"])
        lon = _dms(tags["GPS GPSLongitude"])
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        logger.info("unreadable GPS coordinates in EXIF: %s", exc)
        return f"the EXIF GPS coordinates are unreadable ({exc}); ignored"
    if (_text(tags, "GPS GPSLatitudeRef") or "N").upper().startswith("S"):
        lat = -lat
    if (_text(tags, "GPS GPSLongitudeRef") or "E").upper().startswith("W"):
        lon = -lon
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        logger.warning("ignoring EXIF GPS out of range (%s, %s)", lat, lon)
        return f"the EXIF GPS ({lat:.4f}, {lon:.4f}) is out of range (latitude -90..90, longitude -180..180); ignored"
    if lat == 0 and lon == 0:
        return "the EXIF GPS is 0, 0 (a camera without a fix writes that); ignored"
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


def read_exif(src: str | os.PathLike[str] | bytes, limits: MediaLimits = DEFAULT_LIMITS) -> ExifInfo:
    """Read EXIF from an image file or its bytes.

    Raises ImageLoadError when the file is missing or is not an image (checked like every photo).
    """
    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
        decode_bytes(data, "the image bytes", limits)
    else:
        path = local_file(src)
        inspect_image(path, limits)
        data = path.read_bytes()
    try:
        tags = exifread.process_file(io.BytesIO(data), details=False)
    except Exception as exc:  # a malformed EXIF block is no EXIF, not a failed photo
        logger.info("unreadable EXIF: %s", exc)
        tags = {}
    camera = " ".join(p for p in (_text(tags, "Image Make"), _text(tags, "Image Model")) if p) or None
    when = _text(tags, "EXIF DateTimeOriginal") or _text(tags, "Image DateTime")
    gps = _gps(tags)
    if isinstance(gps, str):
        return ExifInfo(gps=None, datetime=when, camera=camera, gps_problem=gps)
    return ExifInfo(gps=gps, datetime=when, camera=camera)
