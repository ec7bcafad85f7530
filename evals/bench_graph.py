"""Graph overhead of the agent in policy mode: the agent's own time per photo (LangGraph, node logic,
image preparation) as a share of the end-to-end time, with a per-node breakdown.

    python -m evals.bench_graph PHOTO... [--repeat 3]              # the real tools (GEOAGENT_* settings)
    python -m evals.bench_graph PHOTO... --fake-tools-ms 50        # the real tools over canned back ends taking 50 ms each

Target: overhead < 5 % of the end-to-end time with the real tools.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_service.core.types import Candidate, RetrievalResult
from retrieval_service.evidence.ocr import TextLine, TextReading


class _Canned:
    """Back ends for the real tools that return fixed results after ``ms`` milliseconds (a stand-in
    for model compute, so that the agent's own time can be measured without any model)."""

    def __init__(self, ms: float) -> None:
        self.s = ms / 1000
        self.name, self.labels = "canned", ["building", "sky", "road"]

    def search(
        self, image: Any, *, k_gallery: int = 10, k_database: int = 10, geo_filter: Any = None, dissimilar: int = 0
    ) -> RetrievalResult:
        time.sleep(self.s)
        gallery = [
            Candidate(
                lat=48.85 + 0.02 * i, lon=2.35 + 0.02 * i, score=0.4 - 0.01 * i, source="gallery", payload={"country_code": "FR"}
            )
            for i in range(min(k_gallery, 8))
        ]
        gallery.append(Candidate(lat=35.68, lon=139.65, score=0.41, source="gallery", payload={"country_code": "JP"}))
        return RetrievalResult(gallery=gallery, geo_filter=geo_filter)

    def verify(self, image: Any, coords: list[tuple[float, float]]) -> list[float]:
        time.sleep(self.s)
        return [0.3 - abs(lat - 48.85) / 100 for lat, _ in coords]

    def warm_up(self) -> None:
        """Nothing to load."""

    def segment(self, image: Any) -> np.ndarray:
        time.sleep(self.s)
        return np.repeat(np.arange(3), 100).reshape(10, 30)

    def read(self, image: Any) -> TextReading:
        time.sleep(self.s)
        return TextReading(lines=[TextLine(text="Rue de Rivoli", confidence=0.95)], scripts=["Latin"], places=[])


def _canned_tools(settings: Any, ms: float) -> list[Any]:
    from tools import Services, make_tools

    canned = _Canned(ms)
    return make_tools(Services(settings, retriever=canned, segmenter=canned, text_reader=canned))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--repeat", type=int, default=3, help="runs per photo (the first, warm-up run is not counted)")
    ap.add_argument("--fake-tools-ms", type=float, default=None, help="use canned tools taking this many ms each")
    ap.add_argument("--config", type=Path, default=None)
    args = ap.parse_args(argv)

    from agent import load_agent, load_settings

    settings = load_settings(args.config)
    tools = _canned_tools(settings, args.fake_tools_ms) if args.fake_tools_ms is not None else None
    agent = load_agent(settings, mode="policy", tools=tools)
    agent.run({"image": str(args.photos[0])})  # warm-up: model loading, caches

    totals, tool_ms, prepare = [], [], []
    node_wall: dict[str, list[float]] = {}
    node_own: dict[str, list[float]] = {}
    for photo in args.photos:
        for _ in range(args.repeat):
            r = agent.run({"image": str(photo)})
            totals.append(r.total_ms)
            tool_ms.append(r.tool_ms)
            prepare.append(r.prepare_ms)
            for node, ms in r.node_ms.items():
                node_wall.setdefault(node, []).append(ms)
                node_own.setdefault(node, []).append(r.node_own_ms.get(node, ms))
    n = len(totals)
    total, tools_t = sum(totals) / n, sum(tool_ms) / n
    overhead = total - tools_t
    nodes_own = sum(sum(v) for v in node_own.values()) / n
    framework = overhead - nodes_own - sum(prepare) / n
    print(
        f"tools: {f'canned, {args.fake_tools_ms:.0f} ms each' if tools else 'real'}; {len(args.photos)} photos x {args.repeat} runs"
    )
    print(f"{'node':<10} {'wall ms':>10} {'own ms':>10}")
    for node in node_wall:
        print(f"{node:<10} {sum(node_wall[node]) / n:>10.2f} {sum(node_own[node]) / n:>10.2f}")
    print(f"{'prepare':<10} {sum(prepare) / n:>10.2f} {sum(prepare) / n:>10.2f}   (resolve + decode-check the image)")
    print(f"{'langgraph':<10} {'':>10} {framework:>10.2f}   (scheduling, state merges, validation)")
    print(
        f"end-to-end {total:.1f} ms/photo (median {statistics.median(totals):.1f}); tools {tools_t:.1f} ms; "
        f"agent overhead {overhead:.2f} ms = {100 * overhead / total:.2f}% (target < 5%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
