"""The public Python API: ``load_agent`` and ``GeoAgent`` (invoke, stream, batch, predict; follow-up
questions on a thread go through ``stream``, see ``agent.conversation``). Every call takes per-call
options as keywords (``RunOptions``: ``top_k``, ``mode``).

The photo is resolved once, here (``Photo.resolve``: a checked local file and its content hash),
and travels in the run context to every tool; the graph state keeps its handle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent.context import RunContext
from agent.conversation import questions
from agent.conversation.threads import check_free, thread_id, with_thread
from agent.decision.sources import Mixtures
from agent.events import STREAM_MODES, events
from agent.graphs import GRAPH_MODES, LMM_MODES, build_graph
from agent.graphs.llm_loop import recursion_limit
from agent.lmm.answer import bound_models
from agent.lmm.breaker import CircuitBreaker
from agent.lmm.calls import CallPolicy
from agent.modes import check_mode
from agent.options import RunOptions, TopK
from agent.prediction import Prediction
from agent.settings import Settings, load_settings
from agent.timing import NodeTimer
from agent.toolbox import make_tool_node
from retrieval_service.core.errors import ConfigError, GeoAgentError, ImageLoadError
from retrieval_service.core.photo import Photo

log = logging.getLogger(__name__)

REQUIRED_TOOLS = frozenset({"read_exif", "retrieve", "cluster_candidates", "reverse_geocode", "verify_locations"})
_INPUT_HINT = 'call invoke({"image": <path|bytes|PIL image|url>})'


class RunResult(BaseModel):
    """A prediction with the run's timings (the benchmarks use them)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    prediction: Prediction
    total_ms: float
    prepare_ms: float = Field(default=0.0, description="Resolving and checking the image before the run.")
    node_ms: dict[str, float] = Field(default_factory=dict, description="Wall time per graph node.")
    node_own_ms: dict[str, float] = Field(default_factory=dict, description="Per node, the time outside tools and models.")

    @property
    def tool_ms(self) -> float:
        """Time spent inside tools and the LMM (from the trace)."""
        return sum(t.latency_ms for t in self.prediction.trace)


