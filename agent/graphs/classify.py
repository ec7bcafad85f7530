"""What an LMM reply means for the loop, decided by one pure function: ``classify(reply, budget)``.

The loop's ``reason`` node makes the request and turns the ``Outcome`` into a ``Command``; nothing
else routes the loop and no routing flag lives in the state. Outcomes (``Outcome.kind`` -> next node):

* ``answer``: a valid ``submit_answer`` -> check_answer (other calls of that reply are not run);
* ``tools``: tool calls to run (invalid ones answered with the parse problem) -> tools;
* ``notes``: the first reply only notes what the photo shows (the prompt asks for that) -> reason;
* ``repair``: a reply that should answer and does not, the first time -> reason (a text reply: asked
  again) or tools (its calls are answered, the problem named);
* ``fallback``: the repair round is spent in the photo's analysis -> options (the policy decides);
* ``reply``: a text reply to a follow-up question -> END;
* ``give_up``: the repair round is spent in a follow-up -> END (with the problem as the reply error).

Every tool call of the reply is answered by exactly one tool message: here (``Outcome.replies``:
invalid JSON, ``submit_answer`` receipts and problems, calls that cannot run) or by the tools node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, ToolMessage

from agent.lmm.answer import SUBMIT_ANSWER, FinalAnswer, InvalidAnswer, message_text, validate_args
from agent.state import Loop
from agent.toolbox import tool_reply

MAX_REPAIRS = 1
Kind = Literal["answer", "tools", "notes", "repair", "fallback", "reply", "give_up"]
Next = Literal["check_answer", "tools", "reason", "options", "__end__"]


@dataclass(frozen=True)
class Budget:
    """The loop's budget as classify needs it: the turn's counters and the step limit."""

    loop: Loop
    max_steps: int

    @property
    def must_answer(self) -> bool:
        """The steps are spent: only ``submit_answer`` may come now."""
        return self.loop.steps >= self.max_steps


@dataclass(frozen=True)
class Outcome:
    """What a reply means: its kind, the next node, the tool messages the loop writes itself, the
    valid final answer (``answer``), the problem (``repair``, ``fallback``, ``give_up``) and the loop
    budget after it."""

    kind: Kind
    next: Next
    loop: Loop
    replies: list[ToolMessage] = field(default_factory=list)
    final: FinalAnswer | None = None
    problem: str | None = None


def parse_problem(bad: Mapping[str, Any]) -> str:
    """What was wrong with an invalid call's arguments, in one line (the JSON parser's message)."""
    error = str(bad.get("error") or "unparseable")
    for line in error.splitlines():
        if "JSONDecodeError" in line or "Expecting" in line:
            return line.strip().removeprefix("Received ")[:200]
    return error.splitlines()[0][:200] if error.strip() else "unparseable"


def _answer_calls(reply: AIMessage, must_answer: bool) -> tuple[list[ToolMessage], FinalAnswer | None, str | None]:
    """The tool messages the loop writes itself for ``reply``'s calls, the valid final answer if
    one was submitted, and the problem of a failed answer (None when there is none)."""
    answers: list[ToolMessage] = []
    final: FinalAnswer | None = None
    problem: str | None = None
    for bad in reply.invalid_tool_calls or []:
        why = (
            f"the arguments of {bad.get('name') or 'this call'} are not valid JSON ({parse_problem(bad)}); "
            "call it again with a JSON object"
        )
        answers.append(tool_reply(bad.get("id") or "", bad.get("name") or "invalid", why))
        if bad.get("name") == SUBMIT_ANSWER:
            problem = why
    calls = reply.tool_calls or []
    for call in (c for c in calls if c["name"] == SUBMIT_ANSWER):
        if final is not None:
            answers.append(tool_reply(call["id"], SUBMIT_ANSWER, "ignored: an answer was already submitted in this reply"))
            continue
        try:
            final = validate_args(FinalAnswer, call["args"])
            answers.append(tool_reply(call["id"], SUBMIT_ANSWER, "answer received", error=False))
        except InvalidAnswer as exc:
            problem = f"invalid submit_answer arguments: {exc}"
            answers.append(
                tool_reply(call["id"], SUBMIT_ANSWER, f"{problem}. Call submit_answer again with corrected arguments.")
            )
    others = [c for c in calls if c["name"] != SUBMIT_ANSWER]
    if final is not None:
        return [*answers, *(tool_reply(c["id"], c["name"], "not run: the answer was submitted") for c in others)], final, None
    if must_answer:  # only submit_answer may come now: anything else is a failed answer
        answers += [tool_reply(c["id"], c["name"], "not run: the step budget is used up; call submit_answer now") for c in others]
        if others or reply.invalid_tool_calls:
            problem = problem or "tools were called after the step budget was used up"
    return answers, None, problem


def classify(reply: AIMessage, budget: Budget) -> Outcome:
    """What ``reply`` means for a loop with ``budget`` (see the module docs)."""
    loop = budget.loop
    follow = loop.turn == "follow_up"
    replies, final, problem = _answer_calls(reply, budget.must_answer)
    calls, invalid = reply.tool_calls or [], reply.invalid_tool_calls or []
    has_calls = bool(calls or invalid)
    after = loop.model_copy(update={"steps": loop.steps + 1}) if has_calls else loop
    if final is not None:
        return Outcome("answer", "check_answer", after, replies, final=final)
    if follow and not has_calls:
        return Outcome("reply", "__end__", after, replies)
    if not has_calls and loop.steps == 0 and loop.repairs == 0 and not budget.must_answer and message_text(reply.content).strip():
        return Outcome("notes", "reason", after.model_copy(update={"steps": 1}), replies)
    if problem is None and not has_calls:
        problem = "the reply did not call submit_answer"
    if problem is None:
        return Outcome("tools", "tools", after, replies)
    if loop.repairs >= MAX_REPAIRS:  # the repair round is spent: whatever is still pending does not run
        answered = {m.tool_call_id for m in replies}
        replies = [
            *replies,
            *(
                tool_reply(c["id"], c["name"], "not run: the loop ended without a valid answer")
                for c in calls
                if c["id"] not in answered
            ),
        ]
        if follow:
            return Outcome("give_up", "__end__", after, replies, problem=problem)
        return Outcome("fallback", "options", after.model_copy(update={"repairs": loop.repairs + 1}), replies, problem=problem)
    repaired = after.model_copy(update={"repairs": loop.repairs + 1})
    return Outcome("repair", "tools" if has_calls else "reason", repaired, replies, problem=problem)
