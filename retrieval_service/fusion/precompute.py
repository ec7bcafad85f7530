"""``geoagent train precompute``: a CSV of images + coordinates -> a features folder.

Each photo is read once: the frozen CLIP tower gives its pooled vector and pooled patch tokens, the
segmenter its class map (reduced to ``seg_grid`` cells), and, with ``text=True``, CLIP's text tower
encodes TransGeoCLIP's place prompt from the CSV's city/region/country columns. Shards are written
whole (see ``features``), so a killed precompute resumes at the first missing shard. Rows whose
image is missing or unreadable are kept with ``ok=False`` (training skips them) and counted.

Photos are decoded and preprocessed by a torch ``DataLoader`` (``workers`` processes) while the
tower encodes the previous batch on the device. Batches never straddle a shard and arrive in index
order, and preprocessing is deterministic, so the features are the same bit for bit whatever the
number of workers and however the shards are split among processes.

Several processes (GPUs, machines) split the work with ``shard=(i, n)``: process i computes the
feature shards ``i, i + n, i + 2n, ...``. Pointed at one shared folder they fill it together (the
manifest and row table are the same for all, written atomically); on separate disks each writes
its own folder and ``features.merge_features`` joins them. Under ``torchrun`` the CLI takes i and n
from RANK and WORLD_SIZE.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pydantic import BaseModel

from retrieval_service.core.errors import ConfigError, DatasetError, ImageLoadError
from retrieval_service.fusion.config import VOID_CLASS, FeatureSpec
from retrieval_service.fusion.data import row_table, text_prompt
from retrieval_service.fusion.features import FeatureSet, FeatureWriter

logger = logging.getLogger(__name__)


class PrecomputeReport(BaseModel):
    out: str
    rows: int
    unreadable: int
    shards_written: int
    shards_reused: int
    spec: FeatureSpec
    shard: str = "0/1"
    shards_missing: int = 0
    """Feature shards of the whole set still missing after this run (other processes' shards)."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(
            f"--shard {text!r} is not I/N", "give this process's index and the process count, e.g. --shard 0/4"
        ) from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text}: the index must be in 0..{count - 1}", "count processes from 0: --shard 0/4 ... 3/4")
    return index, count


def shard_rows(rows: int, shard_size: int, shard: tuple[int, int]) -> int:
    """How many of ``rows`` fall in the feature shards of process ``shard=(i, n)``."""
    count = -(-rows // shard_size)
    return sum(min(shard_size, rows - s * shard_size) for s in range(shard[0], count, shard[1]))


def _load(path: Path) -> Image.Image | None:
    from retrieval_service.core.media import decode_image

    try:
        return decode_image(path)
    except ImageLoadError as exc:
        logger.warning("unreadable image %s: %s", path, exc.message)
        return None


class _Photos(torch.utils.data.Dataset):
    """Row i -> (i, preprocessed pixels or None, the decoded RGB pixels when class maps need them)."""

    def __init__(self, paths: list[Path], preprocess: Callable[[Image.Image], torch.Tensor], keep_pixels: bool) -> None:
        self.paths, self.preprocess, self.keep_pixels = paths, preprocess, keep_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, torch.Tensor | None]:
        image = _load(self.paths[index])
        if image is None:
            return index, None, None
        pixels = torch.from_numpy(np.array(image)) if self.keep_pixels else None  # a writable copy
        return index, self.preprocess(image), pixels


def _as_list(items: list[Any]) -> list[Any]:
    return items