class GeoAgent:
    """Geolocates photos with one of the agent's graphs. Build with :func:`load_agent`.

    ``breaker`` (the LMM circuit breaker) is shared by every photo this agent runs; pass one to
    share it wider. With a ``checkpointer`` every photo runs on a thread (``config["configurable"]
    ["thread_id"]``, a fresh one when none is given) and ``stream({"question": ...}, config)``
    answers follow-up questions there (``agent.conversation.threads.Threads`` is the API built on it).
    ``retry_backoff_s`` and ``rag_samples`` override ``llm_retry_initial_s`` and ``rag_samples``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        mode: str,
        tools: list[Any],
        chat_model: Any = None,
        services: Any = None,
        retry_backoff_s: float | None = None,
        rag_samples: int | None = None,
        checkpointer: Any = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if mode not in GRAPH_MODES:
            raise ConfigError(f"GeoAgent has no graph for mode {mode!r}", f"use one of: {', '.join(GRAPH_MODES)}")
        if mode in LMM_MODES and chat_model is None:
            raise ConfigError(
                f"mode {mode!r} needs an LMM but none is configured",
                "set GEOAGENT_LLM_MODEL (+ GEOAGENT_LLM_BASE_URL / GEOAGENT_LLM_API_KEY), or use --mode policy",
            )
        missing = REQUIRED_TOOLS - {t.name for t in tools}
        if missing:
            raise ConfigError(
                f"the tool set lacks {', '.join(sorted(missing))}", "build the tools with tools.make_tools(services)"
            )
        if rag_samples is not None and rag_samples < 1:
            raise ConfigError(f"rag_samples must be at least 1, got {rag_samples}", "pass --rag-samples 1 or more")
        self.settings = settings
        self.mode = mode
        self.services = services
        self.chat_model = chat_model
        self.tools = list(tools)
        self.tool_node = make_tool_node(self.tools)
        self.breaker = breaker or CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_reset_s)
        self.policy = CallPolicy.from_settings(settings, self.breaker, initial_s=retry_backoff_s)
        self.rag_samples = rag_samples or settings.rag_samples
        self.checkpointer = checkpointer
        self.graph = build_graph(mode, checkpointer=checkpointer)
        self._graphs: dict[str, Any] = {mode: self.graph}
        self.models = bound_models(chat_model, self.tools, settings.rag_temperature)

    # ------------------------------------------------------------------ a run's pieces
    def resolve(self, input: Any) -> Photo:
        """The photo of ``{"image": ...}`` (or of the image itself), resolved once into a checked
        local file (a ``Photo`` passes through as it is)."""
        if isinstance(input, dict):
            if "image" not in input:
                raise ImageLoadError("the input has no 'image' key", _INPUT_HINT)
            input = input["image"]
        if input is None:
            raise ImageLoadError("no image given", _INPUT_HINT)
        return Photo.resolve(input, self.settings.cache_dir, self.settings)

    def _graph(self, options: RunOptions) -> Any:
        """The graph of the call's mode (built once per mode)."""
        mode = options.mode or self.mode
        if mode in LMM_MODES and self.chat_model is None:
            raise ConfigError(
                f"mode {mode!r} needs an LMM but this agent has none",
                "set GEOAGENT_LLM_MODEL (or pass chat_model to load_agent), or call with mode='policy'",
            )
        if mode not in self._graphs:
            self._graphs[mode] = build_graph(mode, checkpointer=self.checkpointer)
        return self._graphs[mode]

    def _context(self, photo: Photo, options: RunOptions | None = None) -> RunContext:
        options = options or RunOptions()
        settings = self.settings if options.top_k is None else self.settings.model_copy(update={"top_k": options.top_k})
        return RunContext(
            settings=settings,
            tools={t.name: t for t in self.tools},
            photo=photo,
            tool_node=self.tool_node,
            mode=options.mode or self.mode,
            chat_model=self.chat_model,
            models=self.models,
            policy=self.policy,
            rag_samples=self.rag_samples,
            mixtures=Mixtures(),
        )

    def _config(self, config: dict | None) -> dict[str, Any]:
        limit = recursion_limit(self.settings.max_steps)
        merged = {**(config or {})}
        merged["recursion_limit"] = min(merged.get("recursion_limit", limit), limit)
        return with_thread(merged) if self.checkpointer is not None else merged

    def thread_values(self, config: dict[str, Any]) -> dict[str, Any]:
        """The state of the thread ``config`` names ({} without a checkpointer or a thread)."""
        if self.checkpointer is None or thread_id(config) is None:
            return {}
        return dict(self.graph.get_state(config).values or {})

    def _prepare(
        self, input: Any, config: dict | None = None, options: RunOptions | None = None
    ) -> tuple[dict[str, Any], RunContext, dict[str, Any]]:
        photo = self.resolve(input)
        cfg = self._config(config)
        if self.checkpointer is not None:
            check_free(self.thread_values(cfg), thread_id(cfg) or "", photo.ref)
        return {"photo": photo}, self._context(photo, options), cfg

    # ------------------------------------------------------------------ the public API
    def check(self) -> None:
        """Load the retrieval models and the gallery now; raises a GeoAgentError (e.g. missing CLIP
        weights) instead of letting every photo fall back to a placeholder answer."""
        if self.services is not None:
            self.services.retriever.warm_up()

    def run(self, input: Any, config: dict | None = None, **options: Any) -> RunResult:
        """Like :meth:`invoke`, with the per-node and total timings."""
        start = time.perf_counter()
        opts = RunOptions.of(options)
        graph = self._graph(opts)
        state, ctx, cfg = self._prepare(input, config, opts)
        prepared = time.perf_counter()
        timer = NodeTimer()
        cfg["callbacks"] = [*(cfg.get("callbacks") or []), timer]
        out = graph.invoke(state, config=cfg, context=ctx)
        return RunResult(
            prediction=out["prediction"],
            total_ms=(time.perf_counter() - start) * 1000,
            prepare_ms=(prepared - start) * 1000,
            node_ms=dict(timer.node_ms),
            node_own_ms=timer.own_ms,
        )

    def invoke(self, input: Any, config: dict | None = None, **options: Any) -> Prediction:
        """Geolocate one photo: ``{"image": path|bytes|PIL image|url}`` (or the image itself).
        ``options`` (``RunOptions``): ``top_k``, ``mode`` for this call only."""
        return self.run(input, config, **options).prediction

    def predict(self, image: Any, top_k: int = 5, **options: Any) -> TopK:
        """GeoCLIP-style: the ``top_k`` most probable places (lat, lon) with P(within 25 km) of each,
        the answer first (``TopK``; its ``prediction`` is the whole Prediction)."""
        from agent.decision.kept import from_model
        from retrieval_service.core.geo import distance_km

        if not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive whole number, got {top_k!r}", "call predict(image, top_k=5)")
        pred = self.invoke(image, **options)
        places = [(pred.lat, pred.lon)]
        for cluster in sorted(pred.clusters, key=lambda c: -c.score_mass):
            if len(places) >= top_k:
                break
            if all(distance_km(cluster.lat, cluster.lon, a, b) > 1.0 for a, b in places):
                places.append((cluster.lat, cluster.lon))
        mixture = from_model(pred.model) if pred.model is not None else None
        probs = [
            float(mixture.prob_within(a, b, [25])[0]) if mixture is not None else (pred.confidence if i == 0 else 0.0)
            for i, (a, b) in enumerate(places)
        ]
        return TopK(gps=places, probabilities=[round(p, 4) for p in probs], prediction=pred)

    def stream(self, input: Any, config: dict | None = None, **options: Any) -> Iterator[dict[str, Any]]:
        """Events as they happen (``agent.events``: node, tool_start, tool, token, prediction).

        ``input`` is ``{"image": ...}`` (a new photo) or ``{"question": "..."}`` (a follow-up on the
        thread of ``config``), which ends with a ``reply`` event (``text``, ``changed``, ``usage``,
        ``error``). ``options``: as :meth:`invoke` (a photo only)."""
        if not questions.is_question(input):
            opts = RunOptions.of(options)
            graph = self._graph(opts)
            state, ctx, cfg = self._prepare(input, config, opts)
            yield from events(graph.stream(state, config=cfg, context=ctx, stream_mode=STREAM_MODES))
            return
        question = questions.check_question(self, input["question"], config)
        cfg = self._config(config)
        before = self.thread_values(cfg)
        questions.check_analysed(before, thread_id(cfg))
        ctx = self._context(before["photo"].check_present(self.settings.cache_dir))
        yield from events(
            self.graph.stream(questions.question_input(question), config=cfg, context=ctx, stream_mode=STREAM_MODES)
        )
        outcome = questions.outcome(self.thread_values(cfg), before)
        yield {"type": "reply", "text": outcome.reply, "changed": outcome.changed, "usage": outcome.usage, "error": outcome.error}

    def batch(self, inputs: list[Any], *, max_workers: int = 1, **options: Any) -> list[Prediction | Exception]:
        """Geolocate many photos; a failed photo gives its exception in place of a Prediction."""
        RunOptions.of(options)  # a bad option is one error, not one per photo

        def one(item: Any) -> Prediction | Exception:
            try:
                return self.invoke(item, **options)
            except Exception as exc:  # reported per photo, the others go on
                log.warning("photo failed: %s", exc)
                return exc

        if max_workers <= 1:
            return [one(i) for i in inputs]
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            return list(pool.map(one, inputs))


def load_agent(
    settings: Settings | None = None,
    *,
    mode: str | None = None,
    chat_model: Any = None,
    services: Any = None,
    config_file: Any = None,
    tools: list[Any] | None = None,
    **agent_options: Any,
) -> GeoAgent:
    """Build an agent from settings (``GEOAGENT_*`` / TOML, like the CLI).

    mode None -> "agent" when an LMM is configured (``settings.llm_model`` or ``chat_model``), else
    "policy". ``agent_options``: ``checkpointer``, ``breaker``, ``rag_samples``, ``retry_backoff_s``.
    ``tools`` overrides ``make_tools(services)`` (tests, custom tool sets).
    """
    if settings is None:
        settings = load_settings(config_file)
    if mode is None:
        mode = "agent" if (chat_model is not None or settings.llm_model) else "policy"
    check_mode(mode)
    if mode in LMM_MODES and chat_model is None:
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
    return GeoAgent(settings, mode=mode, tools=tools, chat_model=chat_model, services=services, **agent_options)
