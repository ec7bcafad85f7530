"""The LangGraph state machine: observe -> (reason <-> tools) | inspect | rag -> decide.

* observe: read_exif (GPS short-circuits to decide, source "exif"), retrieve, cluster_candidates.
* reason/tools/gather: the LMM with tools bound (agent mode), under a step budget.
* inspect: the no-LMM evidence pass (reverse geocode, OCR, segmentation, verification); also the
  fallback when the LMM fails.
* rag: G3-style geo-diversified prompting, no tool calls.
* decide: always produces a Prediction.
"""

from __future__ import annotations

import json
import logging
import time
from functools import wraps
from typing import Any, Callable

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime

from agent import policy
from agent.final_answer import MalformedAnswer, parse_coordinates, parse_final_answer
from agent.images import image_content_block
from agent.llm import LLMFailure, invoke_with_retries
from agent.prompts import render
from agent.state import AgentContext, AgentState
from agent.tool_calls import call_tool, summarise

log = logging.getLogger(__name__)

EPS_KM = 50.0
STEP_MARGIN = 5  # graph steps kept in reserve so that decide always runs


def recursion_limit(max_steps: int) -> int:
    """The LangGraph recursion limit for a run: 3 graph steps per tool round plus the fixed path."""
    return 3 * max_steps + 20


