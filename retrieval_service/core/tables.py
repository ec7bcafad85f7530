"""CSV tables of image ids and coordinates: reading them as strings with one clear error per way a
file can be unusable, and finding their columns by name (case-insensitively, any order)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from retrieval_service.core.errors import DatasetError


def read_csv_table(path: Path, *, missing_hint: str, what: str = "CSV file") -> pd.DataFrame:
    """All cells as strings (no NaN guessing); DatasetError when the file is missing,
    empty or not a readable CSV. ``missing_hint`` says which option names the file."""
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}", missing_hint)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise DatasetError(f"{path} is empty", "the CSV needs a header row (e.g. IMG_ID,LAT,LON) and one row per image") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not a readable CSV: {exc}", "save it as UTF-8 comma-separated text") from exc


ID_COLUMNS: tuple[str, ...] = ("IMG_ID", "image_id", "id", "image", "filename")
LAT_COLUMNS: tuple[str, ...] = ("LAT", "latitude", "gps_lat")
LON_COLUMNS: tuple[str, ...] = ("LON", "longitude", "lng", "long", "gps_lon")
PATH_COLUMNS: tuple[str, ...] = ("path", "file", "image_path")


def find_column(
    columns: list[str],
    role: str,
    candidates: tuple[str, ...],
    *,
    wanted: str | None = None,
    flag: str | None = None,
    source: str | Path = "the CSV",
) -> str:
    """The column holding ``role``: ``wanted`` when given, else the first of ``candidates``; names are
    compared case-insensitively and without surrounding blanks. DatasetError names the columns found
    and the option (``flag``) that picks another."""
    by_lower = {c.strip().lower(): c for c in columns}
    flag = flag or f"--{role}-col"
    if wanted:
        found = by_lower.get(wanted.strip().lower())
        if found is None:
            raise DatasetError(
                f"{source}: no column named {wanted!r} for the {role} (columns: {', '.join(columns)})",
                f"pass {flag} with one of the CSV's column names",
            )
        return found
    for name in candidates:
        if name.lower() in by_lower:
            return by_lower[name.lower()]
    raise DatasetError(
        f"{source}: no {role} column found (looked for {', '.join(candidates)}; columns: {', '.join(columns)})",
        f"pass {flag} with the name of the CSV column that holds the {role}",
    )


def has_column(columns: list[str], candidates: tuple[str, ...]) -> bool:
    """Whether any of ``candidates`` is a column (case-insensitively)."""
    lower = {c.strip().lower() for c in columns}
    return any(name.lower() in lower for name in candidates)
