"""Benchmark of the evaluation harness itself.

1. Overhead per image, excluding the predictor (scoring, reverse geocoding, JSONL append + fsync,
   progress bar, thread hand-off), as a share of one policy-mode prediction.
2. Throughput in images/s for --workers 1, 4 and 16 with a predictor whose latency is simulated
   (a sleep, as an LMM endpoint would take).

Run: ``python -m evals.bench_harness [--images N] [--latency-ms MS] [--policy-image PATH]``.
The policy prediction uses the configured settings (GEOAGENT_*); when the agent cannot run here
(e.g. no model weights offline), pass --policy-ms with a measured figure instead.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.prediction import Prediction, TraceEntry
from agent.settings import Settings, load_settings
from evals.datasets import Dataset, EvalItem
from evals.runner import run_eval
from retrieval_service.core.types import Candidate

log = logging.getLogger(__name__)


class SimulatedPredictor:
    """Answers a fixed nearby point after sleeping ``latency_s`` (0 = as fast as possible)."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s

    def invoke(self, input: dict[str, Any], config: dict | None = None) -> Prediction:
        if self.latency_s:
            time.sleep(self.latency_s)
        return Prediction(
            image=str(input["image"]),
            lat=48.85,
            lon=2.35,
            confidence=0.5,
            source="gallery",
            alternatives=[Candidate(lat=48.85, lon=2.35, score=0.9) for _ in range(5)],
            trace=[
                TraceEntry(tool=t, args={"image": str(input["image"])}, summary="ok", latency_ms=1.0)
                for t in ("read_exif", "retrieve", "cluster_candidates", "reverse_geocode", "verify_locations")
            ],
        )


def _dataset(root: Path, n: int) -> Dataset:
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        path = images / f"img{i:05d}.jpg"
        path.write_bytes(b"x")
        items.append(EvalItem(id=path.name, lat=(i % 170) - 85.0, lon=(i * 7 % 350) - 175.0, image=path))
    return Dataset(name="csv", labels=root / "labels.csv", images=images, items=items)


def _run(settings: Settings, n: int, latency_s: float, workers: int) -> tuple[float, float, float]:
    """(images/s, writer seconds per row, end-to-end harness seconds per image) for one fresh run.

    Writer time = scoring + reverse geocoding + JSONL append + fsync of each row; end-to-end adds
    the per-run costs (config and versions, ground-truth countries, thread pool) spread over n.
    """
    with tempfile.TemporaryDirectory() as tmp:
        ds = _dataset(Path(tmp), n)
        predictor = SimulatedPredictor(latency_s)
        result = run_eval(
            ds,
            Path(tmp) / "run",
            settings=settings,
            mode="policy",
            factory=lambda s, mode: predictor,
            predictor_name="bench",
            workers=workers,
            progress=False,
            argv=["bench"],
            report=False,
        )
    end_to_end = max(result.elapsed_s - result.predictor_s / workers, 0.0) / n
    return n / result.elapsed_s, result.harness_s / n, end_to_end


def policy_prediction_ms(settings: Settings, image: Path, repeats: int = 3) -> float:
    """Median wall time of a policy-mode prediction on one photo (after one warm-up call)."""
    from agent import load_agent

    agent = load_agent(settings, mode="policy")
    agent.invoke({"image": str(image)})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        agent.invoke({"image": str(image)})
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48, help="simulated images per run")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="simulated predictor latency")
    parser.add_argument("--policy-image", type=Path, default=None, help="photo for the policy-mode timing")
    parser.add_argument("--policy-ms", type=float, default=None, help="use this policy-mode latency instead of measuring")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    _run(settings, 4, 0.0, 1)  # warm-up: reverse geocoder index, imports
    _, row_s, overhead_s = _run(settings, max(args.images, 128), 0.0, 1)
    print(
        f"harness overhead per image, zero-latency predictor, 1 worker: {row_s * 1000:.2f} ms per row "
        f"(score + geocode + append + fsync), {overhead_s * 1000:.2f} ms end to end"
    )
    policy_ms = args.policy_ms
    if policy_ms is None and args.policy_image is not None:
        policy_ms = policy_prediction_ms(settings, args.policy_image)
        print(f"policy-mode prediction ({settings.image_model}): {policy_ms:.1f} ms (median of 3)")
    if policy_ms:
        print(
            f"overhead as share of a policy prediction: {100 * row_s * 1000 / policy_ms:.2f} % per row, "
            f"{100 * overhead_s * 1000 / policy_ms:.2f} % end to end"
        )
    else:
        print("policy-mode share: not measured (pass --policy-image PATH or --policy-ms MS)")
    for workers in (1, 4, 16):
        rate, _, _ = _run(settings, args.images, args.latency_ms / 1000, workers)
        ideal = workers * 1000 / args.latency_ms if args.latency_ms else float("inf")
        print(f"workers={workers:2d}: {rate:7.2f} images/s (simulated latency {args.latency_ms:.0f} ms; ideal {ideal:.1f})")


if __name__ == "__main__":
    main()
