"""``classify(reply, budget)``: the one function that decides where the LMM loop goes, on every outcome."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage

from agent.graphs.classify import MAX_REPAIRS, Budget, classify
from agent.state import Loop
from tests.agent.fakes import call, submit

FINAL = {"lat": 48.86, "lon": 2.35, "confidence": 0.8, "rationale": "signs in French; cluster of 5 around Paris"}


def _budget(steps: int = 1, repairs: int = 0, turn: str = "analysis", max_steps: int = 4, warned: bool = False) -> Budget:
    return Budget(Loop(turn=turn, steps=steps, repairs=repairs, warned=warned), max_steps)  # type: ignore[arg-type]


def _errors(outcome) -> dict[str, str]:
    return {m.tool_call_id: json.loads(m.content)["error"] for m in outcome.replies if m.status == "error"}


def test_a_valid_answer_goes_to_the_check_and_other_calls_do_not_run():
    reply = AIMessage("", tool_calls=[call("submit_answer", FINAL, "a"), call("retrieve", {}, "r")])
    out = classify(reply, _budget())
    assert (out.kind, out.next) == ("answer", "check_answer") and out.final is not None and out.final.lat == 48.86
    assert out.loop.steps == 2 and out.problem is None
    assert [m.tool_call_id for m in out.replies] == ["a", "r"] and "not run" in _errors(out)["r"]


def test_tool_calls_go_to_the_tools_and_count_a_step():
    out = classify(AIMessage("", tool_calls=[call("retrieve", {"k": 5}, "r"), call("read_text", {}, "t")]), _budget(steps=2))
    assert (out.kind, out.next, out.loop.steps, out.replies) == ("tools", "tools", 3, [])


def test_invalid_json_arguments_are_answered_and_the_valid_calls_still_run():
    reply = AIMessage(
        "",
        tool_calls=[call("retrieve", {}, "r")],
        invalid_tool_calls=[
            {"name": "verify_locations", "args": "{bad", "id": "v", "error": "Expecting value", "type": "invalid_tool_call"}
        ],
    )
    out = classify(reply, _budget())
    assert (out.kind, out.next) == ("tools", "tools") and "not valid JSON" in _errors(out)["v"]


def test_the_first_reply_may_only_note_what_the_photo_shows():
    out = classify(AIMessage("A harbour, red roofs, French signs."), _budget(steps=0))
    assert (out.kind, out.next, out.loop.steps) == ("notes", "reason", 1)
    # only once: a second text reply needs repair
    again = classify(AIMessage("Still thinking."), _budget(steps=1))
    assert (again.kind, again.next, again.loop.repairs) == ("repair", "reason", 1)
    assert again.problem == "the reply did not call submit_answer"


def test_an_invalid_answer_is_repaired_once_then_the_policy_decides():
    bad = submit({"lat": 91, "lon": 0, "confidence": 0.5, "rationale": "r"})
    first = classify(bad, _budget())
    assert (first.kind, first.next, first.loop.repairs) == ("repair", "tools", 1) and "lat" in first.problem
    assert "submit_answer again" in _errors(first)["answer"]
    second = classify(bad, _budget(repairs=MAX_REPAIRS))
    assert (second.kind, second.next, second.loop.repairs) == ("fallback", "options", MAX_REPAIRS + 1)


def test_calls_after_the_budget_are_not_run():
    reply = AIMessage("", tool_calls=[call("retrieve", {}, "r")])
    out = classify(reply, _budget(steps=4, max_steps=4, warned=True))
    assert (out.kind, out.next) == ("repair", "tools") and out.problem == "tools were called after the step budget was used up"
    assert "step budget is used up" in _errors(out)["r"]
    pending = AIMessage("", tool_calls=[call("retrieve", {}, "r2")])
    spent = classify(pending, _budget(steps=4, max_steps=4, repairs=1))
    assert (spent.kind, spent.next) == ("fallback", "options") and set(_errors(spent)) == {"r2"}


def test_follow_up_text_is_the_reply_and_a_spent_repair_gives_up():
    out = classify(AIMessage("It could be Lyon, but the signs say Paris."), _budget(steps=0, turn="follow_up"))
    assert (out.kind, out.next) == ("reply", "__end__")
    bad = submit({"lat": 0, "lon": 0, "confidence": 2, "rationale": "r"})
    gave_up = classify(bad, _budget(turn="follow_up", repairs=MAX_REPAIRS))
    assert (gave_up.kind, gave_up.next) == ("give_up", "__end__") and "confidence" in gave_up.problem


@pytest.mark.parametrize("kind", ["answer", "tools", "notes", "repair", "fallback", "reply", "give_up"])
def test_every_outcome_is_reachable_and_its_next_node_is_in_the_graph(kind):
    from agent.graphs.llm_loop import build_agent_graph

    replies = {
        "answer": (submit(FINAL), _budget()),
        "tools": (AIMessage("", tool_calls=[call("retrieve", {}, "r")]), _budget()),
        "notes": (AIMessage("notes"), _budget(steps=0)),
        "repair": (AIMessage("no answer"), _budget()),
        "fallback": (AIMessage("no answer"), _budget(repairs=1)),
        "reply": (AIMessage("text"), _budget(turn="follow_up")),
        "give_up": (AIMessage("", tool_calls=[call("submit_answer", {}, "a")]), _budget(turn="follow_up", repairs=1)),
    }
    out = classify(*replies[kind])
    assert out.kind == kind
    nodes = set(build_agent_graph().get_graph().nodes)
    assert out.next in nodes or out.next == "__end__"
