"""The public Python API: ``load_agent`` and ``GeoAgent`` (invoke, stream, batch, and follow-up
questions on a thread through ``stream``; see ``agent.threads``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage

from agent.context import RunContext
from agent.graphs import GRAPH_MODES, build_graph
from agent.graphs.llm_loop import recursion_limit
from agent.lmm.answer import bound_models, message_text
from agent.lmm.breaker import CircuitBreaker
from agent.lmm.calls import CallPolicy
from agent.modes import check_mode, predictor_plugins
from agent.prediction import Prediction
from agent.predictor import Predictor, RunResult
from agent.prompts import render
from agent.settings import Settings, load_settings
from agent.threads import QUESTION_KEY, FollowUp, ThreadError, check_free, thread_id, usage_delta, with_thread
from agent.timing import NodeTimer
from retrieval_service.core.errors import ConfigError, GeoAgentError
from retrieval_service.core.media import ResolvedImage, is_url, resolve_image

REQUIRED_TOOLS = frozenset({"read_exif", "retrieve", "cluster_candidates", "reverse_geocode", "verify_locations"})


class GeoAgent(Predictor):
    """Geolocates photos with one of the agent's graphs. Build with :func:`load_agent`.

    ``breaker`` (the LMM circuit breaker) is shared by every photo this agent runs; pass one to
    share it wider. With a ``checkpointer`` every photo runs on a thread (``config["configurable"]
    ["thread_id"]``, a fresh one when none is given) and ``stream({"question": ...}, config)``
    answers follow-up questions there (``agent.threads.Threads`` is the API built on it).
    ``retry_backoff_s`` and ``rag_samples`` override ``llm_retry_initial_s`` and ``rag_samples``.
    """

    def __init__(self, settings: Settings, *, mode: str, tools: list[Any], chat_model: Any = None,
                 services: Any = None, retry_backoff_s: float | None = None, rag_samples: int | None = None,
                 checkpointer: Any = None, breaker: CircuitBreaker | None = None) -> None:
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
        if rag_samples is not None and rag_samples < 1:
            raise ConfigError(f"rag_samples must be at least 1, got {rag_samples}", "pass --rag-samples 1 or more")
        self.settings = settings
        self.mode = mode
        self.services = services
        self.chat_model = chat_model
        self.tools = list(tools)
        self.breaker = breaker or CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_reset_s)
        self.policy = CallPolicy.from_settings(settings, self.breaker, initial_s=retry_backoff_s)
        self.rag_samples = rag_samples or settings.rag_samples
        self.checkpointer = checkpointer
        self.graph = build_graph(mode, self.tools, checkpointer=checkpointer)
        self.models = bound_models(chat_model, self.tools, settings.rag_temperature)

    def _context(self, image: ResolvedImage) -> RunContext:
        return RunContext(settings=self.settings, tools={t.name: t for t in self.tools}, image=image, mode=self.mode,
                          chat_model=self.chat_model, models=self.models, policy=self.policy, rag_samples=self.rag_samples)

    def _config(self, config: dict | None) -> dict[str, Any]:
        limit = recursion_limit(self.settings.max_steps)
        merged = {**(config or {})}
        merged["recursion_limit"] = min(merged.get("recursion_limit", limit), limit)
        return with_thread(merged) if self.checkpointer is not None else merged

    def _thread_values(self, cfg: dict[str, Any]) -> dict[str, Any]:
        if self.checkpointer is None or thread_id(cfg) is None:
            return {}
        return dict(self.graph.get_state(cfg).values or {})

    def _prepare(self, input: Any, config: dict | None = None) -> tuple[dict[str, Any], RunContext, dict[str, Any]]:
        image = self.resolve(input)
        cfg = self._config(config)
        if self.checkpointer is not None:
            check_free(self._thread_values(cfg), thread_id(cfg) or "", image.ref)
        return {"image": image.ref, "image_path": image.path}, self._context(image), cfg

    def _prepare_question(self, question: Any, config: dict | None) -> tuple[dict[str, Any], RunContext, dict[str, Any], dict]:
        if self.chat_model is None or self.mode not in ("agent", "rag"):
            raise ConfigError(f"follow-up questions need an LMM; this agent runs mode {self.mode!r}",
                              "set GEOAGENT_LLM_MODEL and use mode agent or rag")
        if self.checkpointer is None or thread_id(config) is None:
            raise ConfigError("follow-up questions need a thread",
                              "build the agent with load_agent(..., checkpointer=InMemorySaver()) and pass "
                              "config={'configurable': {'thread_id': ...}} to invoke and ask")
        if not isinstance(question, str) or not question.strip():
            raise GeoAgentError("the question is empty", "ask a question in words, e.g. 'could it be Belgium instead?'")
        cfg = self._config(config)
        values = self._thread_values(cfg)
        if values.get("prediction") is None:
            raise ThreadError(f"thread {thread_id(cfg)!r} holds no analysed photo yet",
                              "analyse a photo on it first: agent.invoke({'image': ...}, config)")
        path = values.get("image_path") or values["image"]
        image = resolve_image(path, self.settings.cache_dir) if not is_url(path) else ResolvedImage(ref=path, path=path)
        image = ResolvedImage(ref=values["image"], path=image.path)
        text = render("follow_up", question=question.strip())
        state = {"messages": [HumanMessage(text, additional_kwargs={QUESTION_KEY: question.strip()})], "turn": "follow_up"}
        return state, self._context(image), cfg, values

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
        """Events as they happen, each ``{"type": ...}``:

        * ``node`` (``node``): a graph step finished; ``tool_start`` (``tool``): a tool call begins;
          ``tool`` (a trace entry: ``tool``, ``args``, ``summary``, ``latency_ms``, ``error``,
          ``tokens``; ``tool == "lmm"`` for an LMM request);
        * ``token`` (``node``, ``text``): LMM text as it is generated (usage is kept in the trace);
        * ``prediction`` (``prediction``): the Prediction;
        * for ``{"question": ...}`` on a thread (a follow-up): ``reply`` (``text``, ``changed``,
          ``usage``, ``error``) last.

        ``input`` is ``{"image": ...}`` (a new photo) or ``{"question": "..."}`` (a follow-up on the
        thread of ``config``)."""
        values: dict | None = None
        if isinstance(input, dict) and "question" in input and "image" not in input:
            state, ctx, cfg, values = self._prepare_question(input["question"], config)
        else:
            state, ctx, cfg = self._prepare(input, config)
        for mode, chunk in self.graph.stream(state, config=cfg, context=ctx, stream_mode=["custom", "updates", "messages"]):
            if mode == "custom":
                yield chunk
            elif mode == "messages":
                message, meta = chunk
                if isinstance(message, AIMessageChunk) and (text := message_text(message.content)):
                    yield {"type": "token", "node": meta.get("langgraph_node"), "text": text}
            else:
                for node, update in chunk.items():
                    yield {"type": "node", "node": node}
                    if isinstance(update, dict) and isinstance(update.get("prediction"), Prediction):
                        yield {"type": "prediction", "prediction": update["prediction"]}
        if values is not None:
            outcome = self._outcome(cfg, values)
            yield {"type": "reply", "text": outcome.reply, "changed": outcome.changed, "usage": outcome.usage,
                   "error": outcome.error}

    def _outcome(self, cfg: dict[str, Any], before: dict[str, Any]) -> FollowUp:
        after = self._thread_values(cfg)
        prediction = after.get("prediction")
        changed = prediction is not None and prediction != before.get("prediction")
        last = next((m for m in reversed(after.get("messages") or []) if isinstance(m, AIMessage)), None)
        reply = message_text(last.content).strip() if last is not None else ""
        error = after.get("reply_error")
        if changed and not reply:
            reply = (f"I changed my answer to {prediction.lat:.5f}, {prediction.lon:.5f} "
                     f"({prediction.place.label('an unnamed place')}): {prediction.rationale}")
        return FollowUp(reply="" if error and not changed else reply, prediction=prediction, changed=changed,
                        usage=usage_delta(after.get("usage"), before.get("usage")), error=error)


def load_agent(settings: Settings | None = None, *, mode: str | None = None, chat_model: Any = None,
               services: Any = None, config_file: Any = None, tools: list[Any] | None = None,
               **agent_options: Any) -> Predictor:
    """Build a predictor from settings (``GEOAGENT_*`` / TOML, like the CLI).

    mode None -> "agent" when an LMM is configured (``settings.llm_model`` or ``chat_model``), else
    "policy". Graph modes give a :class:`GeoAgent` (``agent_options``: ``checkpointer``, ``breaker``,
    ``rag_samples``, ``retry_backoff_s``); registered modes ("retrieval", "rerank") give their
    predictor. ``tools`` overrides ``make_tools(services)`` (tests, custom tool sets).
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
