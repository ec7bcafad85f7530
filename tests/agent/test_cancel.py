"""Work stops when nobody waits: a run inside ``cancel_scope`` stops at its next step boundary once
its token is set (invoke and stream), a hung LMM request is abandoned at the photo's LMM deadline
(the no-LMM policy answers, with a warning) or when the run is cancelled."""

from __future__ import annotations

import threading
import time

import pytest

from agent import load_agent
from agent.cancel import cancel_scope, current_cancellation
from agent.lmm.calls import CallPolicy, LLMFailure, call_lmm
from evals.fake_llm_server import FakeOpenAI, Hang
from retrieval_service.core.cancel import Cancellation, Cancelled
from tests.agent.fakes import _retrieve, make_fake_tools


def _slow_policy_agent(settings, calls: list, seconds: float = 0.6):
    def slow_retrieve(**kw):
        time.sleep(seconds)
        return _retrieve(**kw)

    return load_agent(settings, mode="policy", tools=make_fake_tools(calls=calls, overrides={"retrieve": slow_retrieve}))


@pytest.mark.parametrize("how", ["invoke", "stream"])
def test_a_cancelled_run_stops_at_the_next_step_boundary(agent_settings, photo, how):
    """Before: a run whose client had gone (or whose 504 was sent) went on to the end, holding its slot."""
    calls: list = []
    agent = _slow_policy_agent(agent_settings, calls)
    agent.invoke({"image": str(photo)})
    full = [name for name, _ in calls]
    assert len(full) >= 5
    calls.clear()
    token = Cancellation()
    timer = threading.Timer(0.2, token.cancel, args=("the client disconnected",))  # while retrieve runs
    timer.start()
    with pytest.raises(Cancelled, match="the client disconnected"), cancel_scope(token):
        if how == "invoke":
            agent.invoke({"image": str(photo)})
        else:
            for _ in agent.stream({"image": str(photo)}):
                pass
    timer.join()
    ran = [name for name, _ in calls]
    assert ran == full[: full.index("retrieve") + 1]  # the step that had started finished; nothing after it ran
    assert current_cancellation() is None  # the scope is left as it was found


def test_a_token_set_before_the_run_starts_nothing(agent_settings, photo):
    calls: list = []
    agent = _slow_policy_agent(agent_settings, calls, 0.0)
    token = Cancellation()
    token.cancel("its deadline passed")
    with pytest.raises(Cancelled), cancel_scope(token):
        agent.invoke({"image": str(photo)})
    assert calls == []


def test_a_hung_lmm_is_given_up_at_the_photos_deadline(agent_settings, photo):
    """Before: a dead endpoint cost 60 s x 3 attempts per photo, with no per-photo limit."""
    settings = agent_settings.model_copy(update={"llm_deadline_s": 1.0, "llm_max_retries": 2})
    with FakeOpenAI(lambda body: Hang(30)) as server:
        agent = load_agent(
            settings, mode="agent", chat_model=server.chat_model(timeout=60), tools=make_fake_tools(), retry_backoff_s=0.001
        )
        t0 = time.perf_counter()
        pred = agent.invoke({"image": str(photo)})
        took = time.perf_counter() - t0
    assert pred.source != "lmm" and took < 10, took
    assert any("per-photo LMM deadline of 1 s" in w and "no-LMM policy" in w for w in pred.warnings), pred.warnings
    assert len(server.requests) == 1  # no retry started after the deadline


def test_retries_and_their_waits_stay_within_the_deadline():
    class Flaky:
        calls = 0

        def invoke(self, messages):
            self.calls += 1
            raise TimeoutError("read timed out")

    policy = CallPolicy(retries=5, initial_s=10.0, max_wait_s=30.0, deadline_s=0.5)  # waits of 10 s and more
    model = Flaky()
    t0 = time.perf_counter()
    with pytest.raises(LLMFailure) as err:
        call_lmm(model, [("user", "hi")], policy)
    assert err.value.kind == "limit" and "deadline of 0.5 s" in str(err.value)
    assert time.perf_counter() - t0 < 2 and model.calls == 1


def test_a_cancelled_run_stops_waiting_on_a_hung_lmm_request():
    class Hung:
        def invoke(self, messages):
            time.sleep(5)

    token = Cancellation()
    threading.Timer(0.2, token.cancel, args=("the client disconnected",)).start()
    t0 = time.perf_counter()
    with pytest.raises(Cancelled), cancel_scope(token):
        call_lmm(Hung(), [("user", "hi")], CallPolicy(retries=0))
    assert time.perf_counter() - t0 < 2
