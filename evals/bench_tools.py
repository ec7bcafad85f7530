"""Per-tool latency on CPU for one 1024-px photo: ``python -m evals.bench_tools``.

Each tool is called once cold (first use builds its model/index) and then ``--repeats`` times warm
(on fresh copies of the photo, so per-image caches do not hide the cost of a new photo);
the table shows both and the warm total (target: < 1.5 s for the whole tool set on a 2-core CPU).
``retrieve``/``verify_locations`` need a working Retriever (the configured data dir; its first use
builds the GPS gallery, which shows in the cold column): with ``--tiny`` a tiny random open_clip model
is used (plumbing speed only); when no retriever can be built they are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from agent.settings import Settings, load_settings
from retrieval_service.retrieval.tiny_clip import write_tiny_config

SHARED = Path(__file__).resolve().parents[2] / "shared"
CITYSCAPES = SHARED / "models" / "cityscapes-deeplab" / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"
DEV_IMAGES = SHARED / "data" / "im2gps3k-dev" / "images"


def _photo(src: Path | None, workdir: Path) -> Path:
    if src is None:
        photos = sorted(DEV_IMAGES.glob("*.jpg"))
        if not photos:
            raise SystemExit(f"no photo given and no dev photos in {DEV_IMAGES}; pass --image PATH")
        src = photos[0]
    img = Image.open(src).convert("RGB")
    scale = 1024 / max(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    out = workdir / "bench-1024.jpg"
    img.save(out, quality=92)
    return out


def _settings(tiny: bool, workdir: Path) -> Settings:
    overrides: dict[str, Any] = {}
    if CITYSCAPES.is_file():
        overrides.update(segmenter="tflite", segmenter_model=str(CITYSCAPES))
    if tiny:
        cfg = write_tiny_config(workdir)
        overrides.update(image_model=str(cfg), image_pretrained="none", device="cpu")
    return load_settings(**overrides)


def _time(tool: Any, args: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    result = tool.invoke(args)
    return (time.perf_counter() - t0) * 1000, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=None, help="photo to use (default: first IM2GPS3k dev photo)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="use a tiny random image model for retrieve/verify")
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from tools import Services, make_tools

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        photo = _photo(opts.image, workdir)
        services = Services(_settings(opts.tiny, workdir))
        by_name = {t.name: t for t in make_tools(services)}
        image = str(photo)
        calls: dict[str, dict[str, Any]] = {
            "read_exif": {"image": image},
            "retrieve": {"image": image, "k": 10},
            "cluster_candidates": {
                "candidates": [{"lat": 48.85 + 0.01 * i, "lon": 2.35, "score": 0.3} for i in range(10)]
                + [{"lat": 40.7 + 0.02 * i, "lon": -74.0, "score": 0.2} for i in range(10)]
            },
            "reverse_geocode": {"lat": 48.8584, "lon": 2.2945},
            "read_text": {"image": image},
            "segment_scene": {"image": image},
            "verify_locations": {
                "image": image,
                "candidates": [
                    {"lat": 48.85, "lon": 2.35},
                    {"lat": 40.7, "lon": -74.0},
                    {"lat": 35.68, "lon": 139.65},
                    {"lat": -33.9, "lon": 151.2},
                ],
            },
        }
        # warm runs use fresh copies of the photo so that per-image caches (the Retriever's embedding
        # LRU) do not hide the cost of a new photo
        copies = []
        for i in range(max(opts.repeats, 1)):
            copy = workdir / f"bench-1024-{i}.jpg"
            shutil.copyfile(photo, copy)
            copies.append(str(copy))
        rows: list[tuple[str, float, float | None, str]] = []
        for name, args in calls.items():
            cold, result = _time(by_name[name], args)
            if "error" in result:
                rows.append((name, cold, None, f"skipped: {result['error'][:70]}"))
                continue
            warm = statistics.median(
                _time(by_name[name], {**args, "image": copy} if "image" in args else args)[0] for copy in copies
            )
            rows.append((name, cold, warm, json.dumps(result)[:60]))

    print(f"photo: {photo.name} (1024 px longest side), {opts.repeats} warm repeats, CPU")
    print(f"{'tool':<20}{'cold ms':>10}{'warm ms':>10}  result")
    for name, cold, warm, note in rows:
        print(f"{name:<20}{cold:>10.0f}{(f'{warm:.0f}' if warm is not None else '-'):>10}  {note}")
    total = sum(w for _, _, w, _ in rows if w is not None)
    measured = [n for n, _, w, _ in rows if w is not None]
    print(f"{'total (warm)':<20}{'':>10}{total:>10.0f}  over {len(measured)} tools")
    return 0


if __name__ == "__main__":
    sys.exit(main())
