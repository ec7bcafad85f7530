"""The run file ``predictions.jsonl``: one JSON object per image, crash-safe and resumable.

Each row is appended with a single write to an O_APPEND descriptor, then flushed and fsynced, so a
``kill -9`` can at worst leave one torn last line. Reading ignores (and repairing truncates) a torn
last line, and keeps the first row of an id if an id ever appears twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from retrieval_service.core.errors import DatasetError

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a run file, deduplicated by id (first kept), torn last line ignored.

    A malformed line other than the last means the file was edited by hand: DatasetError.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        is_last = number == len(lines) or (number == len(lines) - 1 and not lines[-1])
        try:
            row = json.loads(raw)
            if not isinstance(row, dict) or "id" not in row:
                raise ValueError("not an object with an id")
        except ValueError as exc:
            if is_last and not data.endswith(b"\n"):
                log.warning("%s: ignoring a torn last line (the run was interrupted mid-write)", path)
                break
            raise DatasetError(
                f"{path}: line {number} is not a JSON row ({exc})",
                "the run file was edited or corrupted; delete that line or start a new --out directory",
            ) from exc
        if row["id"] in seen:
            log.warning("%s: duplicate row for id %s ignored", path, row["id"])
            continue
        seen.add(row["id"])
        rows.append(row)
    return rows


def repair(path: Path) -> None:
    """Cut a torn last line (no trailing newline) off the file so that appends start clean."""
    if not path.exists():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as fh:
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("%s: removed a torn last line of %d bytes", path, len(data) - keep)


def rewrite(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace the file with exactly these rows, atomically (temp file + fsync + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        for row in rows:
            fh.write(encode(row))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def encode(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False, default=str, allow_nan=False) + "\n").encode("utf-8")


class RowWriter:
    """Appends rows durably (one write + fsync per row). Use from a single thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, row: dict[str, Any]) -> None:
        data = encode(row)
        written = os.write(self._fd, data)
        if written != len(data):  # pragma: no cover - a full disk
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
