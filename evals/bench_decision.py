"""Benchmark: gallery search at 100K and the decision's own time per photo; prints ratios.

    python -m evals.bench_decision [--queries 50] [--data-dir DIR] [--skip-hnsw] [--decision-only]

* Gallery search (top-10 of GeoCLIP's 100K gallery, real location vectors, queries from GeoCLIP's
  image head on random CLIP features): the numpy matrix product (``GalleryIndex``, the default; it
  also yields GeoCLIP's full softmax), Qdrant exact search and Qdrant HNSW (embedded qdrant-edge,
  m=16, ef=128), FAISS flat inner product (faiss-cpu, when installed): mean latency and top-10
  agreement with the exact answer.
* The decision of a policy run (20 gallery candidates + the per-cell rest + 10 database neighbours +
  2 OCR places: the options and their support, the rule's choice, the Prediction's probabilities,
  search areas, clusters and surface): mean ms per photo against the 20 ms target.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _timed(fn, queries: np.ndarray) -> tuple[float, list[np.ndarray]]:
    fn(queries[0])  # warm-up
    start = time.perf_counter()
    out = [fn(q) for q in queries]
    return (time.perf_counter() - start) * 1000 / len(queries), out


def _agreement(found: list[np.ndarray], exact: list[np.ndarray]) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(found, exact, strict=False)]))


def _qdrant(index, data_dir: Path, hnsw: bool):
    import qdrant_edge as qe

    from retrieval_service.retrieval.stores import EdgeStore

    store = EdgeStore(data_dir / ("hnsw" if hnsw else "flat"), build_index=hnsw)
    name = "bench_gallery"
    if not store.has_collection(name):
        store.create_collection(name, index.vectors.shape[1])
        for start in range(0, len(index), 4096):
            ids = list(range(start, min(start + 4096, len(index))))
            store.upsert(name, ids, index.vectors[ids], [{} for _ in ids])
        store.finish_writes(name)
    shard = store._shard(name)

    def search(q: np.ndarray) -> np.ndarray:
        request = qe.QueryRequest(
            limit=10, query=qe.Query.Nearest(q.tolist()), with_payload=False, params=qe.SearchParams(exact=not hnsw, hnsw_ef=128)
        )
        return np.array([int(p.id) for p in shard.query(request)])

    return search


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--data-dir", type=Path, default=None, help="where the gallery vectors are cached (default: a temp dir)")
    parser.add_argument("--skip-hnsw", action="store_true", help="skip building the Qdrant HNSW index (minutes on 2 cores)")
    parser.add_argument("--decision-only", action="store_true", help="time the decision only (no search comparison)")
    args = parser.parse_args(argv)

    from retrieval_service.retrieval.gallery import load_gallery_index
    from retrieval_service.retrieval.geoclip_heads import GeoClipHeads
    from retrieval_service.retrieval.settings import RetrievalSettings

    tmp = Path(tempfile.mkdtemp(prefix="geoagent-bench-decision-"))
    settings = RetrievalSettings(data_dir=args.data_dir or tmp, qdrant_url=None)
    heads = GeoClipHeads(torch.device("cpu"))
    index = load_gallery_index(settings, heads)
    rng = np.random.default_rng(0)
    queries = heads.embed_clip_features(rng.standard_normal((args.queries, 768)).astype(np.float32))
    if args.decision_only:
        decision_times(index, queries[: min(20, len(queries))])
        return
    print(f"gallery: {len(index)} points x {index.vectors.shape[1]}-d; {args.queries} queries, top-10")

    numpy_ms, exact = _timed(lambda q: index.search(q, 10)[0].indices, queries)
    rows = [("numpy matrix product + GeoCLIP softmax (default)", numpy_ms, 1.0)]
    ms, found = _timed(_qdrant(index, tmp, hnsw=False), queries)
    rows.append(("Qdrant exact (embedded)", ms, _agreement(found, exact)))
    if not args.skip_hnsw:
        started = time.perf_counter()
        search = _qdrant(index, tmp, hnsw=True)
        print(f"(Qdrant HNSW index built in {time.perf_counter() - started:.0f} s)")
        ms, found = _timed(search, queries)
        rows.append(("Qdrant HNSW m=16 ef=128 (embedded)", ms, _agreement(found, exact)))
    try:
        import faiss

        flat = faiss.IndexFlatIP(index.vectors.shape[1])
        flat.add(index.vectors)
        ms, found = _timed(lambda q: flat.search(q[None, :].astype(np.float32), 10)[1][0], queries)
        rows.append((f"FAISS IndexFlatIP (faiss-cpu {faiss.__version__})", ms, _agreement(found, exact)))
    except ImportError:
        print("faiss-cpu is not installed: FAISS row skipped (pip install faiss-cpu)")
    print(f"{'search':52s} {'ms/query':>9s} {'x numpy':>8s} {'top-10 = exact':>15s}")
    for name, ms, agree in rows:
        print(f"{name:52s} {ms:9.2f} {ms / numpy_ms:8.2f} {100 * agree:14.1f}%")

    decision_times(index, queries[: min(20, len(queries))])


def photo_evidence(index, query: np.ndarray, rng: np.random.Generator):
    """What a policy run holds when it decides: the gallery's top-20 (GeoCLIP probabilities) and its
    per-cell rest, an image database's top-10 (CLIP cosines 0.6-0.95, half near the gallery's best
    points, half anywhere on land) and two places read in the photo's text."""
    from retrieval_service.core.types import Candidate

    hits, logp = index.search(query, 20)
    gallery = index.candidates(hits)
    rest = index.rest(logp, hits.indices, index.scores(query))
    database = []
    for i in range(10):
        base = gallery[i % 3] if i % 2 == 0 else gallery[int(rng.integers(len(gallery)))]
        lat = base.lat + float(rng.normal(0, 0.05)) if i < 5 else float(index.coords[int(rng.integers(len(index))), 0])
        lon = base.lon + float(rng.normal(0, 0.05)) if i < 5 else float(index.coords[int(rng.integers(len(index))), 1])
        database.append(Candidate(lat=lat, lon=lon, score=float(0.95 - 0.035 * i), source="database", payload={"id": f"db-{i}"}))
    ocr = [
        Candidate(lat=gallery[0].lat + 0.1, lon=gallery[0].lon, score=0.0, source="ocr", payload={"name": "a town"}),
        Candidate(lat=48.8566, lon=2.3522, score=0.0, source="ocr", payload={"name": "Paris"}),
    ]
    return gallery + database, rest, ocr


