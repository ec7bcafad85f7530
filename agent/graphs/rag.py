"""The published second stage of the retrieval-augmented papers (DualGeo, G3, Img2Loc): the image
database's nearest photos -> DualGeo's geographic re-rank -> the LMM over the photo with the
similar and dissimilar photos' coordinates -> verification of its proposals.

* observe: retrieval (``top_k`` similar photos, ``max(NEIGHBOURS)`` dissimilar ones: the farthest
  photos of the same database, searched with the negated query) and the re-rank of the similar
  photos (``agent.graphs.neighbours``);
* propose: prompts with 0, 5, 10 and 15 neighbours of each list (G3's and Img2Loc's prompts,
  ``prompts/rag_*.txt``), ``rag_samples`` replies each at ``rag_temperature``; "similar" is the
  database's photos in re-rank order (main cluster first), "dissimilar" the same database's
  farthest, and the GPS gallery's candidates are offered separately, named as coordinates from the
  gallery. Without an image database the prompt says so;
* the proposals are voted on by the decision core's probability model (each a point mass; the
  mixture's modes are the voted places), and image-to-GPS verification picks among the voted places
  and the best re-ranked retrieval candidates.

observe -> propose -> verify_proposals -> choose_verified -> name_place -> decide
(no usable reply at all -> the policy's steps decide; a follow-up question on the thread -> the LMM loop.)

Each reply is a ``propose_location`` tool call validated by pydantic; a reply without a valid one
is counted as unparseable in the warnings. Voting is one function, :func:`vote`, on
``agent.decision.sources.vote``.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import HumanMessage
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from agent.context import RunContext
from agent.decision import rules
from agent.decision.sources import Mixtures
from agent.graphs.classify import parse_problem
from agent.graphs.llm_loop import add_loop
from agent.graphs.neighbours import neighbours_of, render_neighbours
from agent.graphs.policy import add_ending, add_policy_steps
from agent.graphs.steps import make_observe, route_after_observe, verify
from agent.lmm.answer import PROPOSE_LOCATION, InvalidAnswer, LocationProposal, propose_location_tool, validate_args
from agent.lmm.calls import LLMFailure, add_usage, call_lmm
from agent.lmm.images import image_content_block
from agent.prediction import Evidence, Option, TraceEntry, Usage
from agent.prompts import render
from agent.state import Answer, RagState, observations
from agent.toolbox import emit, tool_reply
from retrieval_service.core.types import Candidate

NEIGHBOURS = (0, 5, 10, 15)
VERIFIED_SIMILAR = 5
VERIFIED_VOTES = 5


def vote(proposals: list[Candidate], mixtures: Mixtures) -> list[Option]:
    """The proposals combined by the decision core's probability model (``Mixtures.vote``: each
    proposal a point mass with the LMM's spread), one option per mode of that mixture, scored by its
    share of the probability mass, heaviest first."""
    mixture = mixtures.vote(proposals) if proposals else None
    if mixture is None:
        return []
    modes = mixture.modes()
    total = sum(m.mass for m in modes) or 1.0
    return [
        Option(
            lat=m.lat,
            lon=m.lon,
            score=round(m.mass / total, 4),
            source="lmm",
            label="LMM vote",
            votes=len(m.members),
            proposals=len(proposals),
        )
        for m in modes
    ]


def _proposal(reply: Any, neighbours: int) -> tuple[Candidate | None, str | None]:
    """The reply's proposal, or why there is none."""
    for bad in reply.invalid_tool_calls or []:
        return None, f"arguments that are not valid JSON ({parse_problem(bad)})"
    calls = [c for c in reply.tool_calls or [] if c["name"] == PROPOSE_LOCATION]
    if not calls:
        return None, "no propose_location call"
    try:
        point = validate_args(LocationProposal, calls[0]["args"])
    except InvalidAnswer as exc:
        return None, f"invalid propose_location arguments ({exc})"
    return Candidate(lat=point.lat, lon=point.lon, score=0.0, source="lmm", payload={"neighbours": neighbours}), None


