"""Per-call options and GeoCLIP-style top-k from the Python API. Before, ``agent.invoke(..., top_k=5)``
raised TypeError and there was no ``predict(image, top_k)`` for GeoCLIP users."""

from __future__ import annotations

import pytest

from agent import RunOptions, TopK, load_agent
from retrieval_service.core.errors import ConfigError
from tests.agent.fakes import make_fake_tools


def test_predict_returns_geoclip_style_top_k_places(agent_settings, photo):
    agent = load_agent(agent_settings, mode="policy", tools=make_fake_tools())
    top = agent.predict(str(photo), top_k=5)
    assert isinstance(top, TopK) and 1 < len(top.gps) <= 5 and len(top.gps) == len(top.probabilities)
    assert top.gps[0] == (top.prediction.lat, top.prediction.lon)  # the answer first
    assert all(0.0 <= p <= 1.0 for p in top.probabilities)
    assert top.probabilities[0] == pytest.approx(top.prediction.probabilities["25"], abs=1e-3)
    assert len(agent.predict(str(photo), top_k=1).gps) == 1
    with pytest.raises(ConfigError, match="top_k must be a positive whole number"):
        agent.predict(str(photo), top_k=0)


def test_invoke_takes_per_call_options(agent_settings, photo):
    calls: list = []
    agent = load_agent(agent_settings, mode="policy", tools=make_fake_tools(calls=calls))
    pred = agent.invoke({"image": str(photo)}, top_k=5)
    assert [kw.get("k") for name, kw in calls if name == "retrieve"] == [5]
    assert pred.mode == "policy"
    assert agent.invoke(str(photo), mode="retrieval").mode == "retrieval"  # another graph for this call only
    assert agent.invoke(str(photo)).mode == "policy"
    assert [r.mode for r in agent.batch([str(photo)], mode="rerank")] == ["rerank"]
    assert RunOptions(top_k=3).top_k == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"topk": 5}, "unknown option 'topk'"),
        ({"top_k": 0}, "option top_k"),
        ({"mode": "magic"}, "unknown mode 'magic'"),
        ({"mode": "agent"}, "needs an LMM"),
    ],
)
def test_bad_options_are_clear_errors(agent_settings, photo, options, message):
    agent = load_agent(agent_settings, mode="policy", tools=make_fake_tools())
    with pytest.raises(ConfigError, match=message) as info:
        agent.invoke(str(photo), **options)
    assert info.value.hint