def decide_once(candidates, rest, ocr, settings) -> dict:
    """The decision of a policy run, as its nodes make it: the options (with their support), the rule's
    choice (the point with the most probability within the confidence radius), then the Prediction's fields (probabilities, areas, clusters,
    alternatives, surface) and the tools-only mixture the LMM check uses."""
    from agent.decision import rules
    from agent.decision.sources import Mixtures
    from agent.decision.summary import prediction_fields
    from retrieval_service.evidence.clustering import cluster_points

    clusters = cluster_points(rules.retrieval_candidates(candidates), eps_km=50.0, min_samples=2).clusters  # a tool's
    pool = candidates + ocr  # the run's candidates
    start = time.perf_counter()
    mixtures = Mixtures()  # one run's: each evidence set built once
    options = rules.build_options(pool, clusters, ocr, support=rules.retrieval_mixture(mixtures, pool, rest))
    choice = rules.choose(options, rules.tools_mixture(mixtures, pool, rest))
    mixture, tools_only = mixtures.of(pool, rest), mixtures.of(pool, rest)  # decide: with the LMM's (none), tools only
    fields = prediction_fields(mixture, choice.chosen.lat, choice.chosen.lon, settings=settings, mode="policy")
    tools_only.prob_within(choice.chosen.lat, choice.chosen.lon, [200])
    fields["ms"] = (time.perf_counter() - start) * 1000
    return fields


def decision_times(index, queries: np.ndarray) -> list[dict]:
    from agent.settings import Settings

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="geoagent-bench-decision-cal-")), qdrant_url=None)
    rng = np.random.default_rng(1)
    evidence = [photo_evidence(index, q, rng) for q in queries]
    decide_once(*evidence[0], settings)  # warm-up (imports)
    out = [decide_once(*e, settings) for e in evidence]
    times = [f["ms"] for f in out]
    n = np.mean([len(c) + len(r) + len(o) for c, r, o in evidence])
    mean = float(np.mean(times))
    print(
        f"decision (20 gallery + ~{n - 32:.0f} rest cells + 10 database + 2 OCR: options, choice, probabilities, "
        f"areas, clusters, surface): {mean:.1f} ms/photo (median {np.median(times):.1f}); "
        f"target 20 ms -> {mean / 20:.2f}x the target"
    )
    return out


if __name__ == "__main__":
    main()
