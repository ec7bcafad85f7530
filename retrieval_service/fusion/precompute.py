"""``geoagent train precompute``: a CSV of images + coordinates -> a features folder.

Each photo is read once: the frozen CLIP tower gives its pooled vector and pooled patch tokens, the
segmenter its class map (reduced to ``seg_grid`` cells), and, with ``text=True``, CLIP's text tower
encodes TransGeoCLIP's place prompt from the CSV's city/region/country columns. Shards are written
whole (see ``features``), so a killed precompute resumes at the first missing shard. Rows whose
image is missing or unreadable are kept with ``ok=False`` (training skips them) and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import BaseModel

from retrieval_service.core.errors import DatasetError, ImageLoadError
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


def _load(path: Path) -> Image.Image | None:
    from retrieval_service.core.media import decode_image

    try:
        return decode_image(path)
    except ImageLoadError as exc:
        logger.warning("unreadable image %s: %s", path, exc.message)
        return None


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
    id_col: str | None = None,
    lat_col: str | None = None,
    lon_col: str | None = None,
    path_col: str | None = None,
    author_col: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> PrecomputeReport:
    """Write (or resume) the features of every row of ``csv_path``. ``segmenter_settings``: the
    ``EvidenceSettings`` of the segmenter making the class maps, or None for no segmentation view."""
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
    written = reused = unreadable = 0
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fusion-read") as pool:
        for shard in range(writer.shard_count):
            start, stop = writer.bounds(shard)
            if writer.done(shard):
                reused += 1
                if progress:
                    progress(stop - start)
                continue
            chunk = rows.iloc[start:stop]
            paths = [Path(p) if Path(p).is_absolute() else images_dir / p for p in chunk["path"]]
            arrays = _shard_arrays(paths, pool, encoder, mapper, spec, batch_size, progress)
            unreadable += int((~arrays["ok"]).sum())
            if text_encoder is not None:
                shard_prompts = prompts[start:stop]
                has = np.array([p is not None for p in shard_prompts])
                feats = np.zeros((stop - start, text_encoder.dim), np.float16)
                if has.any():
                    feats[has] = text_encoder.encode([p for p in shard_prompts if p]).astype(np.float16)
                arrays |= {"text": feats, "has_text": has}
            writer.write(shard, arrays)
            written += 1
    if unreadable == len(rows):
        raise DatasetError(
            f"none of the {len(rows)} images listed in {csv_path} could be read under {images_dir}",
            "check --images and the id/path column (--id-col/--path-col)",
        )
    FeatureSet(out).require_complete()
    return PrecomputeReport(
        out=str(out), rows=len(rows), unreadable=unreadable, shards_written=written, shards_reused=reused, spec=spec
    )


def _shard_arrays(
    paths: list[Path],
    pool: ThreadPoolExecutor,
    encoder,
    mapper,
    spec: FeatureSpec,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> dict[str, np.ndarray]:
    """One shard's arrays; images are decoded a batch at a time (threads), never a whole shard at once."""
    n = len(paths)
    ok = np.zeros(n, bool)
    tokens = np.zeros((n, spec.num_tokens, spec.token_dim), np.float16)
    pooled = np.zeros((n, spec.pooled_dim), np.float16)
    classmap = np.full((n, spec.seg_grid, spec.seg_grid), VOID_CLASS, np.uint8)
    for s in range(0, n, batch_size):
        loaded = list(pool.map(_load, paths[s : s + batch_size]))
        idx = np.array([s + i for i, img in enumerate(loaded) if img is not None], dtype=np.int64)
        batch = [img for img in loaded if img is not None]
        if batch:
            ok[idx] = True
            t, p = encoder.encode(batch)
            tokens[idx], pooled[idx] = t.astype(np.float16), p.astype(np.float16)
            if mapper is not None:
                for i, img in zip(idx, batch, strict=False):
                    classmap[i] = mapper(img)
        if progress:
            progress(len(loaded))
    out = {"tokens": tokens, "pooled": pooled, "ok": ok}
    if mapper is not None:
        out["classmap"] = classmap
    return out


def rows_preview(csv_path: Path, **cols) -> pd.DataFrame:
    """The rows a precompute would use (validates the CSV before any model loads)."""
    return row_table(Path(csv_path), **cols)