def precompute(
    csv_path: Path,
    images_dir: Path,
    out: Path,
    *,
    image_model: str,
    image_pretrained: str,
    device: str = "auto",
    batch_size: int = 32,
    token_grid: int = 4,
    seg_grid: int = 32,
    shard_size: int = 4096,
    segmenter_settings: object | None = None,
    text: bool = False,
    workers: int = 4,
    shard: tuple[int, int] = (0, 1),
    id_col: str | None = None,
    lat_col: str | None = None,
    lon_col: str | None = None,
    path_col: str | None = None,
    author_col: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> PrecomputeReport:
    """Write (or resume) the features of every row of ``csv_path`` (with ``shard=(i, n)``: of this
    process's feature shards). ``segmenter_settings``: the ``EvidenceSettings`` of the segmenter
    making the class maps, or None for no segmentation view. ``workers``: DataLoader processes
    decoding photos (0: in this process)."""
    from retrieval_service.fusion.classmaps import ClassMapper
    from retrieval_service.fusion.tokens import TokenEncoder

    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError(f"images folder not found: {images_dir}", "pass the folder holding the images with --images")
    rows = row_table(Path(csv_path), id_col=id_col, lat_col=lat_col, lon_col=lon_col, path_col=path_col, author_col=author_col)
    prompts = [text_prompt(r.city, r.region, r.country) for r in rows.itertuples()] if text else []
    if text and not any(prompts):
        raise DatasetError(
            f"{csv_path} has no city/region/country columns for the text prompts", "add them, or precompute without --text"
        )
    encoder = TokenEncoder(image_model, image_pretrained, device, batch_size, token_grid)
    mapper = None
    if segmenter_settings is not None:
        from retrieval_service.evidence.segmentation import make_segmenter

        segmenter = make_segmenter(segmenter_settings)  # type: ignore[arg-type]
        mapper = ClassMapper(segmenter, seg_grid)
    text_encoder = None
    if text:
        from retrieval_service.fusion.text import TextEncoder

        text_encoder = TextEncoder(image_model, image_pretrained, device)
    spec = FeatureSpec(
        image_model=image_model,
        image_pretrained=image_pretrained,
        token_grid=token_grid,
        token_dim=encoder.dim,
        pooled_dim=encoder.dim,
        seg_backend=mapper.segmenter.name if mapper else None,
        seg_model=getattr(segmenter_settings, "segmenter_model", None) if mapper else None,
        seg_labels=mapper.labels if mapper else (),
        seg_grid=seg_grid,
        text_dim=text_encoder.dim if text_encoder else None,
    )
    writer = FeatureWriter(Path(out), spec, rows, shard_size, source=str(csv_path))
    index, count = shard
    mine = [s for s in range(writer.shard_count) if s % count == index]
    todo = [s for s in mine if not writer.done(s)]
    if progress:
        progress(sum(writer.bounds(s)[1] - writer.bounds(s)[0] for s in mine if s not in todo))
    paths = [Path(p) if Path(p).is_absolute() else images_dir / p for p in rows["path"]]
    unreadable = 0
    for number, arrays in _encode_shards(writer, todo, paths, encoder, mapper, spec, batch_size, workers, progress):
        unreadable += int((~arrays["ok"]).sum())
        if text_encoder is not None:
            start, stop = writer.bounds(number)
            shard_prompts = prompts[start:stop]
            has = np.array([p is not None for p in shard_prompts])
            feats = np.zeros((stop - start, text_encoder.dim), np.float16)
            if has.any():
                feats[has] = text_encoder.encode([p for p in shard_prompts if p]).astype(np.float16)
            arrays |= {"text": feats, "has_text": has}
        writer.write(number, arrays)
    done_rows = sum(writer.bounds(s)[1] - writer.bounds(s)[0] for s in todo)
    if todo and unreadable == done_rows:
        raise DatasetError(
            f"none of the {done_rows} images this run read from {csv_path} could be read under {images_dir}",
            "check --images and the id/path column (--id-col/--path-col)",
        )
    missing = FeatureSet(out).missing_shards()
    if count == 1 and missing:
        FeatureSet(out).require_complete()
    return PrecomputeReport(
        out=str(out),
        rows=len(rows),
        unreadable=unreadable,
        shards_written=len(todo),
        shards_reused=len(mine) - len(todo),
        spec=spec,
        shard=f"{index}/{count}",
        shards_missing=len(missing),
    )


def _encode_shards(
    writer: FeatureWriter,
    shards: list[int],
    paths: list[Path],
    encoder: Any,
    mapper: Any,
    spec: FeatureSpec,
    batch_size: int,
    workers: int,
    progress: Callable[[int], None] | None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(shard, its arrays) for each of ``shards``, in order. One DataLoader decodes the batches of
    all of them (never straddling a shard) in worker processes, in index order."""
    batches = [
        list(range(b, min(b + batch_size, writer.bounds(s)[1])))
        for s in shards
        for b in range(writer.bounds(s)[0], writer.bounds(s)[1], batch_size)
    ]
    if not batches:
        return
    workers = max(0, min(workers, os.cpu_count() or 1))  # more decoding processes than cores only add overhead
    loader = torch.utils.data.DataLoader(
        _Photos(paths, encoder.preprocess, mapper is not None),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=_as_list,
        prefetch_factor=2 if workers > 0 else None,
    )
    current, start = -1, 0
    arrays: dict[str, np.ndarray] = {}
    for items in loader:
        number = items[0][0] // writer.manifest.shard_size
        if number != current:
            if current >= 0:
                yield current, arrays
            current, arrays = number, _empty(spec, *writer.bounds(number), mapper is not None)
            start = writer.bounds(number)[0]
        good = [(i - start, pixels, raw) for i, pixels, raw in items if pixels is not None]
        if good:
            local = np.array([g[0] for g in good], dtype=np.int64)
            arrays["ok"][local] = True
            tokens, pooled = encoder.encode_batch(torch.stack([g[1] for g in good]))
            arrays["tokens"][local] = tokens.cpu().numpy().astype(np.float16)
            arrays["pooled"][local] = pooled.cpu().numpy().astype(np.float16)
            if mapper is not None:
                for row, _, raw in good:
                    arrays["classmap"][row] = mapper(Image.fromarray(raw.numpy()))
        if progress:
            progress(len(items))
    yield current, arrays


def _empty(spec: FeatureSpec, start: int, stop: int, classmaps: bool) -> dict[str, np.ndarray]:
    n = stop - start
    out = {
        "tokens": np.zeros((n, spec.num_tokens, spec.token_dim), np.float16),
        "pooled": np.zeros((n, spec.pooled_dim), np.float16),
        "ok": np.zeros(n, bool),
    }
    if classmaps:
        out["classmap"] = np.full((n, spec.seg_grid, spec.seg_grid), VOID_CLASS, np.uint8)
    return out


def rows_preview(csv_path: Path, **cols) -> pd.DataFrame:
    """The rows a precompute would use (validates the CSV before any model loads)."""
    return row_table(Path(csv_path), **cols)