def _timed(name: str, fn: Callable[..., dict]) -> Callable[..., dict]:
    @wraps(fn)
    def node(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
        ctx = runtime.context
        start, tools_before = time.perf_counter(), ctx.tool_ms
        try:
            return fn(state, runtime)
        finally:
            ctx.node_ms[name] = ctx.node_ms.get(name, 0.0) + (time.perf_counter() - start) * 1000
            ctx.node_tool_ms[name] = ctx.node_tool_ms.get(name, 0.0) + ctx.tool_ms - tools_before

    return node


def _emit(runtime: Runtime[AgentContext], event: dict[str, Any]) -> None:
    writer = getattr(runtime, "stream_writer", None)
    if writer is not None:
        writer(event)


def _tool(runtime: Runtime[AgentContext], name: str, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    _emit(runtime, {"type": "tool_start", "tool": name})
    result, entry = call_tool(runtime.context.tools, name, args)
    runtime.context.tool_ms += entry["latency_ms"]
    _emit(runtime, {"type": "tool", **entry})
    return result, entry


def _cluster_args(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    pts = [{"lat": c["lat"], "lon": c["lon"], "score": c["score"]} for c in candidates
           if c["source"] in ("gallery", "database")]
    return {"candidates": pts, "eps_km": EPS_KM, "min_samples": 2}


# ---------------------------------------------------------------- observe
def observe(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    ctx = runtime.context
    image = ctx.image_input
    trace: list[dict] = []
    evidence: list[dict] = []
    update: dict[str, Any] = {"steps": 0, "repairs": 0, "observations": {}, "final": None}
    if ctx.mode not in ("retrieval", "rerank"):  # the baselines stay pure retrieval
        exif, entry = _tool(runtime, "read_exif", {"image": image})
        trace.append(entry)
        update["exif"] = exif if "error" not in exif else None
        gps = exif.get("gps") if isinstance(exif, dict) else None
        if gps and gps.get("lat") is not None and gps.get("lon") is not None:
            evidence.append({"kind": "exif", "detail": f"The photo's EXIF holds GPS coordinates {gps['lat']:.5f}, {gps['lon']:.5f}.",
                             "lat": gps["lat"], "lon": gps["lon"], "weight": 1.0})
            update["final"] = {"lat": gps["lat"], "lon": gps["lon"], "confidence": 0.99, "source": "exif"}
            return {**update, "trace": trace, "evidence": evidence}
    args: dict[str, Any] = {"image": image, "k": ctx.settings.top_k}
    if ctx.mode == "rag":
        args["dissimilar"] = max(ctx.rag_neighbours)
    result, entry = _tool(runtime, "retrieve", args)
    trace.append(entry)
    warnings: list[str] = []
    candidates, dissimilar = ([], []) if "error" in result else policy.candidates_from_retrieval(result)
    if "error" in result:
        warnings.append(f"retrieval failed: {result['error']}")
    clusters: list[dict] = []
    if candidates:
        cres, entry = _tool(runtime, "cluster_candidates", _cluster_args(candidates))
        trace.append(entry)
        clusters = cres.get("clusters") or [] if "error" not in cres else []
        if clusters:
            top = clusters[0]
            evidence.append({"kind": "cluster", "detail": f"{top.get('support')} retrieval candidates cluster around "
                             f"{top['lat']:.3f}, {top['lon']:.3f}.", "lat": top["lat"], "lon": top["lon"],
                             "weight": top.get("score_mass")})
    update.update(candidates=candidates, dissimilar=dissimilar, clusters=clusters)
    if ctx.mode == "agent":
        update["messages"] = [
            SystemMessage(render("system", max_steps=ctx.settings.max_steps)),
            HumanMessage(render("observe", exif=_compact(update.get("exif")),
                                candidates=_compact([[c["lat"], c["lon"], round(c["score"], 3)] for c in candidates[:10]]),
                                clusters=_compact([[c["lat"], c["lon"], c.get("support"), c.get("score_mass"), c.get("radius_km")]
                                                   for c in clusters[:5]]))
                         + "\n\nWhen you are done, reply with your final answer:\n" + render("final_answer")),
        ]
    return {**update, "trace": trace, "evidence": evidence, "warnings": warnings}


def _compact(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":")) if value else "none"


def route_after_observe(state: AgentState, runtime: Runtime[AgentContext]) -> str:
    mode = runtime.context.mode
    if state.get("final") or mode in ("retrieval", "rerank"):
        return "decide"
    if not state.get("candidates") and mode != "agent":
        return "decide"
    return {"policy": "inspect", "agent": "reason", "rag": "rag"}[mode]


# ---------------------------------------------------------------- agent loop
def _model_input(state: AgentState, ctx: AgentContext) -> list[Any]:
    """The conversation with the photo attached to the first user message (never stored in state)."""
    block = ctx.cache.get("image_block")
    if block is None:
        block = ctx.cache["image_block"] = image_content_block(ctx.image_input)
    out, attached = [], False
    for msg in state.get("messages") or []:
        if not attached and isinstance(msg, HumanMessage):
            out.append(HumanMessage(content=[{"type": "text", "text": msg.content}, block], id=msg.id))
            attached = True
        else:
            out.append(msg)
    return out


def reason(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    ctx = runtime.context
    must_answer = bool(state.get("budget_exhausted")) or state.get("repairs", 0) > 0
    model = ctx.chat_model if must_answer else ctx.chat_model.bind_tools(list(ctx.tools.values()))
    try:
        reply, entries = invoke_with_retries(model, _model_input(state, ctx), retries=ctx.settings.llm_max_retries,
                                             backoff_s=ctx.retry_backoff_s)
    except LLMFailure as exc:
        msg = f"the LMM failed ({exc}); fell back to the no-LMM policy"
        log.warning(msg)
        return {"llm_failed": True, "trace": getattr(exc, "entries", []), "warnings": [msg]}
    for e in entries:
        _emit(runtime, {"type": "tool", **e})
    update: dict[str, Any] = {"messages": [reply], "trace": entries}
    calls = reply.tool_calls or []
    if calls and not must_answer:
        steps = state.get("steps", 0) + 1
        update["steps"] = steps
        remaining = state.get("remaining_steps", 10**6)
        if steps <= ctx.settings.max_steps and remaining > STEP_MARGIN + 3:
            return update
        update["budget_exhausted"] = True
        update["warnings"] = [f"step budget of {ctx.settings.max_steps} tool rounds used up; answering with the evidence so far"]
        update["messages"] = [reply, *_unrun(calls, "not run: the step budget is used up"),
                              HumanMessage(render("budget_exhausted") + "\n" + render("final_answer"))]
        return update
    if calls:  # tool calls where an answer was demanded
        update["messages"] = [reply, *_unrun(calls, "not run: no more tool calls, answer now")]
    try:
        answer = parse_final_answer(reply.content)
    except MalformedAnswer as exc:
        if state.get("repairs", 0) < 1:
            update["repairs"] = state.get("repairs", 0) + 1
            update["messages"] = [*update["messages"], HumanMessage(render("repair", problem=str(exc)) + "\n" + render("final_answer"))]
            update["warnings"] = [f"malformed final answer ({exc}); asked the LMM to repair it"]
        else:
            update["warnings"] = [f"malformed final answer after repair ({exc}); using the best verified candidate"]
            update["final"] = {"fallback": True}
        return update
    update["final"] = {**answer.model_dump(), "source": "lmm"}
    return update


def _unrun(calls: list[dict], why: str) -> list[ToolMessage]:
    return [ToolMessage(content=json.dumps({"error": why}), tool_call_id=c["id"], name=c["name"], status="error")
            for c in calls]


def route_after_reason(state: AgentState) -> str:
    if state.get("llm_failed"):
        return "inspect"
    if state.get("final"):
        return "decide"
    last = (state.get("messages") or [None])[-1]
    if isinstance(last, AIMessage) and last.tool_calls:
        return "tools"
    if isinstance(last, HumanMessage):  # a repair or budget request
        return "reason"
    return "decide"


def _inject_image(request: Any, execute: Callable[[Any], Any]) -> Any:
    """ToolNode interceptor: hand the tools the real photo and time the call."""
    ctx: AgentContext | None = getattr(request.runtime, "context", None)
    call = request.tool_call
    if request.tool is not None and ctx is not None and "image" in (request.tool.args or {}):
        request = request.override(tool_call={**call, "args": {**call["args"], "image": ctx.image_input}})
    start = time.perf_counter()
    out = execute(request)
    if isinstance(out, ToolMessage):
        out.response_metadata = {**(out.response_metadata or {}), "latency_ms": (time.perf_counter() - start) * 1000}
    return out


def gather(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Fold the latest tool results into candidates, clusters, observations and the trace."""
    messages = state.get("messages") or []
    calls: dict[str, dict] = {}
    new: list[ToolMessage] = []
    for msg in reversed(messages):
        if isinstance(msg, ToolMessage):
            new.append(msg)
        elif isinstance(msg, AIMessage):
            calls = {c["id"]: c for c in msg.tool_calls or []}
            break
    candidates = list(state.get("candidates") or [])
    clusters = state.get("clusters") or []
    obs = dict(state.get("observations") or {})
    trace = []
    for msg in reversed(new):
        call = calls.get(msg.tool_call_id, {"name": msg.name or "?", "args": {}})
        try:
            result = json.loads(msg.content) if isinstance(msg.content, str) else {"result": msg.content}
        except json.JSONDecodeError:
            result = {"error": msg.content} if msg.status == "error" else {"result": msg.content}
        if not isinstance(result, dict):
            result = {"result": result}
        if msg.status == "error" and "error" not in result:
            result = {"error": str(msg.content)}
        args = {k: v for k, v in (call.get("args") or {}).items() if k not in ("image", "candidates")}
        entry = {"tool": call["name"], "args": args, "summary": summarise(call["name"], result),
                 "latency_ms": round((msg.response_metadata or {}).get("latency_ms", 0.0), 3),
                 "error": str(result["error"])[:300] if "error" in result else None}
        trace.append(entry)
        _emit(runtime, {"type": "tool", **entry})
        if "error" in result:
            continue
        name = call["name"]
        if name == "retrieve":
            found, _ = policy.candidates_from_retrieval(result)
            seen = {(round(c["lat"], 4), round(c["lon"], 4)) for c in candidates}
            candidates += [c for c in found if (round(c["lat"], 4), round(c["lon"], 4)) not in seen]
        elif name == "cluster_candidates":
            clusters = result.get("clusters") or clusters
        elif name == "reverse_geocode":
            a = call.get("args") or {}
            obs["geocode"] = {**result, "_at": [a.get("lat"), a.get("lon")]} if "lat" in a and "lon" in a else result
        elif name in ("read_text", "segment_scene", "verify_locations"):
            obs[{"reverse_geocode": "geocode", "read_text": "text", "segment_scene": "scene",
                 "verify_locations": "verify"}[name]] = result
    return {"candidates": candidates, "clusters": clusters, "observations": obs, "trace": trace}


# ---------------------------------------------------------------- no-LMM evidence pass
def inspect(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    image = runtime.context.image_input
    candidates, clusters = state.get("candidates") or [], state.get("clusters") or []
    obs = dict(state.get("observations") or {})
    trace: list[dict] = []
    evidence: list[dict] = []
    if not candidates:
        return {"observations": obs}
    anchor = clusters[0] if clusters else max(candidates, key=lambda c: c["score"])
    geo, entry = _tool(runtime, "reverse_geocode", {"lat": anchor["lat"], "lon": anchor["lon"]})
    trace.append(entry)
    if "error" not in geo:
        obs["geocode"] = {**geo, "_at": [anchor["lat"], anchor["lon"]]}
    for name, key in (("read_text", "text"), ("segment_scene", "scene")):
        res, entry = _tool(runtime, name, {"image": image})
        trace.append(entry)
        if "error" not in res:
            obs[key] = res
    ocr = policy.ocr_candidates(obs.get("text"))
    for c in ocr:
        evidence.append({"kind": "ocr", "detail": f"Text in the photo names {c['payload'].get('name')}.",
                         "lat": c["lat"], "lon": c["lon"]})
    options = policy.build_options(candidates, clusters, ocr)
    res, entry = _tool(runtime, "verify_locations",
                       {"image": image, "candidates": [{"lat": o.lat, "lon": o.lon} for o in options]})
    trace.append(entry)
    if "error" not in res:
        obs["verify"] = res
    if scene := obs.get("scene"):
        shares = sorted((scene.get("shares") or {}).items(), key=lambda kv: -kv[1])[:3]
        evidence.append({"kind": "scene", "detail": "Scene segmentation: " + ", ".join(f"{k} {v:.0%}" for k, v in shares)})
    return {"observations": obs, "trace": trace, "evidence": evidence, "candidates": candidates + ocr}


# ---------------------------------------------------------------- RAG (G3)
def rag(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    ctx = runtime.context
    image = ctx.image_input
    similar = [c for c in state.get("candidates") or [] if c["source"] in ("gallery", "database")]
    dissimilar = state.get("dissimilar") or []
    block = image_content_block(image)
    trace: list[dict] = []
    messages: list[Any] = []
    proposals: list[dict] = []
    failures = 0
    total = 0
    for n in ctx.rag_neighbours:
        if n:
            neighbours = render("rag_neighbours", similar=_compact([[round(c["lat"], 4), round(c["lon"], 4)] for c in similar[:n]]),
                                dissimilar=_compact([[round(c["lat"], 4), round(c["lon"], 4)] for c in dissimilar[:n]]))
        else:
            neighbours = ""
        text = render("rag_candidates", neighbours=neighbours)
        for _ in range(ctx.rag_samples):
            total += 1
            try:
                reply, entries = invoke_with_retries(ctx.chat_model, [HumanMessage(content=[{"type": "text", "text": text}, block])],
                                                     retries=ctx.settings.llm_max_retries, backoff_s=ctx.retry_backoff_s)
            except LLMFailure as exc:
                failures += 1
                trace += getattr(exc, "entries", [])
                continue
            trace += entries
            messages += [HumanMessage(text), reply]
            for lat, lon in parse_coordinates(reply.content)[:1]:
                proposals.append({"lat": lat, "lon": lon, "score": 0.0, "source": "lmm", "payload": {"neighbours": n}})
    if failures == total:
        return {"llm_failed": True, "trace": trace, "warnings": ["every RAG prompt failed; fell back to the no-LMM policy"]}
    pool = proposals + similar[:5]
    options = [policy.Option(lat=c["lat"], lon=c["lon"], source=c["source"]) for c in pool]
    res, entry = _tool(runtime, "verify_locations", {"image": image, "candidates": [{"lat": o.lat, "lon": o.lon} for o in options]})
    trace.append(entry)
    policy.attach_verification(options, res if "error" not in res else None)
    ranked = sorted(options, key=lambda o: -(o.verify if o.verify is not None else -2.0))
    best = ranked[0]
    support = policy.support_share(best.lat, best.lon, similar)
    final = {"lat": best.lat, "lon": best.lon, "confidence": round(max(0.02, min(0.95, support)), 4),
             "source": best.source, "rationale": f"{len(proposals)} LMM proposals from prompts with "
             f"{', '.join(str(n) for n in ctx.rag_neighbours)} neighbours, verified against the photo with "
             f"{len(similar[:5])} retrieval candidates; the best verification score "
             f"({best.verify if best.verify is not None else float('nan'):.3f}) is a {best.source} candidate.",
             "alternatives": [{"lat": o.lat, "lon": o.lon, "score": o.verify or 0.0, "source": o.source} for o in ranked[1:6]]}
    warnings = [f"{failures} of {total} RAG prompts failed"] if failures else []
    return {"candidates": (state.get("candidates") or []) + proposals, "messages": messages, "trace": trace,
            "final": final, "warnings": warnings,
            "evidence": [{"kind": "verification", "detail": f"Best verified location scored {best.verify}.",
                          "lat": best.lat, "lon": best.lon, "weight": best.verify}]}


def route_after_rag(state: AgentState) -> str:
    return "inspect" if state.get("llm_failed") else "decide"


# ---------------------------------------------------------------- decide
def decide(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    from agent.decision import build_prediction

    return build_prediction(state, runtime, _tool)


def build_graph(tools: list[Any], checkpointer: Any = None) -> Any:
    """Compile the agent graph for a tool set (one graph for every mode; the context picks the path)."""
    g = StateGraph(AgentState, context_schema=AgentContext)
    g.add_node("observe", _timed("observe", observe))
    g.add_node("reason", _timed("reason", reason))
    g.add_node("tools", ToolNode(list(tools), handle_tool_errors=True, wrap_tool_call=_inject_image))
    g.add_node("gather", _timed("gather", gather))
    g.add_node("inspect", _timed("inspect", inspect))
    g.add_node("rag", _timed("rag", rag))
    g.add_node("decide", _timed("decide", decide))
    g.add_edge(START, "observe")
    g.add_conditional_edges("observe", route_after_observe, ["decide", "inspect", "reason", "rag"])
    g.add_conditional_edges("reason", route_after_reason, ["inspect", "decide", "tools", "reason"])
    g.add_edge("tools", "gather")
    g.add_edge("gather", "reason")
    g.add_edge("inspect", "decide")
    g.add_conditional_edges("rag", route_after_rag, ["inspect", "decide"])
    g.add_edge("decide", END)
    return g.compile(checkpointer=checkpointer)
