"""The public Python API: ``load_agent`` and ``GeoAgent`` (invoke, stream, batch)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

from agent.prediction import Prediction
from agent.state import MODES, AgentContext
from retrieval_service.errors import ConfigError, GeoAgentError, ImageLoadError

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """A prediction with the run's timings (used by the benchmarks)."""

    prediction: Prediction
    total_ms: float
    node_ms: dict[str, float] = field(default_factory=dict)
    node_tool_ms: dict[str, float] = field(default_factory=dict)
    prepare_ms: float = 0.0  # resolving and checking the image before the graph runs

    @property
    def tool_ms(self) -> float:
        """Time spent inside tools and the LMM (from the trace)."""
        return sum(t.latency_ms for t in self.prediction.trace)


class GeoAgent:
    """Geolocates photos. Build with :func:`load_agent`."""

    def __init__(self, settings: Any, *, mode: str, tools: list[Any], chat_model: Any = None,
                 services: Any = None, retry_backoff_s: float = 1.0, rag_samples: int = 1,
                 checkpointer: Any = None) -> None:
        from agent.graph import build_graph

        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}", f"use one of: {', '.join(MODES)}")
        if mode in ("agent", "rag") and chat_model is None:
            raise ConfigError(f"mode {mode!r} needs an LMM but none is configured",
                              "set GEOAGENT_LLM_MODEL (+ GEOAGENT_LLM_BASE_URL / GEOAGENT_LLM_API_KEY), "
                              "or use --mode policy")
        names = [t.name for t in tools]
        missing = {"read_exif", "retrieve", "cluster_candidates", "reverse_geocode", "verify_locations"} - set(names)
        if missing:
            raise ConfigError(f"the tool set lacks {', '.join(sorted(missing))}", "build the tools with tools.make_tools(services)")
        self.settings = settings
        self.mode = mode
        self.services = services
        self.chat_model = chat_model
        self.tools = list(tools)
        self.retry_backoff_s = retry_backoff_s
        self.rag_samples = rag_samples
        self.graph = build_graph(self.tools, checkpointer=checkpointer)

    # ------------------------------------------------------------ helpers
    def _prepare(self, input: Any) -> tuple[dict[str, Any], AgentContext, dict[str, Any]]:
        from agent.graph import recursion_limit
        from agent.images import resolve_image

        src = input.get("image") if isinstance(input, dict) else input
        if isinstance(input, dict) and "image" not in input:
            raise ImageLoadError("the input has no 'image' key", 'call invoke({"image": <path|bytes|PIL image|url>})')
        if src is None:
            raise ImageLoadError("no image given", 'call invoke({"image": <path|bytes|PIL image|url>})')
        ref, tool_input = resolve_image(src, self.settings.cache_dir)
        ctx = AgentContext(settings=self.settings, tools={t.name: t for t in self.tools}, mode=self.mode,
                           chat_model=self.chat_model, image_input=tool_input, retry_backoff_s=self.retry_backoff_s,
                           rag_samples=self.rag_samples)
        return {"image": ref}, ctx, {"recursion_limit": recursion_limit(self.settings.max_steps)}

    def _config(self, base: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
        merged = {**base, **(config or {})}
        merged["recursion_limit"] = min(merged["recursion_limit"], base["recursion_limit"])
        return merged

    # ------------------------------------------------------------ API
    def check(self) -> None:
        """Load the retrieval models and the gallery now; raises a GeoAgentError (e.g. missing CLIP
        weights) instead of letting every photo fall back to a placeholder answer."""
        if self.services is not None:
            self.services.retriever.warm_up()

    def run(self, input: Any, config: dict | None = None) -> RunResult:
        """Like :meth:`invoke`, with the per-node and total timings."""
        start = time.perf_counter()
        state, ctx, base = self._prepare(input)
        prepared = time.perf_counter()
        out = self.graph.invoke(state, config=self._config(base, config), context=ctx)
        pred = Prediction.model_validate(out["prediction"])
        end = time.perf_counter()
        return RunResult(pred, (end - start) * 1000, dict(ctx.node_ms), dict(ctx.node_tool_ms),
                         (prepared - start) * 1000)

    def invoke(self, input: Any, config: dict | None = None) -> Prediction:
        """Geolocate one photo: ``{"image": path|bytes|PIL image|url}`` (or the image itself)."""
        return self.run(input, config).prediction

    def stream(self, input: Any, config: dict | None = None) -> Iterator[dict[str, Any]]:
        """Step events as they happen: ``{"type": "tool_start"|"tool"|"node"|"prediction", ...}``."""
        state, ctx, base = self._prepare(input)
        for mode, chunk in self.graph.stream(state, config=self._config(base, config), context=ctx,
                                             stream_mode=["custom", "updates"]):
            if mode == "custom":
                yield chunk
                continue
            for node, update in chunk.items():
                yield {"type": "node", "node": node}
                if isinstance(update, dict) and update.get("prediction"):
                    yield {"type": "prediction", "prediction": Prediction.model_validate(update["prediction"])}

    def batch(self, inputs: list[Any], *, max_workers: int = 1) -> list[Prediction | Exception]:
        """Geolocate many photos; a failed photo gives its exception in place of a Prediction."""

        def one(item: Any) -> Prediction | Exception:
            try:
                return self.invoke(item)
            except Exception as exc:  # reported per photo, the others go on
                log.warning("photo failed: %s", exc)
                return exc

        if max_workers <= 1:
            return [one(i) for i in inputs]
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            return list(pool.map(one, inputs))


def load_agent(settings: Any = None, *, mode: str | None = None, chat_model: Any = None, services: Any = None,
               config_file: Any = None, tools: list[Any] | None = None, **agent_options: Any) -> GeoAgent:
    """Build a GeoAgent from settings (``GEOAGENT_*`` / TOML, like the CLI).

    mode None -> "agent" when an LMM is configured (``settings.llm_model`` or ``chat_model``), else
    "policy". ``tools`` overrides ``make_tools(services)`` (tests, custom tool sets).
    """
    from retrieval_service.settings import load_settings

    if settings is None:
        settings = load_settings(config_file)
    if mode is None:
        mode = "agent" if (chat_model is not None or settings.llm_model) else "policy"
    if mode in ("agent", "rag") and chat_model is None:
        from agent.llm import make_chat_model

        chat_model = make_chat_model(settings)
    if tools is None:
        try:
            from tools import make_tools
            from tools.services import Services
        except ImportError as exc:
            raise GeoAgentError(f"the tools package is incomplete ({exc})", "reinstall geoagent") from exc
        services = services or Services(settings)
        tools = make_tools(services)
    return GeoAgent(settings, mode=mode, tools=tools, chat_model=chat_model, services=services, **agent_options)
