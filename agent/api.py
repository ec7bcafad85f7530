"""The public Python API: ``load_agent`` and ``GeoAgent`` (invoke, stream, batch)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from agent.context import RunContext
from agent.graphs import GRAPH_MODES, build_graph
from agent.graphs.llm_loop import recursion_limit
from agent.modes import check_mode, predictor_plugins
from agent.prediction import Prediction
from agent.predictor import Predictor, RunResult
from agent.settings import Settings, load_settings
from agent.timing import NodeTimer
from retrieval_service.core.errors import ConfigError, GeoAgentError

REQUIRED_TOOLS = frozenset({"read_exif", "retrieve", "cluster_candidates", "reverse_geocode", "verify_locations"})


class GeoAgent(Predictor):
    """Geolocates photos with one of the agent's graphs. Build with :func:`load_agent`."""

    def __init__(self, settings: Settings, *, mode: str, tools: list[Any], chat_model: Any = None,
                 services: Any = None, retry_backoff_s: float = 1.0, rag_samples: int = 1,
                 checkpointer: Any = None) -> None:
        if mode not in GRAPH_MODES:
            raise ConfigError(f"GeoAgent has no graph for mode {mode!r}", f"use one of: {', '.join(GRAPH_MODES)}, "
                              "or load_agent(mode=...) for the registered predictors")
        if mode in ("agent", "rag") and chat_model is None:
            raise ConfigError(f"mode {mode!r} needs an LMM but none is configured",
                              "set GEOAGENT_LLM_MODEL (+ GEOAGENT_LLM_BASE_URL / GEOAGENT_LLM_API_KEY), "
                              "or use --mode policy")
        missing = REQUIRED_TOOLS - {t.name for t in tools}
        if missing:
            raise ConfigError(f"the tool set lacks {', '.join(sorted(missing))}", "build the tools with tools.make_tools(services)")
        self.settings = settings
        self.mode = mode
        self.services = services
        self.chat_model = chat_model
        self.tools = list(tools)
        self.retry_backoff_s = retry_backoff_s
        self.rag_samples = rag_samples
        self.graph = build_graph(mode, self.tools, checkpointer=checkpointer)

    def _prepare(self, input: Any, config: dict | None = None) -> tuple[dict[str, Any], RunContext, dict[str, Any]]:
        image = self.resolve(input)
        ctx = RunContext(settings=self.settings, tools={t.name: t for t in self.tools}, image=image, mode=self.mode,
                         chat_model=self.chat_model, retry_backoff_s=self.retry_backoff_s, rag_samples=self.rag_samples)
        limit = recursion_limit(self.settings.max_steps)
        merged = {**(config or {})}
        merged["recursion_limit"] = min(merged.get("recursion_limit", limit), limit)
        return {"image": image.ref}, ctx, merged

    def check(self) -> None:
        """Load the retrieval models and the gallery now; raises a GeoAgentError (e.g. missing CLIP
        weights) instead of letting every photo fall back to a placeholder answer."""
        if self.services is not None:
            self.services.retriever.warm_up()

    def run(self, input: Any, config: dict | None = None) -> RunResult:
        """Like :meth:`invoke`, with the per-node and total timings."""
        start = time.perf_counter()
        state, ctx, cfg = self._prepare(input, config)
        prepared = time.perf_counter()
        timer = NodeTimer()
        cfg["callbacks"] = [*(cfg.get("callbacks") or []), timer]
        out = self.graph.invoke(state, config=cfg, context=ctx)
        return RunResult(prediction=out["prediction"], total_ms=(time.perf_counter() - start) * 1000,
                         prepare_ms=(prepared - start) * 1000, node_ms=dict(timer.node_ms), node_own_ms=timer.own_ms)

    def stream(self, input: Any, config: dict | None = None) -> Iterator[dict[str, Any]]:
        """Step events as they happen: ``{"type": "tool_start"|"tool"|"node"|"prediction", ...}``."""
        state, ctx, cfg = self._prepare(input, config)
        for mode, chunk in self.graph.stream(state, config=cfg, context=ctx, stream_mode=["custom", "updates"]):
            if mode == "custom":
                yield chunk
                continue
            for node, update in chunk.items():
                yield {"type": "node", "node": node}
                if isinstance(update, dict) and isinstance(update.get("prediction"), Prediction):
                    yield {"type": "prediction", "prediction": update["prediction"]}


def load_agent(settings: Settings | None = None, *, mode: str | None = None, chat_model: Any = None,
               services: Any = None, config_file: Any = None, tools: list[Any] | None = None,
               **agent_options: Any) -> Predictor:
    """Build a predictor from settings (``GEOAGENT_*`` / TOML, like the CLI).

    mode None -> "agent" when an LMM is configured (``settings.llm_model`` or ``chat_model``), else
    "policy". Graph modes give a :class:`GeoAgent`; registered modes ("retrieval", "rerank") give
    their predictor. ``tools`` overrides ``make_tools(services)`` (tests, custom tool sets).
    """
    if settings is None:
        settings = load_settings(config_file)
    if mode is None:
        mode = "agent" if (chat_model is not None or settings.llm_model) else "policy"
    check_mode(mode)
    if mode in ("agent", "rag") and chat_model is None:
        from agent.lmm.factory import make_chat_model

        chat_model = make_chat_model(settings)
    if tools is None:
        try:
            from tools import make_tools
            from tools.services import Services
        except ImportError as exc:
            raise GeoAgentError(f"the tools package is incomplete ({exc})", "reinstall geoagent") from exc
        services = services or Services(settings)
        tools = make_tools(services)
    if mode in GRAPH_MODES:
        return GeoAgent(settings, mode=mode, tools=tools, chat_model=chat_model, services=services, **agent_options)
    factory = predictor_plugins()[mode].load()
    return factory(settings, tools=tools, services=services)
