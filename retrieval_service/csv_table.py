"""Read a CSV of image ids and coordinates as strings, with one clear error per way it can be unusable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from retrieval_service.errors import DatasetError


def read_csv_table(path: Path, *, missing_hint: str, what: str = "CSV file") -> pd.DataFrame:
    """All cells as strings (no NaN guessing); DatasetError when the file is missing,
    empty or not a readable CSV. ``missing_hint`` says which option names the file."""
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}", missing_hint)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise DatasetError(
            f"{path} is empty", "the CSV needs a header row (e.g. IMG_ID,LAT,LON) and one row per image"
        ) from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not a readable CSV: {exc}", "save it as UTF-8 comma-separated text") from exc
