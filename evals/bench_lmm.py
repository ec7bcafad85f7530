"""The LMM loop's cost outside the model: the agent's own time per photo (model and tools excluded)
as a share of the run, and the request bytes per photo with the photo sent once per conversation
(the default) against sent with every request (``GEOAGENT_LLM_RESEND_PHOTO=true``; what the loop did
before).

The model is the scripted OpenAI-compatible fake server (evals.fake_llm_server) on loopback, answering
after ``--model-ms`` like a real endpoint, with a fixed conversation per photo: retrieve (zoomed),
verify_locations, reverse_geocode, then submit_answer. The tools are the real tools over canned back
ends taking ``--tools-ms`` each (evals.bench_graph), so no model weights are needed.

    python -m evals.bench_lmm [PHOTO...] [--model-ms 300] [--tools-ms 20] [--repeat 2]

Without photos, three synthetic 1600x1200 photos are used. Target: agent time < 5% of the run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from evals.bench_graph import _canned_tools
from evals.fake_llm_server import FakeOpenAI, Reply

FINAL = {
    "lat": 48.86,
    "lon": 2.35,
    "confidence": 0.7,
    "place": {"city": "Paris", "country": "France"},
    "rationale": "the cluster around Paris, verified",
}


def conversation(body: dict[str, Any]) -> Reply:
    """The scripted model: the next step of a fixed four-request conversation."""
    step = sum(1 for m in body["messages"] if m.get("role") == "assistant")
    if step == 0:
        return Reply(
            text="Haussmann facades, a wide boulevard, Latin-script signs.",
            calls=[("retrieve", {"k": 10, "lat": 48.85, "lon": 2.35, "radius_km": 300})],
        )
    if step == 1:
        return Reply(calls=[("verify_locations", {"candidates": [{"lat": 48.85, "lon": 2.35}, {"lat": 45.76, "lon": 4.84}]})])
    if step == 2:
        return Reply(calls=[("reverse_geocode", {"lat": 48.86, "lon": 2.35})])
    return Reply(calls=[("submit_answer", FINAL)])


def synthetic_photos(folder: Path, n: int = 3) -> list[Path]:
    """Gradients with mild noise: JPEGs of about the size of real photos (a few hundred KB)."""
    rng = np.random.default_rng(0)
    paths = []
    yy, xx = np.mgrid[0:1200, 0:1600]
    for i in range(n):
        base = np.stack([(xx * (i + 1) / 16) % 256, (yy / 5) % 256, ((xx + yy) / 11) % 256], axis=-1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"synthetic-{i}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=85)
    return paths


def measure(settings: Any, photos: list[Path], *, model_ms: float, tools_ms: float, repeat: int) -> dict[str, float]:
    from agent import load_agent
    from agent.lmm.images import _encoded

    _encoded.cache_clear()  # each measurement encodes every photo once, as a fresh process would
    with FakeOpenAI(conversation, latency_s=model_ms / 1000) as server:
        agent = load_agent(
            settings, mode="agent", chat_model=server.chat_model(timeout=30.0), tools=_canned_tools(settings, tools_ms)
        )
        agent.run({"image": str(photos[0])})  # warm-up: imports, the first photo's encoding
        _encoded.cache_clear()
        first = len(server.requests)
        totals, model, tools, own = [], [], [], []
        for photo in photos:
            for _ in range(repeat):
                r = agent.run({"image": str(photo)})
                assert r.prediction.source == "lmm", r.prediction.warnings
                lmm = sum(t.latency_ms for t in r.prediction.trace if t.tool == "lmm")
                totals.append(r.total_ms)
                model.append(lmm)
                tools.append(r.tool_ms - lmm)
                own.append(r.total_ms - r.tool_ms)
        if server.violations:
            raise RuntimeError(f"protocol violations: {server.violations[:3]}")
        sizes = [req.size for req in server.requests[first:]]
    runs = len(totals)
    return {
        "total_ms": statistics.fmean(totals),
        "model_ms": statistics.fmean(model),
        "tools_ms": statistics.fmean(tools),
        "own_ms": statistics.fmean(own),
        "own_median_ms": statistics.median(own),
        "requests": len(sizes) / runs,
        "bytes": sum(sizes) / runs,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="*", type=Path)
    ap.add_argument("--model-ms", type=float, default=300.0, help="the fake model's answer time per request")
    ap.add_argument("--tools-ms", type=float, default=20.0, help="each canned tool back end's time")
    ap.add_argument("--repeat", type=int, default=2, help="runs per photo")
    ap.add_argument("--config", type=Path, default=None)
    args = ap.parse_args(argv)

    from agent import load_settings

    with tempfile.TemporaryDirectory(prefix="bench-lmm-") as tmp:
        photos = args.photos or synthetic_photos(Path(tmp))
        # the fake server counts request bytes / 4 as tokens (images included): lift the per-photo token cap
        base = load_settings(args.config, data_dir=Path(tmp) / "data", llm_model="fake-vl", llm_max_tokens_per_photo=10**9)
        once = measure(base, photos, model_ms=args.model_ms, tools_ms=args.tools_ms, repeat=args.repeat)
        every = measure(
            base.model_copy(update={"llm_resend_photo": True}),
            photos,
            model_ms=args.model_ms,
            tools_ms=args.tools_ms,
            repeat=args.repeat,
        )
    print(
        f"{len(photos)} photos x {args.repeat} runs; fake model {args.model_ms:.0f} ms/request, canned tools {args.tools_ms:.0f} ms each"
    )
    print(
        f"{'photo sent':<12} {'requests':>9} {'KB/photo':>10} {'total ms':>10} {'model ms':>10} {'tools ms':>10} {'agent ms':>10} {'agent %':>8}"
    )
    for name, m in (("once", once), ("every call", every)):
        print(
            f"{name:<12} {m['requests']:>9.1f} {m['bytes'] / 1024:>10.1f} {m['total_ms']:>10.1f} {m['model_ms']:>10.1f} "
            f"{m['tools_ms']:>10.1f} {m['own_ms']:>10.2f} {100 * m['own_ms'] / m['total_ms']:>7.2f}%"
        )
    print(
        f"request bytes per photo, once / every call: {once['bytes'] / every['bytes']:.3f} "
        f"({every['bytes'] / once['bytes']:.2f}x less sent)"
    )
    print(
        f"agent's own time per photo (model and tools excluded; the photo's downscaling and encoding, once per "
        f"photo, included): {once['own_ms']:.1f} ms (median {once['own_median_ms']:.1f}) = "
        f"{100 * once['own_ms'] / once['total_ms']:.2f}% of the run (target < 5%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
