"""The retrieval service's speed: ``POST /v1/search`` over HTTP against the in-process ``Retriever``.

    python -m evals.bench_service                          # settings from GEOAGENT_* (real CLIP)
    python -m evals.bench_service --tiny --data-dir DIR    # tiny random CLIP (plumbing), DIR holds a gallery
    python -m evals.bench_service --photos ../shared/data/im2gps3k-dev/images --requests 96

For 1, 8 and 32 concurrent clients (``--clients``), sends ``--requests`` searches (multipart uploads
of the photos in turn; synthetic JPEGs without ``--photos``) to the service on a loopback port and
makes the same calls on the same ``Retriever`` in-process, and prints throughput (searches/s) and
p50/p95 latency of both, with the ratios HTTP / in-process. Both share one process and one
retriever, so the ratio is the cost of HTTP, validation and the service's concurrency gate.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def synthetic_photos(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pixels = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8).repeat(8, axis=0).repeat(8, axis=1)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def run_clients(call, photos: list[bytes], requests: int, clients: int) -> dict[str, float]:
    """``call(i, photo)`` ``requests`` times from ``clients`` threads: throughput and latency percentiles."""
    latencies: list[float] = []

    def one(i: int) -> None:
        t0 = time.perf_counter()
        call(i, photos[i % len(photos)])
        latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    q = np.percentile(np.asarray(latencies) * 1e3, [50, 95])
    return {"rps": requests / wall, "p50": float(q[0]), "p95": float(q[1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrent client counts")
    parser.add_argument("--requests", type=int, default=64, help="searches per measurement")
    parser.add_argument("--photos", type=Path, default=None, help="a folder of JPEGs to send (default: synthetic photos)")
    parser.add_argument("--k", type=int, default=10, help="gallery candidates per search")
    parser.add_argument("--concurrency", type=int, default=4, help="the service's GEOAGENT_SERVICE_MAX_CONCURRENCY")
    parser.add_argument("--data-dir", type=Path, default=None, help="GEOAGENT_DATA_DIR (holds or gets the gallery)")
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny random CLIP instead of the configured one (plumbing speed only)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    from agent.settings import load_settings
    from retrieval_service.core.photo import Photo
    from retrieval_service.retrieval.retriever import Retriever
    from retrieval_service.service.app import create_retrieval_app
    from retrieval_service.service.server import BackgroundServer
    from retrieval_service.service.settings import ServiceSettings

    overrides: dict = {"data_dir": args.data_dir, "retrieval_url": None}
    if args.tiny:
        from retrieval_service.retrieval.tiny_clip import write_tiny_config

        overrides.update(
            image_model=str(write_tiny_config(Path(tempfile.mkdtemp(prefix="geoagent-tiny-")))),
            image_pretrained="none",
            device="cpu",
        )
    settings = load_settings(**overrides)
    retriever = Retriever(settings)
    t0 = time.perf_counter()
    retriever.warm_up()
    print(f"retriever ready in {time.perf_counter() - t0:.1f} s ({settings.image_model}, {settings.device})")
    photos = [p.read_bytes() for p in sorted(args.photos.glob("*.jpg"))[:64]] if args.photos else synthetic_photos(16)
    print(
        f"{len(photos)} photos, mean {statistics.mean(map(len, photos)) / 1024:.0f} KiB; {args.requests} searches per row; "
        f"service concurrency {args.concurrency}"
    )
    service = ServiceSettings(
        data_dir=settings.data_dir, service_max_concurrency=args.concurrency, service_max_queue=1000, service_timeout_s=600
    )
    app = create_retrieval_app(retriever, service, warm_up=False)
    rows = []
    with BackgroundServer(app) as url:
        for clients in [int(c) for c in args.clients.split(",") if c]:
            local = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=clients))

            def over_http(i: int, photo: bytes, local: httpx.Client = local) -> None:
                r = local.post(
                    f"{url}/v1/search",
                    files={"image": (f"p{i}.jpg", photo, "image/jpeg")},
                    data={"k_gallery": str(args.k), "k_database": "0"},
                )
                r.raise_for_status()

            def in_process(i: int, photo: bytes) -> None:  # resolved once per request, as the service does
                retriever.search(Photo.resolve(photo, settings.cache_dir, settings), k_gallery=args.k, k_database=0)

            run_clients(in_process, photos, min(8, args.requests), clients)  # warm both paths
            run_clients(over_http, photos, min(8, args.requests), clients)
            inproc = run_clients(in_process, photos, args.requests, clients)
            http = run_clients(over_http, photos, args.requests, clients)
            local.close()
            rows.append((clients, http, inproc))

    print(
        f"\n{'clients':>7} | {'HTTP /s':>8} {'p50 ms':>8} {'p95 ms':>8} | {'in-proc /s':>10} {'p50 ms':>8} {'p95 ms':>8} | "
        f"{'thru ratio':>10} {'p50 ratio':>9} {'p95 ratio':>9}"
    )
    for clients, http, inproc in rows:
        print(
            f"{clients:>7} | {http['rps']:>8.1f} {http['p50']:>8.1f} {http['p95']:>8.1f} | {inproc['rps']:>10.1f} "
            f"{inproc['p50']:>8.1f} {inproc['p95']:>8.1f} | {http['rps'] / inproc['rps']:>10.2f} "
            f"{http['p50'] / inproc['p50']:>9.2f} {http['p95'] / inproc['p95']:>9.2f}"
        )
    print("\nthru ratio: HTTP searches/s over in-process searches/s (1.0 = no cost); latency ratios: HTTP over in-process.")
    retriever.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
