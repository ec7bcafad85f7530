"""The image database at MP-16 scale: ingest rate, RAM, disk, search latency and recall of the
embedded Qdrant store, float32 against int8 scalar quantization (originals on disk, rescoring).

    python -m evals.bench_database                 # 1M generated 768-d vectors (about an hour on 2 cores)
    python -m evals.bench_database --n 200000      # smaller; every figure is also extrapolated to 4.7M

The vectors are generated, with the structure of CLIP image embeddings rather than uniform noise:

* a shared direction: every vector leans on one common mean (real CLIP image embeddings share one;
  the cosine of two unrelated photos is about 0.4-0.5, here set by ``--shared``), and that mean has
  a few large-magnitude coordinates, like CLIP's outlier dimensions (what int8's quantile clips);
* clusters (places, subjects) with heavy-tailed sizes: ``n / 200`` centres, Pareto(1.2) sizes, each
  cluster a von Mises-Fisher-like cap around its centre: centre + Gaussian noise of a per-cluster
  spread (log-normal, median 0.7 of the centre's norm), drawn in the cluster's own 32-d subspace
  (low intrinsic dimension) plus isotropic noise of 0.3, then normalised: two photos of one cluster
  have a cosine of about 0.8, of two clusters about 0.45;
* near-duplicates: 3% of the vectors are another vector plus tiny noise (re-uploads, bursts).

Queries are fresh draws of the same mixture (not stored), so recall is measured on unseen photos.
Recall@10 is against exact search (a float64 matrix product over all vectors). Each collection is
searched in a fresh process, one query at a time, after a warm-up pass, so its RAM is what search
needs: ``RssAnon`` (heap: must stay in RAM) and ``RssFile`` (memory-mapped files in the page cache;
the kernel can drop them, at the price of disk reads). Ingest is ``upsert_vectors`` (the bulk path
of ``index build``: batches of 1024, two upserts in flight) then the index build (``optimize``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 768
MP16 = 4_700_000
CHUNK = 50_000
VARIANTS = {"float32": {"quantization": "none", "on_disk": False}, "int8": {"quantization": "int8", "on_disk": True}}


class Mixture:
    """The generator (see the module docstring); ``chunk(i)`` is the same on every call."""

    def __init__(self, n: int, seed: int = 0, shared: float = 0.65) -> None:
        rng = np.random.default_rng([seed, 1])
        self.n, self.seed, self.shared = n, seed, shared
        mean = rng.normal(size=DIM)
        mean[rng.choice(DIM, 8, replace=False)] *= 12.0  # outlier dimensions
        self.mean = mean / np.linalg.norm(mean)
        self.k = max(4, n // 200)
        sizes = rng.pareto(1.2, self.k) + 1.0
        self.weights = sizes / sizes.sum()
        self.centres = rng.normal(size=(self.k, DIM)).astype(np.float32)
        self.centres /= np.linalg.norm(self.centres, axis=1, keepdims=True)
        self.spread = np.exp(rng.normal(np.log(0.7), 0.4, self.k)).astype(np.float32)
        self.basis_seed = rng.integers(2**31)

    def _basis(self, cluster: int) -> np.ndarray:
        """32 random directions scaled so that a draw's offset from the centre has norm about 1."""
        return np.random.default_rng([self.basis_seed, cluster]).normal(size=(32, DIM)).astype(np.float32) / np.sqrt(32 * DIM)

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        labels = rng.choice(self.k, count, p=self.weights)
        out = np.empty((count, DIM), np.float32)
        for cluster in np.unique(labels):
            rows = np.flatnonzero(labels == cluster)
            local = rng.normal(size=(len(rows), 32)).astype(np.float32) @ self._basis(int(cluster))
            iso = rng.normal(size=(len(rows), DIM)).astype(np.float32) * (0.3 / np.sqrt(DIM))
            out[rows] = self.centres[cluster] + self.spread[cluster] * (local + iso)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        out = self.shared * self.mean + np.sqrt(1 - self.shared**2) * out
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def chunk(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2, index])
        count = min(CHUNK, self.n - index * CHUNK)
        vectors = self.draw(rng, count)
        dup = np.flatnonzero(rng.random(count) < 0.03)
        dup = dup[dup > 0]
        source = (rng.random(len(dup)) * dup).astype(np.int64)  # an earlier vector of this chunk
        vectors[dup] = vectors[source] + rng.normal(size=(len(dup), DIM)).astype(np.float32) * 0.01
        vectors[dup] /= np.linalg.norm(vectors[dup], axis=1, keepdims=True)
        return vectors

    @property
    def chunks(self) -> int:
        return -(-self.n // CHUNK)

    def queries(self, count: int) -> np.ndarray:
        return self.draw(np.random.default_rng([self.seed, 3]), count)

    def write(self, path: Path) -> np.ndarray:
        """All vectors, generated once into a memory-mapped ``.npy`` (3 GB for 1M)."""
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(self.n, DIM))
        for c in range(self.chunks):
            out[c * CHUNK : c * CHUNK + CHUNK] = self.chunk(c)
        out.flush()
        return np.load(path, mmap_mode="r")


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the exact k nearest vectors of each query (cosine; chunks streamed, float64)."""
    best_s = np.full((len(queries), k), -np.inf)
    best_i = np.zeros((len(queries), k), np.int64)
    q = queries.astype(np.float64)
    for c in range(0, len(vectors), CHUNK):
        scores = q @ np.asarray(vectors[c : c + CHUNK], dtype=np.float64).T
        ids = np.broadcast_to(np.arange(scores.shape[1]) + c, scores.shape)
        all_s, all_i = np.concatenate((best_s, scores), 1), np.concatenate((best_i, ids), 1)
        top = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)
    return best_i


def rss_kib() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def du_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def build(vectors: np.ndarray, root: Path, variant: str, m: int, ef_construct: int) -> dict[str, float]:
    from retrieval_service.retrieval.ingest import upsert_vectors
    from retrieval_service.retrieval.stores import CollectionParams, EdgeStore

    store = EdgeStore(root / variant)
    params = CollectionParams(hnsw_m=m, hnsw_ef_construct=ef_construct, **VARIANTS[variant])
    store.create_collection("bench", DIM, params)
    t0 = time.perf_counter()
    upsert_vectors(store, "bench", range(len(vectors)), vectors, lambda a, b: [{}] * (b - a), batch_size=1024, parallel=2)
    upsert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.finish_writes("bench")
    index_s = time.perf_counter() - t0
    points = store.count("bench")
    store.close()
    return {"upsert_s": upsert_s, "index_s": index_s, "points": points, "disk": du_bytes(root / variant / "bench")}


def search_child(root: Path, variant: str, ef: int, k: int) -> None:
    """In a fresh process: open the collection, warm up, time every query; print JSON."""
    import qdrant_edge  # noqa: F401  (its library's pages are not the collection's)

    from retrieval_service.retrieval.stores import EdgeStore, SearchParams

    data = np.load(root / "queries.npz")
    before = rss_kib()
    store = EdgeStore(root / variant, search_params=SearchParams(hnsw_ef=ef, rescore=True, oversampling=2.0))
    for q in data["queries"]:  # warm-up: touch what search touches
        store.search("bench", q, k)
    latencies, found = [], []
    for q in data["queries"]:
        t0 = time.perf_counter()
        hits = store.search("bench", q, k)
        latencies.append(time.perf_counter() - t0)
        found.append([int(h.id) for h in hits])
    after = rss_kib()
    truth = data["truth"][:, :k]
    recall = float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))
    top1 = float(np.mean([bool(f) and f[0] == t[0] for f, t in zip(found, truth, strict=True)]))
    store.close()
    print(
        json.dumps(
            {
                "p50_ms": float(np.percentile(latencies, 50) * 1000),
                "p95_ms": float(np.percentile(latencies, 95) * 1000),
                "recall": recall,
                "top1": top1,
                "anon_mib": (after["RssAnon"] - before["RssAnon"]) / 1024,
                "file_mib": (after["RssFile"] - before["RssFile"]) / 1024,
            }
        )
    )


def scale(value: float, n: int, target: int, kind: str) -> float:
    if kind == "linear":
        return value * target / n
    if kind == "nlogn":
        return value * (target / n) * math.log(target) / math.log(n)
    return value * math.log(target) / math.log(n)  # "log": per-query HNSW cost


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="Vectors to store (default 1M).")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--m", type=int, default=16, help="HNSW m (GEOAGENT_QDRANT_HNSW_M).")
    parser.add_argument("--ef-construct", type=int, default=128, help="GEOAGENT_QDRANT_HNSW_EF_CONSTRUCT.")
    parser.add_argument("--ef", type=int, default=128, help="Search hnsw_ef (GEOAGENT_QDRANT_HNSW_EF).")
    parser.add_argument("--variants", default="float32,int8")
    parser.add_argument("--workdir", type=Path, default=None, help="Where the collections go (default: a temporary folder).")
    parser.add_argument("--search-child", nargs=2, metavar=("ROOT", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.search_child:
        search_child(Path(args.search_child[0]), args.search_child[1], args.ef, args.k)
        return
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; use {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="bench-db-", dir=args.workdir) as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        mixture = Mixture(args.n)
        t0 = time.perf_counter()
        vectors = mixture.write(root / "vectors.npy")
        generate_s = time.perf_counter() - t0
        queries = mixture.queries(args.queries)
        t0 = time.perf_counter()
        truth = exact_top(vectors, queries, args.k)
        exact_s = time.perf_counter() - t0
        np.savez(root / "queries.npz", queries=queries, truth=truth)
        sample = np.asarray(vectors[:2000])
        cos = sample @ sample.T
        off = cos[~np.eye(len(sample), dtype=bool)]
        print(
            f"{args.n} generated {DIM}-d vectors: {mixture.k} clusters (largest {mixture.weights.max():.1%} of the points), "
            f"cosine of two random vectors p50 {np.median(off):.2f}, p99 {np.percentile(off, 99):.2f}; "
            f"generated in {generate_s:.0f} s; {args.queries} fresh queries, exact top-{args.k} in {exact_s:.0f} s"
        )
        print(
            f"HNSW m={args.m} ef_construct={args.ef_construct}, search hnsw_ef={args.ef}; int8: quantile 0.99, originals on disk, rescore, oversampling 2"
        )
        rows = {}
        for variant in variants:
            built = build(vectors, root, variant, args.m, args.ef_construct)
            child = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "evals.bench_database",
                    "--search-child",
                    str(root),
                    variant,
                    "--ef",
                    str(args.ef),
                    "--k",
                    str(args.k),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            rows[variant] = built | json.loads(child.stdout.strip().splitlines()[-1])
        header = f"{'':9}{'upsert/s':>10}{'index s':>9}{'total/s':>9}{'disk GiB':>10}{'RAM anon':>10}{'RAM file':>10}{'p50 ms':>8}{'p95 ms':>8}{'recall@' + str(args.k):>11}{'top-1':>7}"
        print(header)
        for variant, r in rows.items():
            total_s = r["upsert_s"] + r["index_s"]
            print(
                f"{variant:9}{args.n / r['upsert_s']:10.0f}{r['index_s']:9.0f}{args.n / total_s:9.0f}{r['disk'] / 2**30:10.2f}"
                f"{r['anon_mib'] / 1024:9.2f}G{r['file_mib'] / 1024:9.2f}G{r['p50_ms']:8.2f}{r['p95_ms']:8.2f}{r['recall']:11.3f}{r['top1']:7.3f}"
            )
        print(
            f"extrapolated to {MP16:,} vectors (N = {MP16}, n = {args.n}): disk and RAM x N/n; upsert time x N/n; "
            "index build x (N/n)·ln N/ln n (HNSW inserts cost ~log of the graph size); latency x ln N/ln n"
        )
        links = MP16 * 2 * args.m * 4  # HNSW level 0: 2m links of 4 bytes per point (upper levels add ~1/m)
        print(
            f"RAM for full-speed search at {MP16:,}: the searched vectors plus the graph, N·{DIM}·4 B + N·2m·4 B = "
            f"{(MP16 * DIM * 4 + links) / 2**30:.1f} GiB float32, N·{DIM}·1 B + N·2m·4 B = {(MP16 * DIM + links) / 2**30:.1f} GiB int8 "
            f"(its float32 originals, {MP16 * DIM * 4 / 2**30:.1f} GiB, stay on disk: 2k of them are read per query to rescore)"
        )
        for variant, r in rows.items():
            upsert = scale(r["upsert_s"], args.n, MP16, "linear")
            index = scale(r["index_s"], args.n, MP16, "nlogn")
            print(
                f"{variant:9} ingest {upsert / 3600:5.1f} h + index {index / 3600:5.1f} h; disk {scale(r['disk'], args.n, MP16, 'linear') / 2**30:6.1f} GiB; "
                f"RAM anon {scale(r['anon_mib'], args.n, MP16, 'linear') / 1024:5.1f} GiB + file cache {scale(r['file_mib'], args.n, MP16, 'linear') / 1024:5.1f} GiB; "
                f"p50 {scale(r['p50_ms'], args.n, MP16, 'log'):.2f} ms, p95 {scale(r['p95_ms'], args.n, MP16, 'log'):.2f} ms"
            )
        print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
