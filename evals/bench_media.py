"""Benchmark of the media path: a huge JPEG decoded with ``draft()`` near the size the models need
against a full decode, and the time to refuse hostile files (a 16000x12 strip, a 108-Mpx bomb).

    python -m evals.bench_media [--side 8000]

Prints times, decoded pixel counts and their ratios (full / draft). Uses a synthetic photo in a temp dir.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from retrieval_service.core.errors import ImageLoadError
from retrieval_service.core.media import decode_image, inspect_image


def _best(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=8000, help="long side of the synthetic JPEG")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="geoagent-bench-media-") as tmp:
        folder = Path(tmp)
        h = args.side * 3 // 4
        noise = np.random.default_rng(0).integers(0, 255, (h // 8, args.side // 8, 3), dtype=np.uint8)
        big = folder / "big.jpg"
        Image.fromarray(noise).resize((args.side, h)).save(big, quality=90)

        def full() -> Image.Image:
            with Image.open(big) as img:
                img.load()
                return img.convert("RGB")

        t_full, img_full = _best(full)
        inspect_image(big)  # the check is cached; time the decode itself
        t_draft, img_draft = _best(lambda: decode_image(big, max_side=1024))
        px_full = img_full.width * img_full.height  # type: ignore[union-attr]
        px_draft = img_draft.width * img_draft.height  # type: ignore[union-attr]
        print(
            f"{args.side}x{h} JPEG: full decode {t_full * 1000:.0f} ms, {px_full:,} px; "
            f"draft decode {t_draft * 1000:.0f} ms, {px_draft:,} px ({img_draft.width}x{img_draft.height})"
        )  # type: ignore[union-attr]
        print(f"ratio full/draft: time {t_full / t_draft:.1f}x, pixels (memory) {px_full / px_draft:.1f}x")

        strip = folder / "strip.jpg"
        Image.new("RGB", (16000, 12)).save(strip)
        bomb = folder / "bomb.png"
        Image.new("1", (12000, 9000)).save(bomb)
        for path in (strip, bomb):
            start = time.perf_counter()
            try:
                inspect_image(path)
                verdict = "accepted"
            except ImageLoadError as exc:
                verdict = f"refused: {exc.message[:70]}..."
            print(f"{path.name}: {verdict} in {(time.perf_counter() - start) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
