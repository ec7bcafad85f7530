"""The data takes one path through a run: the photo is resolved once (at the API boundary), every
tool call goes through the run's ToolNode, and each evidence set's mixture is built once."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage

from agent import load_agent
from agent.decision import mixture as mixture_module
from retrieval_service.core.photo import Photo
from tests.agent.fakes import REAL, ScriptedChatModel, call, make_fake_tools, submit

FINAL = {"lat": 48.86, "lon": 2.35, "confidence": 0.8, "rationale": "French signs; a cluster of 5 around Paris"}


@pytest.fixture()
def counted(monkeypatch):
    """Counts of real photo resolutions (a Photo passed through is not one), Mixture constructions
    and ToolNode invocations."""
    counts = {"resolve": 0, "mixtures": 0, "tool_node": 0}
    resolve = Photo.resolve.__func__

    def counting_resolve(cls, src, *args, **kwargs):
        if not isinstance(src, Photo):
            counts["resolve"] += 1
        return resolve(cls, src, *args, **kwargs)

    init = mixture_module.Mixture.__init__

    def counting_init(self, components):
        counts["mixtures"] += 1
        init(self, components)

    from langgraph.prebuilt import ToolNode

    invoke = ToolNode.invoke

    def counting_invoke(self, *args, **kwargs):
        counts["tool_node"] += 1
        return invoke(self, *args, **kwargs)

    monkeypatch.setattr(Photo, "resolve", classmethod(counting_resolve))
    monkeypatch.setattr(mixture_module.Mixture, "__init__", counting_init)
    monkeypatch.setattr(ToolNode, "invoke", counting_invoke)
    return counts


@pytest.mark.parametrize("given", ["path", "bytes"])
def test_policy_resolves_once_and_builds_one_mixture_per_evidence_set(agent_settings, photo, counted, given):
    calls: list = []
    agent = load_agent(agent_settings, mode="policy", tools=make_fake_tools(calls=calls))
    pred = agent.invoke({"image": str(photo) if given == "path" else photo.read_bytes()})
    assert counted["resolve"] == 1
    # two evidence sets: retrieval (the options' support) and the tools' (retrieval + the OCR place:
    # the choice and the Prediction's probabilities, areas and clusters)
    assert counted["mixtures"] == 2
    assert counted["tool_node"] == len(pred.trace) == len(calls)  # every tool call through the ToolNode
    photo_calls = [kw["image"] for name, kw in calls if "image" in kw]
    assert photo_calls and len(set(photo_calls)) == 1  # every tool saw the one resolved file


def test_a_photo_resolved_by_the_caller_is_not_resolved_again(agent_settings, photo, counted):
    resolved = Photo.resolve(photo, agent_settings.cache_dir)
    assert counted["resolve"] == 1
    load_agent(agent_settings, mode="retrieval", tools=make_fake_tools()).invoke({"image": resolved})
    assert counted["resolve"] == 1


def test_lmm_loop_resolves_once_and_models_tools_and_lmm_evidence_once_each(agent_settings, photo, counted):
    model = ScriptedChatModel(
        script=[AIMessage("", tool_calls=[call("read_text", {}, "t"), call("retrieve", {"k": 5}, "r")]), submit(FINAL)]
    )
    agent = load_agent(agent_settings, mode="agent", chat_model=model, tools=make_fake_tools(), retry_backoff_s=0.001)
    pred = agent.invoke({"image": str(photo)})
    assert pred.source == "lmm" and counted["resolve"] == 1
    assert counted["mixtures"] == 2  # the run's (tools + the LMM's answer) and the tools' alone (the warning)
    tool_entries = [t for t in pred.trace if t.tool != "lmm"]
    # observe's three calls one by one, the model's two calls in one ToolNode run, the answer check's one
    assert counted["tool_node"] == len(tool_entries) - 1


def test_the_fakes_use_the_real_tools_schemas_and_summaries():
    from tools import TOOL_NAMES

    fakes = {t.name: t for t in make_fake_tools()}
    assert tuple(fakes) == TOOL_NAMES and set(REAL) == set(TOOL_NAMES)
    for name, (schema, summarise) in REAL.items():
        assert fakes[name].args_schema is schema and fakes[name].summariser is summarise
