"""``index build``: ingest a CSV of images + coordinates into the image-database collection.

Batched and pipelined (threads decode the next batch while one is encoded; upserts run in the
background, several at a time), resumable (ids already stored are skipped), unreadable images logged
and counted, rows that repeat an earlier id counted. ``upsert_vectors`` bulk-loads vectors computed
elsewhere the same way. Each point's payload is ``id``, ``path``, ``location``, ``country_code``
(from the coordinates) and ``extra``: the CSV's other columns, by name.
Column names are configurable; the MP-16 layout (``IMG_ID``/``LAT``/``LON``, also lower-case
``id``/``lat``/``lon`` and ``latitude``/``longitude``) and the IM2GPS3k layout
(``IMG_ID,AUTHOR,LAT,LON``) are recognised without flags.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import BaseModel

from retrieval_service.core.errors import DatasetError, ImageLoadError
from retrieval_service.core.tables import (
    ID_COLUMNS,
    LAT_COLUMNS,
    LON_COLUMNS,
    PATH_COLUMNS,
    find_column,
    has_column,
    read_csv_table,
)

if TYPE_CHECKING:
    from retrieval_service.retrieval.stores import PointId, VectorStore

logger = logging.getLogger(__name__)

RESERVED_COLUMNS = ("id", "path", "location")
"""Names of payload keys an extra CSV column may not take (ambiguous with the image's own id, path, location)."""


class IngestReport(BaseModel):
    """What an ingestion did."""

    collection: str
    rows: int
    added: int
    skipped_existing: int
    unreadable: int
    bad_rows: int
    duplicates: int = 0
    total_in_collection: int


def read_rows(
    csv_path: Path,
    *,
    id_col: str | None = None,
    lat_col: str | None = None,
    lon_col: str | None = None,
    path_col: str | None = None,
) -> tuple[pd.DataFrame, int]:
    """Read and validate the CSV; return a frame with columns id, lat, lon, path, ``extra:<column>``
    for the other columns, and the bad-row count. Rows repeating an earlier id are dropped and
    counted in ``frame.attrs["duplicates"]``. DatasetError for an extra column with a reserved name."""
    frame = read_csv_table(csv_path, missing_hint="pass an existing CSV of image ids/paths and coordinates")
    columns = list(frame.columns)
    where = str(csv_path)
    lat = find_column(columns, "latitude", LAT_COLUMNS, wanted=lat_col, flag="--lat-col", source=where)
    lon = find_column(columns, "longitude", LON_COLUMNS, wanted=lon_col, flag="--lon-col", source=where)
    path = None
    if path_col or has_column(columns, PATH_COLUMNS):
        path = find_column(columns, "image path", PATH_COLUMNS, wanted=path_col, flag="--path-col", source=where)
    if id_col or path is None:
        ident = find_column(columns, "image id", ID_COLUMNS, wanted=id_col, flag="--id-col", source=where)
    else:
        ident = find_column(columns, "image id", ID_COLUMNS, source=where) if has_column(columns, ID_COLUMNS) else path
    if frame.empty:
        raise DatasetError(f"{csv_path} has a header ({columns}) but no rows", "add one row per image")
    out = pd.DataFrame(
        {
            "id": frame[ident].astype(str).str.strip(),
            "lat": pd.to_numeric(frame[lat], errors="coerce"),
            "lon": pd.to_numeric(frame[lon], errors="coerce"),
            "path": frame[path if path else ident].astype(str).str.strip(),
        }
    )
    extra = [c for c in columns if c not in {ident, lat, lon, path}]
    clashing = [c for c in extra if c.strip().lower() in RESERVED_COLUMNS]
    if clashing:
        raise DatasetError(
            f"{csv_path}: column(s) {', '.join(map(repr, clashing))} would take a reserved payload name "
            f"({', '.join(RESERVED_COLUMNS)}) besides the id column {ident!r}" + (f" and path column {path!r}" if path else ""),
            "rename the column, or choose it as the image id/path with --id-col / --path-col",
        )
    for col in extra:
        out[f"extra:{col}"] = frame[col]
    ok = out["lat"].between(-90, 90) & out["lon"].between(-180, 180) & (out["id"] != "")
    bad = int((~ok).sum())
    if bad:
        logger.warning("%d rows of %s have missing or out-of-range coordinates or ids; skipped", bad, csv_path)
    out = out[ok]
    repeated = out["id"].duplicated()
    duplicates = int(repeated.sum())
    if duplicates:
        logger.warning(
            "%d rows of %s repeat an earlier image id (%s); the first row of each id is kept",
            duplicates,
            csv_path,
            ", ".join(out.loc[repeated, "id"].head(5)),
        )
    out = out[~repeated]
    if out.empty:
        raise DatasetError(
            f"no row of {csv_path} has valid coordinates in {lat!r}/{lon!r}", "check the columns hold decimal degrees"
        )
    out = out.reset_index(drop=True)
    out.attrs["duplicates"] = duplicates
    return out, bad


@contextlib.contextmanager
def parallel_upserts(
    store: VectorStore, name: str, parallel: int = 2
) -> Iterator[Callable[[Sequence[PointId], np.ndarray, Sequence[dict[str, Any]]], None]]:
    """A ``submit(ids, vectors, payloads)`` that upserts in ``parallel`` background requests while the
    caller prepares the next batch (at most ``2 * parallel`` batches wait; an upsert's error is raised
    by a later ``submit`` or on leaving the block, after the batches already sent have finished)."""
    pending: deque[Future[None]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="upsert") as pool:

        def submit(ids: Sequence[PointId], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
            while len(pending) >= 2 * max(1, parallel):
                pending.popleft().result()
            pending.append(pool.submit(store.upsert, name, list(ids), vectors, list(payloads)))

        try:
            yield submit
        finally:
            errors = [f.exception() for f in pending]
        for error in errors:
            if error is not None:
                raise error


def upsert_vectors(
    store: VectorStore,
    name: str,
    ids: Sequence[PointId],
    vectors: np.ndarray,
    payloads: Callable[[int, int], list[dict[str, Any]]],
    *,
    batch_size: int = 1024,
    parallel: int = 2,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Bulk-load precomputed ``vectors`` into an existing collection in batches, ``parallel`` upserts
    at a time; ``payloads(start, stop)`` gives the payloads of rows start..stop. Resumable: points
    whose id is already stored are skipped. Returns (added, skipped)."""
    added = skipped = 0
    with parallel_upserts(store, name, parallel) as submit:
        for start in range(0, len(ids), batch_size):
            stop = min(start + batch_size, len(ids))
            chunk = list(ids[start:stop])
            present = store.existing_ids(name, chunk)
            keep = [i for i, pid in enumerate(chunk) if pid not in present]
            skipped += len(chunk) - len(keep)
            if keep:
                rows = payloads(start, stop)
                submit([chunk[i] for i in keep], vectors[start:stop][keep], [rows[i] for i in keep])
                added += len(keep)
            if progress:
                progress(stop - start)
    return added, skipped


def _decode(path: Path, limits: Any) -> Image.Image | ImageLoadError:
    from retrieval_service.core.media import decode_image

    try:
        return decode_image(path, limits)  # a dataset file: checked and decoded
    except ImageLoadError as exc:
        return exc


def ingest_csv(
    retriever: Any,
    csv_path: Path,
    images_dir: Path,
    *,
    collection: str | None = None,
    batch_size: int | None = None,
    id_col: str | None = None,
    lat_col: str | None = None,
    lon_col: str | None = None,
    path_col: str | None = None,
    workers: int | None = None,
    parallel: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Embed every image listed in ``csv_path`` (relative paths under ``images_dir``) into ``collection``.

    ``retriever`` is a ``Retriever`` (its image encoder and store are used). The collection is created
    with the database layout of the settings (int8 quantization, originals on disk, HNSW parameters).
    ``workers`` threads decode the next batch's images while the current one is encoded, and
    ``parallel`` upserts run in the background. ``progress(n)`` is called with the number of rows
    handled after each batch.
    """
    from retrieval_service.core.geo import country_codes
    from retrieval_service.retrieval.stores import database_params, point_id

    if not images_dir.is_dir():
        raise DatasetError(f"images folder not found: {images_dir}", "pass the folder holding the images with --images")
    frame, bad = read_rows(Path(csv_path), id_col=id_col, lat_col=lat_col, lon_col=lon_col, path_col=path_col)
    extra_cols = [c for c in frame.columns if c.startswith("extra:")]
    settings = retriever.settings
    name = collection or settings.database_collection
    batch = batch_size or settings.batch_size
    store = retriever.store
    added = skipped = unreadable = 0
    with store.write_lock(name):
        store.create_collection(name, retriever.image_dim, database_params(settings))
        with (
            ThreadPoolExecutor(max_workers=max(1, workers or settings.index_workers), thread_name_prefix="decode") as pool,
            parallel_upserts(store, name, parallel or settings.index_upserts) as submit,
        ):

            def read(start: int) -> tuple[pd.DataFrame, list[PointId], list[tuple[PointId, dict, Path, Future]]]:
                """One batch: its rows, ids and the decoding of the images not yet stored (in the pool)."""
                chunk = frame.iloc[start : start + batch]
                ids = [point_id(i) for i in chunk["id"]]
                present = store.existing_ids(name, ids)
                jobs = []
                for pid, row in zip(ids, chunk.to_dict("records"), strict=True):
                    if pid in present:
                        continue
                    path = Path(row["path"])
                    path = path if path.is_absolute() else images_dir / path
                    jobs.append((pid, row, path, pool.submit(_decode, path, settings)))
                return chunk, ids, jobs

            starts = list(range(0, len(frame), batch))
            ahead = read(starts[0]) if starts else None
            for n, _ in enumerate(starts):
                chunk, ids, jobs = ahead  # type: ignore[misc]
                ahead = read(starts[n + 1]) if n + 1 < len(starts) else None  # decoded while this batch encodes
                skipped += len(ids) - len(jobs)
                images, keep_ids, payloads = [], [], []
                for pid, row, path, job in jobs:
                    image = job.result()
                    if isinstance(image, ImageLoadError):
                        unreadable += 1
                        logger.warning("skipping %s: %s", row["id"], image.message)
                        continue
                    images.append(image)
                    keep_ids.append(pid)
                    payloads.append(
                        {
                            "id": row["id"],
                            "path": str(path),
                            "location": {"lat": float(row["lat"]), "lon": float(row["lon"])},
                            "extra": {col.removeprefix("extra:"): row[col] for col in extra_cols if row[col] != ""},
                        }
                    )
                if images:
                    codes = country_codes([(p["location"]["lat"], p["location"]["lon"]) for p in payloads])
                    for payload, code in zip(payloads, codes, strict=True):
                        payload["country_code"] = code or ""
                    submit(keep_ids, retriever.encode_pil(images), payloads)
                    added += len(images)
                if progress:
                    progress(len(chunk))
        store.finish_writes(name)
        total = store.count(name)
    report = IngestReport(
        collection=name,
        rows=len(frame) + bad + frame.attrs.get("duplicates", 0),
        added=added,
        skipped_existing=skipped,
        unreadable=unreadable,
        bad_rows=bad,
        duplicates=frame.attrs.get("duplicates", 0),
        total_in_collection=total,
    )
    logger.info("ingested %s", report)
    return report