def propose(state: RagState, runtime: Runtime[RunContext]) -> Command[Literal["inspect", "verify_proposals"]]:
    """``rag_samples`` replies to each prompt (0/5/10/15 neighbours); the valid proposals are voted on."""
    ctx = runtime.context
    nb = neighbours_of(state)
    block = image_content_block(ctx.photo, max_side=ctx.settings.llm_image_max_side)
    model = ctx.models.get("propose") or ctx.chat_model.bind_tools([propose_location_tool()]).bind(
        temperature=ctx.settings.rag_temperature
    )
    trace: list[TraceEntry] = []
    messages: list[Any] = []
    proposals: list[Candidate] = []
    usage, spent = Usage(), state.get("usage")
    replies = failures = total = 0
    unparseable: list[str] = []
    stopped: LLMFailure | None = None
    for n in NEIGHBOURS:
        neighbours = render_neighbours("rag_neighbours", "rag_no_database", nb, n) if n else ""
        text = render("rag_candidates", neighbours=neighbours)
        for _ in range(ctx.rag_samples):
            total += 1
            if stopped is not None:  # the breaker is open or the photo's limits are used up
                failures += 1
                continue
            try:
                result = call_lmm(
                    model,
                    [HumanMessage(content=[{"type": "text", "text": text}, block])],
                    ctx.policy,
                    spent=add_usage(spent, usage),
                )
            except LLMFailure as exc:
                failures += 1
                trace += exc.entries
                usage = add_usage(usage, exc.usage)
                stopped = exc if exc.kind in ("breaker", "limit") else None
                continue
            replies += 1
            trace += result.entries
            usage = add_usage(usage, result.usage)
            reply = result.reply
            answered = [tool_reply(c["id"], c["name"], "recorded", error=False) for c in reply.tool_calls or []]
            answered += [
                tool_reply(c.get("id") or "", c.get("name") or "invalid", "unparseable") for c in reply.invalid_tool_calls or []
            ]
            messages += [HumanMessage(text), reply, *answered]
            proposal, why = _proposal(reply, n)
            if proposal is None:
                unparseable.append(why or "unparseable")
            else:
                proposals.append(proposal)
    for e in trace:
        emit(runtime, {"type": "tool", **e.model_dump()})
    if not replies:
        why = f" ({stopped})" if stopped is not None else ""
        return Command(
            goto="inspect",
            update={
                "llm_failed": True,
                "trace": trace,
                "usage": usage,
                "warnings": [f"every RAG prompt failed{why}; fell back to the no-LMM policy"],
            },
        )
    warnings = [f"{failures} of {total} RAG prompts failed" + (f" ({stopped})" if stopped else "")] if failures else []
    if unparseable:
        kinds = sorted(set(unparseable))
        warnings.append(f"{len(unparseable)} of {replies} RAG replies were unparseable: {'; '.join(kinds)[:300]}")
    voted = vote(proposals, ctx.mixtures)
    options = [*voted[:VERIFIED_VOTES], *(Option.of(c) for c in nb.verifiable(VERIFIED_SIMILAR))]
    return Command(
        goto="verify_proposals",
        update={
            "candidates": proposals,
            "proposals": proposals,
            "options": options,
            "messages": messages,
            "trace": trace,
            "usage": usage,
            "warnings": warnings,
        },
    )


def choose_verified(state: RagState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The option the photo verifies best; confidence from its retrieval support."""
    ctx = runtime.context
    opts = state.get("options") or []
    if not opts:
        return {}
    ranked = sorted(opts, key=lambda o: -(o.verification if o.verification is not None else -2.0))
    best = ranked[0]
    candidates = state.get("candidates") or []
    nb = neighbours_of(state)
    retrieval = observations(state).retrieval
    mixture = rules.retrieval_mixture(ctx.mixtures, candidates, retrieval.gallery_rest if retrieval else [])
    support = rules.support_within(mixture, best.lat, best.lon)
    proposals = state.get("proposals") or []
    groups = [o for o in opts if o.votes is not None]
    score = best.verification
    votes = f", {best.votes} of {best.proposals} votes" if best.votes is not None else ""
    checked = nb.verifiable(VERIFIED_SIMILAR)
    kind = "similar database photos" if nb.has_database else "GPS gallery candidates"
    scored = f"scored {score:.3f}" if score is not None else "was not scored (verification failed)"
    what = best.label or {"lmm": "LMM vote", "database": "similar database photo", "gallery": "GPS gallery candidate"}.get(
        best.source, best.source
    )
    rationale = (
        f"{len(proposals)} LMM proposals ({ctx.rag_samples} per prompt at temperature {ctx.settings.rag_temperature:g}, "
        f"prompts with {', '.join(str(n) for n in NEIGHBOURS)} neighbours) voted into {len(groups)} places, "
        f"verified against the photo with the {len(checked)} best re-ranked {kind}; the answer, "
        f"the best verified, {scored}: {what}{votes}."
    )
    alternatives = [Option(lat=o.lat, lon=o.lon, score=o.verification or 0.0, source=o.source) for o in ranked[1:6]]
    answer = Answer(
        lat=best.lat,
        lon=best.lon,
        confidence=round(max(0.02, min(0.95, support)), 4),
        source=best.source,
        rationale=rationale,
        alternatives=alternatives,
        chosen=best.model_copy(update={"support": round(support, 4)}),
    )
    evidence = Evidence(
        kind="verification", detail=f"The best verified location {scored}{votes}.", lat=best.lat, lon=best.lon, weight=score
    )
    return {"answer": answer, "evidence": [evidence]}


def build_rag_graph(checkpointer: Any = None) -> Any:
    graph = StateGraph(RagState, context_schema=RunContext)
    graph.add_node("observe", make_observe(dissimilar=max(NEIGHBOURS)))
    graph.add_node("propose", propose)
    graph.add_node("verify_proposals", verify)
    graph.add_node("choose_verified", choose_verified)
    add_policy_steps(graph)
    add_ending(graph)
    add_loop(graph)
    graph.add_edge(START, "observe")
    graph.add_conditional_edges("observe", route_after_observe("propose"), ["propose", "name_place", "decide"])
    graph.add_edge("verify_proposals", "choose_verified")
    graph.add_edge("choose_verified", "name_place")
    return graph.compile(checkpointer=checkpointer, name="geoagent-rag")
