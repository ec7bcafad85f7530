"""Training data: the row table (same CSV conventions as ``index build``), the validation split
(by id or by author, from a stable hash, so it never changes between runs or resumes), the batch
order (a permutation drawn from the seed and the epoch: a data position is just (epoch, batch))
and a reader that prepares the next batches in background threads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from retrieval_service.core.errors import DatasetError
from retrieval_service.fusion.features import FeatureSet

AUTHOR_COLUMNS = ("AUTHOR", "author", "user", "owner", "user_id", "photographer")
PLACE_COLUMNS = {
    "city": ("city", "town", "neighbourhood"),
    "region": ("state", "region", "county", "admin1"),
    "country": ("country", "country_name"),
}
SPLIT_SALT = b"geoagent-fusion-split-v1"


def row_table(
    csv_path: Path,
    *,
    id_col: str | None = None,
    lat_col: str | None = None,
    lon_col: str | None = None,
    path_col: str | None = None,
    author_col: str | None = None,
) -> pd.DataFrame:
    """id, lat, lon, path, author, city, region, country (empty when absent) for each valid CSV row."""
    from retrieval_service.retrieval.ingest import read_rows

    frame, _ = read_rows(Path(csv_path), id_col=id_col, lat_col=lat_col, lon_col=lon_col, path_col=path_col)
    extras = {c.removeprefix("extra:").strip().lower(): c for c in frame.columns if c.startswith("extra:")}
    out = frame[["id", "lat", "lon", "path"]].copy()

    def pick(candidates: tuple[str, ...], wanted: str | None = None) -> pd.Series:
        if wanted:
            if wanted.strip().lower() not in extras:
                raise DatasetError(
                    f"{csv_path}: no column named {wanted!r}",
                    f"pass one of {', '.join(c.removeprefix('extra:') for c in extras.values())}",
                )
            return frame[extras[wanted.strip().lower()]].astype(str).str.strip()
        for name in candidates:
            if name.lower() in extras:
                return frame[extras[name.lower()]].astype(str).str.strip()
        return pd.Series([""] * len(frame), index=frame.index)

    out["author"] = pick(AUTHOR_COLUMNS, author_col)
    for key, candidates in PLACE_COLUMNS.items():
        out[key] = pick(candidates)
    return out.reset_index(drop=True)


def text_prompt(city: str, region: str, country: str) -> str | None:
    """TransGeoCLIP's prompt, "A photo taken in {city}, {region}, {country}.", with absent parts left out."""
    parts = [p.strip() for p in (city, region, country) if p and p.strip() and p.strip().lower() != "nan"]
    deduped = [p for i, p in enumerate(parts) if p not in parts[:i]]
    return f"A photo taken in {', '.join(deduped)}." if deduped else None


def unit_hash(keys: pd.Series) -> np.ndarray:
    """A stable value in [0, 1) per key (blake2b), the same on every machine and run."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8, key=SPLIT_SALT).digest(), "big") / 2.0**64 for k in keys],
        dtype=np.float64,
    )


def split_rows(features: FeatureSet, by: str, fraction: float, val_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation rows among the readable ones. By author, all of an
    author's photos fall on one side (no near-duplicate leaks from train into validation)."""
    ok = features.column("ok").astype(bool)
    if by == "author":
        keys = features.rows["author"]
        if (keys == "").all():
            raise DatasetError(
                f"{features.root} has no author column, so it cannot be split by author",
                "precompute from a CSV with an AUTHOR column (or --author-col), or use --val-split id",
            )
        keys = keys.where(keys != "", features.rows["id"])
    else:
        keys = features.rows["id"]
    in_val = unit_hash(keys) < fraction
    val = np.flatnonzero(in_val & ok)
    if len(val) > val_max:
        val = val[np.argsort(unit_hash(features.rows["id"].iloc[val]), kind="stable")[:val_max]]
        val.sort()
    train = np.flatnonzero(~in_val & ok)
    return train, val


class BatchPlan:
    """The batches of each epoch: a permutation of the training rows drawn from (seed, epoch),
    cut into full batches (the last partial one is dropped: InfoNCE compares within a batch)."""

    def __init__(self, train_idx: np.ndarray, batch_size: int, seed: int) -> None:
        if len(train_idx) < batch_size:
            raise DatasetError(
                f"only {len(train_idx)} training rows for batches of {batch_size}",
                "use a smaller --batch-size or more images",
            )
        self.train_idx = np.asarray(train_idx)
        self.batch_size = batch_size
        self.seed = seed

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_idx) // self.batch_size

    def batch(self, epoch: int, number: int, order: np.ndarray | None = None) -> np.ndarray:
        order = self.order(epoch) if order is None else order
        return order[number * self.batch_size : (number + 1) * self.batch_size]

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.train_idx)


def prefetch(
    features: FeatureSet, plan: BatchPlan, epoch: int, start: int, names: tuple[str, ...], workers: int
) -> Iterator[tuple[int, np.ndarray, dict[str, np.ndarray]]]:
    """(batch number, row indices, arrays) for batches ``start``.. of ``epoch``, read ahead by ``workers`` threads."""
    order = plan.order(epoch)
    numbers = range(start, plan.steps_per_epoch)
    if workers <= 0:
        for number in numbers:
            idx = plan.batch(epoch, number, order)
            yield number, idx, features.take(idx, names)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fusion-data") as pool:
        pending = []
        it = iter(numbers)
        for number in it:
            idx = plan.batch(epoch, number, order)
            pending.append((number, idx, pool.submit(features.take, idx, names)))
            if len(pending) > workers:
                break
        for number in it:
            done_number, done_idx, future = pending.pop(0)
            idx = plan.batch(epoch, number, order)
            pending.append((number, idx, pool.submit(features.take, idx, names)))
            yield done_number, done_idx, future.result()
        for done_number, done_idx, future in pending:
            yield done_number, done_idx, future.result()
