"""The service under load: agent runs and retrieval requests are admitted in their own lanes (a wave
of locates never starves searches; a full lane answers 503 at once with Retry-After), and work
nobody waits for stops: a client that disconnects (plain or SSE) or a deadline cancels the run at
its next step boundary and frees its slot, counted in /healthz."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from agent import load_agent
from tests.agent.fakes import make_fake_tools
from tests.agent.web.conftest import jpeg, serve_app
from tests.waiting import GUARD_S, wait_for

STEP_S = 0.4  # each fake tool's time: a run is 7 steps, ~3 s


class NoRetriever:
    """The retrieval endpoints are not used by these tests."""

    def warm_up(self) -> None: ...


class SlowLog(list):
    """The fake tools' call log; each call takes STEP_S (the tools log before they answer)."""

    def append(self, item) -> None:
        super().append(item)
        time.sleep(STEP_S)


def fake_server(settings, calls: list, **service):
    from agent.web.app import create_app
    from retrieval_service.service.server import BackgroundServer
    from retrieval_service.service.settings import ServiceSettings

    agent = load_agent(settings, mode="policy", tools=make_fake_tools(calls=calls))
    svc = ServiceSettings(**{"data_dir": settings.data_dir, "service_timeout_s": GUARD_S, **service})
    return BackgroundServer(create_app(agent, svc, retriever=NoRetriever(), warm_up=False), start_timeout_s=GUARD_S)


def lanes(url: str) -> dict:
    return httpx.get(f"{url}/healthz", timeout=GUARD_S).json()["lanes"]


def test_a_disconnected_client_frees_its_agent_slot_within_seconds(agent_settings):
    """Before: a run whose client had hung up went on to its end, holding its slot."""
    calls = SlowLog()
    photo = {"image": ("a.jpg", jpeg((30, 90, 150)), "image/jpeg")}
    with fake_server(agent_settings, calls, service_agent_max_concurrency=1) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/locate", files=photo, timeout=1.0)  # hangs up after 1 s
        gone = time.monotonic()
        wait_for(lambda: lanes(url)["agent"]["running"] == 0, "the agent slot to be freed")
        freed_after = time.monotonic() - gone
        stats = lanes(url)["agent"]
        assert stats["disconnected"] == 1 and stats["cancelled"] == 1, stats
        assert freed_after < 3 * STEP_S + 1.5, freed_after  # the step in progress finishes, no other starts
        ran = len(calls)
        time.sleep(3 * STEP_S)
        assert len(calls) == ran < 7  # nothing ran after the cancellation
        ok = httpx.post(f"{url}/v1/locate", files=photo, timeout=GUARD_S)  # the freed slot takes the next run
        assert ok.status_code == 200, ok.text


def test_an_sse_client_that_hangs_up_frees_its_slot(agent_settings):
    calls = SlowLog()
    photo = {"image": ("a.jpg", jpeg((90, 30, 150)), "image/jpeg")}
    with fake_server(agent_settings, calls, service_agent_max_concurrency=1) as url:
        with httpx.stream("POST", f"{url}/v1/locate/stream", files=photo, timeout=GUARD_S) as resp:
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if line.startswith("event: step_end"):  # the run is under way: hang up
                    break
        wait_for(lambda: lanes(url)["agent"]["running"] == 0, "the agent slot to be freed")
        stats = lanes(url)["agent"]
        assert stats["cancelled"] == 1 and stats["disconnected"] == 1, stats
        assert len(calls) < 7


def test_a_deadline_answers_504_and_stops_the_run(agent_settings):
    """Before: a request that reached its 504 kept running to the end, holding its slot."""
    calls = SlowLog()
    photo = {"image": ("a.jpg", jpeg((10, 190, 50)), "image/jpeg")}
    with fake_server(agent_settings, calls, service_timeout_s=1.0) as url:
        resp = httpx.post(f"{url}/v1/locate", files=photo, timeout=GUARD_S)
        assert resp.status_code == 504 and resp.json()["error"]["code"] == "timeout", resp.text
        assert "stopped" in resp.json()["error"]["message"]
        wait_for(lambda: lanes(url)["agent"]["running"] == 0, "the agent slot to be freed")
        stats = lanes(url)["agent"]
        assert stats["timed_out"] == 1 and stats["cancelled"] == 1
        assert len(calls) < 7


def test_a_full_agent_lane_answers_503_at_once_with_retry_after(agent_settings):
    calls = SlowLog()
    photo = {"image": ("a.jpg", jpeg((1, 2, 3)), "image/jpeg")}
    with fake_server(agent_settings, calls, service_agent_max_concurrency=1, service_agent_max_queue=1) as url:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(httpx.post, f"{url}/v1/locate", files=photo, timeout=GUARD_S) for _ in range(2)]
            wait_for(lambda: lanes(url)["agent"]["waiting"] == 1, "one run running and one waiting")
            t0 = time.monotonic()
            refused = httpx.post(f"{url}/v1/locate", files=photo, timeout=GUARD_S)
            assert time.monotonic() - t0 < 2 * STEP_S  # at once, not after a wait
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "busy"
            assert int(refused.headers["Retry-After"]) >= 1
            assert [f.result().status_code for f in held] == [200, 200]
        assert lanes(url)["agent"]["refused"] == 1


@pytest.mark.slow
def test_searches_all_answer_while_locates_fill_the_agent_lane(web_agent, web_threads):
    """Before: every request kind waited in one first-come queue; with 8 locates queued ahead of
    them, searches got 503 busy (64 + 64 clients: 0 of 64 searches succeeded)."""
    search_photos = [jpeg((7 * i, 200 - 5 * i, 90), (96, 72)) for i in range(16)]
    with (
        serve_app(
            web_agent,
            web_threads,
            service_max_concurrency=2,
            service_max_queue=16,
            service_agent_max_concurrency=2,
            service_agent_max_queue=4,
        ) as url,
        ThreadPoolExecutor(24) as pool,
    ):
        locates = [
            pool.submit(
                httpx.post,
                f"{url}/v1/locate",
                files={"image": (f"l{i}.jpg", jpeg((i, 9, 99)), "image/jpeg")},
                timeout=GUARD_S,
            )
            for i in range(8)
        ]
        wait_for(lambda: lanes(url)["agent"]["running"] == 2, "two locates running")
        searches = [
            pool.submit(
                httpx.post,
                f"{url}/v1/search",
                files={"image": (f"s{i}.jpg", p, "image/jpeg")},
                data={"k_gallery": "5", "k_database": "0"},
                timeout=GUARD_S,
            )
            for i, p in enumerate(search_photos)
        ]
        search_status = [f.result().status_code for f in searches]
        locate_resps = [f.result() for f in locates]
    assert search_status == [200] * 16
    assert {r.status_code for r in locate_resps} <= {200, 503}
    refused = [r for r in locate_resps if r.status_code == 503]
    assert len(refused) == 2 and all(int(r.headers["Retry-After"]) >= 1 for r in refused)  # 2 running + 4 waiting


def test_healthz_serves_both_lanes(agent_settings):
    with fake_server(agent_settings, []) as url:
        body = httpx.get(f"{url}/healthz", timeout=GUARD_S).json()
    assert body["status"] == "ok" and set(body["lanes"]) == {"retrieval", "agent"}
    assert body["lanes"]["agent"]["concurrency"] == 2 and body["lanes"]["retrieval"]["concurrency"] == 4
