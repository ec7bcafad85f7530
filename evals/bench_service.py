"""``geoagent serve`` under load: searches alone and mixed with locates, with and without the
encoder's micro-batcher, over real HTTP on a loopback port.

    python -m evals.bench_service                                   # settings from GEOAGENT_* (real CLIP)
    python -m evals.bench_service --random-weights                  # the configured model (ViT-L/14) with random weights
    python -m evals.bench_service --tiny --data-dir DIR             # tiny random CLIP (plumbing), DIR holds a gallery
    python -m evals.bench_service --photos ../shared/data/im2gps3k-dev/images --clients 1,8,32,64

For each client count (``--clients``, default 1, 8, 32, 64) it sends ``--requests`` searches
(``POST /v1/search``, multipart uploads of the photos in turn, each made unique by a JPEG comment so
that no cache answers; generated JPEGs without ``--photos``)
from that many concurrent clients: alone, then while as many clients send ``POST /v1/locate`` (the
policy agent) in a loop. Each batching mode (``encode_batching`` off, then on) runs in a process of
its own, so that its peak memory is its own. Every row prints the searches' throughput and p50/p95
latency, how many of them answered 200, the locates completed and refused (503), and the service's
peak RSS during the row, each as a ratio against the sequential baseline: one client, searches
alone, batching off. Lanes are the service's defaults unless ``--concurrency`` /
``--agent-concurrency`` say otherwise; their queues are sized so that no search is refused.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image


def synthetic_photos(n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pixels = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8).repeat(8, axis=0).repeat(8, axis=1)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def unique(photo: bytes, tag: str) -> bytes:
    """The same JPEG with a comment naming ``tag``: other bytes, so no cache (the Retriever's features
    are cached by the content hash) answers for a photo sent before; the pixels are unchanged."""
    note = tag.encode()[:60000]
    return photo[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + photo[2:]


_RUN = time.time_ns()


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc; else the peak so far)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakRss:
    """The highest RSS sampled every 20 ms while the block runs."""

    def __enter__(self) -> PeakRss:
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def _search_load(url: str, photos: list[bytes], requests: int, clients: int, k: int, row: str) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: list[int] = []
    http = httpx.Client(timeout=900, limits=httpx.Limits(max_connections=clients + 4))

    def one(i: int) -> None:
        t0 = time.perf_counter()
        r = http.post(
            f"{url}/v1/search",
            files={"image": (f"p{i}.jpg", unique(photos[i % len(photos)], f"{_RUN} {row} search {i}"), "image/jpeg")},
            data={"k_gallery": str(k), "k_database": "0"},
        )
        statuses.append(r.status_code)
        if r.status_code == 200:
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    http.close()
    q = np.percentile(np.asarray(latencies) * 1e3, [50, 95]) if latencies else [float("nan")] * 2
    return {"rps": len(latencies) / wall, "p50": float(q[0]), "p95": float(q[1]), "ok": statuses.count(200), "sent": requests}


def _locate_loop(url: str, photos: list[bytes], clients: int, stop: threading.Event, row: str) -> dict[str, Any]:
    """``clients`` clients sending locates back to back until ``stop``."""
    counts: dict[str, Any] = {"done": 0, "refused": 0, "other": 0}
    lock = threading.Lock()

    def client(c: int) -> None:
        http = httpx.Client(timeout=900)
        i = 0
        while not stop.is_set():
            photo = unique(photos[(c + i) % len(photos)], f"{_RUN} {row} locate {c}-{i}")
            r = http.post(f"{url}/v1/locate", files={"image": (f"l{c}-{i}.jpg", photo, "image/jpeg")})
            key = "done" if r.status_code == 200 else "refused" if r.status_code == 503 else "other"
            with lock:
                counts[key] += 1
                if key == "other" and "error" not in counts:  # the first failure, printed under the table
                    counts["error"] = f"{r.status_code} {r.text[:200]}"
            if r.status_code == 503:
                stop.wait(float(r.headers.get("Retry-After", "1")))
            i += 1
        http.close()

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join()
    return counts


def _locates_into(out: dict[str, Any], url: str, photos: list[bytes], clients: int, stop: threading.Event, row: str) -> None:
    out.update(_locate_loop(url, photos, clients, stop, row))


def worker(args: argparse.Namespace) -> None:
    """One batching mode, every row: JSON lines on stdout."""
    logging.basicConfig(level=logging.ERROR)
    from agent.api import load_agent
    from agent.settings import load_settings
    from agent.web.app import create_app
    from retrieval_service.service.server import BackgroundServer
    from retrieval_service.service.settings import ServiceSettings

    overrides: dict[str, Any] = {"data_dir": args.data_dir, "retrieval_url": None, "encode_batching": args.worker == "on"}
    if args.tiny:
        from retrieval_service.retrieval.tiny_clip import write_tiny_config

        overrides.update(
            image_model=str(write_tiny_config(Path(tempfile.mkdtemp(prefix="geoagent-tiny-")))), image_pretrained="none"
        )
    elif args.random_weights:
        overrides["image_pretrained"] = "none"
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    agent = load_agent(settings, mode="policy")
    t0 = time.perf_counter()
    agent.check()
    photos = [p.read_bytes() for p in sorted(args.photos.glob("*.jpg"))[:64]] if args.photos else synthetic_photos(16)
    service = ServiceSettings(
        data_dir=settings.data_dir,
        service_max_concurrency=args.concurrency,
        service_max_queue=max(args.clients_list) + 8,
        service_agent_max_concurrency=args.agent_concurrency,
        service_timeout_s=900,
    )
    print(
        json.dumps(
            {
                "ready_s": time.perf_counter() - t0,
                "model": f"{settings.image_model} ({settings.image_pretrained})",
                "device": settings.device,
                "photos": len(photos),
                "lanes": [service.service_max_concurrency, service.service_agent_max_concurrency],
            }
        ),
        flush=True,
    )
    with BackgroundServer(create_app(agent, service, warm_up=False)) as url:
        _search_load(url, photos, min(4, args.requests), 1, args.k, "warm-up")  # warm the paths
        for clients in args.clients_list:
            requests = max(args.requests, clients)
            for mixed in (False, True):
                stop = threading.Event()
                locates: dict[str, Any] = {}
                with PeakRss() as peak:
                    loop = None
                    if mixed:
                        tag = f"{clients}-{mixed}"
                        loop = threading.Thread(
                            target=_locates_into, args=(locates, url, photos, clients, stop, tag), daemon=True
                        )
                        loop.start()
                    row = _search_load(url, photos, requests, clients, args.k, f"{clients}-{mixed}")
                    stop.set()
                    if loop is not None:
                        loop.join()
                row.update(clients=clients, mixed=mixed, batching=args.worker, rss=peak.peak, **locates)
                print(json.dumps(row), flush=True)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and np.isfinite(a) and np.isfinite(b) else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32,64", help="comma-separated concurrent client counts")
    parser.add_argument("--requests", type=int, default=64, help="searches per row (at least one per client)")
    parser.add_argument("--photos", type=Path, default=None, help="a folder of JPEGs to send (default: generated photos)")
    parser.add_argument("--k", type=int, default=10, help="gallery candidates per search")
    parser.add_argument("--concurrency", type=int, default=4, help="the retrieval lane's GEOAGENT_SERVICE_MAX_CONCURRENCY")
    parser.add_argument("--agent-concurrency", type=int, default=2, help="the agent lane's concurrency")
    parser.add_argument("--data-dir", type=Path, default=None, help="GEOAGENT_DATA_DIR (holds or gets the gallery)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random CLIP (plumbing speed only)")
    parser.add_argument("--random-weights", action="store_true", help="the configured model with random weights (real compute)")
    parser.add_argument("--worker", choices=["on", "off"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.clients_list = [int(c) for c in args.clients.split(",") if c]
    if args.worker:
        worker(args)
        return 0
    rows: list[dict[str, Any]] = []
    for mode in ("off", "on"):
        cmd = [sys.executable, "-m", "evals.bench_service", *(argv if argv is not None else sys.argv[1:]), "--worker", mode]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        info, rows_of_mode = lines[0], lines[1:]
        print(
            f"batching {mode}: ready in {info['ready_s']:.1f} s; {info['model']} on {info['device']}; {info['photos']} photos; "
            f"lanes: retrieval {info['lanes'][0]}, agent {info['lanes'][1]}"
        )
        rows += rows_of_mode
    base = next(r for r in rows if r["batching"] == "off" and not r["mixed"] and r["clients"] == args.clients_list[0])
    print(
        f"\n{'batching':>8} {'load':>9} {'clients':>7} | {'search/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'200s':>7} | "
        f"{'locates':>7} {'503':>4} {'err':>4} | {'peak MB':>7} | {'thru x':>6} {'p50 x':>6} {'p95 x':>6} {'RSS x':>6}"
    )
    for r in rows:
        load = "mixed" if r["mixed"] else "searches"
        print(
            f"{r['batching']:>8} {load:>9} {r['clients']:>7} | {r['rps']:>8.2f} {r['p50']:>8.0f} {r['p95']:>8.0f} "
            f"{r['ok']:>3}/{r['sent']:<3} | {r.get('done', 0):>7} {r.get('refused', 0):>4} {r.get('other', 0):>4} | {r['rss']:>7.0f} | "
            f"{_ratio(r['rps'], base['rps']):>6} {_ratio(r['p50'], base['p50']):>6} {_ratio(r['p95'], base['p95']):>6} "
            f"{_ratio(r['rss'], base['rss']):>6}"
        )
    for r in rows:
        if r.get("error"):
            print(f"locates failing ({r['batching']}, {r['clients']} clients): {r['error']}")
    print(
        f"\nratios (x) against the sequential baseline: batching off, searches alone, {base['clients']} client "
        f"({base['rps']:.2f} searches/s, p50 {base['p50']:.0f} ms, peak {base['rss']:.0f} MB). "
        "mixed: as many clients send locates in a loop while the searches run; 503: locates refused by the full agent lane."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
