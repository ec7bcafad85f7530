"""Retrieval speed and quality: embedded Qdrant (HNSW) vs exact numpy search.

    python -m evals.bench_retrieval                       # 100K gallery + 100K synthetic
    python -m evals.bench_retrieval --sizes 100000,1000000 --ef 64,128,256

Reports, for the real 100K GeoCLIP gallery (location-encoder vectors) and for synthetic clustered
512-d sets of each ``--sizes``: ingestion throughput (vectors/s, upsert + HNSW build), recall@10 of
Qdrant against exact search, and median single-query latency of both, with their ratio.
Queries for the gallery are location embeddings of jittered gallery points (the gallery is never
queried with its own points); nothing is fitted on benchmark photos.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval_service.retrieval.stores import EdgeStore

logger = logging.getLogger("bench_retrieval")
BATCH = 4096


def ingest(store: EdgeStore, name: str, vectors: np.ndarray) -> float:
    """Upsert all vectors and build the index; return vectors/s."""
    store.create_collection(name, vectors.shape[1])
    started = time.perf_counter()
    for start in range(0, len(vectors), BATCH):
        chunk = vectors[start : start + BATCH]
        store.upsert(name, list(range(start, start + len(chunk))), chunk, [{}] * len(chunk))
    store.finish_writes(name)
    return len(vectors) / (time.perf_counter() - started)


def exact_topk(base: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = base @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def measure(store: EdgeStore, name: str, base: np.ndarray, queries: np.ndarray, k: int, ef: int) -> dict[str, float]:
    store.hnsw_ef = ef
    store.search(name, queries[0], k)  # warm up
    exact_topk(base, queries[0], k)
    q_times, n_times, recalls = [], [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = store.search(name, q, k)
        t1 = time.perf_counter()
        truth = exact_topk(base, q, k)
        t2 = time.perf_counter()
        q_times.append(t1 - t0)
        n_times.append(t2 - t1)
        recalls.append(len({int(h.id) for h in hits} & set(truth.tolist())) / k)
    q_ms, n_ms = statistics.median(q_times) * 1e3, statistics.median(n_times) * 1e3
    return {"ef": ef, "recall": float(np.mean(recalls)), "qdrant_ms": q_ms, "numpy_ms": n_ms, "ratio": q_ms / n_ms}


def synthetic(n: int, dim: int, seed: int) -> np.ndarray:
    """Clustered unit vectors (1000 centres + noise), closer to real embeddings than iid Gaussians."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        out[start : start + m] = centres[rng.integers(0, 1000, m)] + 0.6 * rng.normal(size=(m, dim)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def report(label: str, n: int, rate: float, rows: list[dict[str, float]]) -> None:
    print(f"\n{label}: {n} vectors, ingestion {rate:,.0f} vectors/s (upsert + HNSW build)")
    print(f"  {'ef':>5} {'recall@10':>10} {'qdrant ms':>10} {'numpy ms':>9} {'ratio':>6}")
    for r in rows:
        print(f"  {r['ef']:>5} {r['recall']:>10.4f} {r['qdrant_ms']:>10.3f} {r['numpy_ms']:>9.3f} {r['ratio']:>6.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", default="100000", help="comma-separated synthetic set sizes (e.g. 100000,1000000); empty = none"
    )
    parser.add_argument("--ef", default="64,128,256", help="comma-separated HNSW ef values to try")
    parser.add_argument("--queries", type=int, default=200, help="queries per measurement")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--no-gallery", action="store_true", help="skip the real 100K GeoCLIP gallery")
    parser.add_argument("--device", default="auto", help="device for the location encoder")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the collections (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    efs = [int(x) for x in args.ef.split(",") if x]
    sizes = [int(x) for x in args.sizes.split(",") if x]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="geoagent-bench-"))
    store = EdgeStore(workdir / "qdrant")
    rng = np.random.default_rng(0)
    summary: list[tuple[str, int, dict[str, float]]] = []

    if not args.no_gallery:
        from retrieval_service.retrieval.geoclip_heads import GeoClipHeads, gallery_coordinates
        from retrieval_service.retrieval.image_encoder import resolve_device

        heads = GeoClipHeads(resolve_device(args.device))
        coords = gallery_coordinates()
        t0 = time.perf_counter()
        base = heads.encode_locations(coords)
        print(f"location-encoded the 100K gallery in {time.perf_counter() - t0:.1f} s on {heads.device}")
        picks = coords[rng.integers(0, len(coords), args.queries)]
        jitter = picks + rng.normal(scale=[0.5, 0.5], size=picks.shape).astype(np.float32)
        jitter[:, 0] = np.clip(jitter[:, 0], -89.9, 89.9)
        jitter[:, 1] = (jitter[:, 1] + 180) % 360 - 180
        queries = heads.encode_locations(jitter)
        rate = ingest(store, "gallery", base)
        rows = [measure(store, "gallery", base, queries, args.k, ef) for ef in efs]
        report("GeoCLIP gallery", len(base), rate, rows)
        summary += [("gallery", len(base), r) for r in rows]

    for n in sizes:
        everything = synthetic(n + args.queries, 512, seed=n)  # queries: same centres, fresh noise
        base, queries = everything[:n], everything[n:]
        name = f"synthetic_{n}"
        rate = ingest(store, name, base)
        rows = [measure(store, name, base, queries, args.k, ef) for ef in efs]
        report(f"synthetic {n}", n, rate, rows)
        summary += [(name, n, r) for r in rows]
        store.delete_collection(name)
        del base, everything

    synth = [(n, r) for name, n, r in summary if name.startswith("synthetic")]
    if len({n for n, _ in synth}) >= 2:
        small, large = min(n for n, _ in synth), max(n for n, _ in synth)
        print("\nlatency growth (qdrant vs numpy) from", small, "to", large)
        for ef in efs:
            a = next(r for n, r in synth if n == small and r["ef"] == ef)
            b = next(r for n, r in synth if n == large and r["ef"] == ef)
            print(
                f"  ef={ef}: qdrant x{b['qdrant_ms'] / a['qdrant_ms']:.2f}, numpy x{b['numpy_ms'] / a['numpy_ms']:.2f} (size x{large / small:.0f})"
            )
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
