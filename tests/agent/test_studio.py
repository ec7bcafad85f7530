"""The graph langgraph.json serves: a photo in, the agent's Prediction out, its steps traced."""

from __future__ import annotations

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from PIL import Image


@pytest.mark.slow
def test_studio_graph_runs_the_configured_agent(gallery_env, monkeypatch, tmp_path):
    import agent.studio as studio
    from agent.prediction import Prediction

    monkeypatch.setenv("GEOAGENT_SEGMENTER", "none")
    monkeypatch.setattr(studio, "_agent", None)
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (200, 150), (30, 160, 90)).save(photo)

    class Tools(BaseCallbackHandler):
        def __init__(self) -> None:
            self.started: list[str] = []

        def on_tool_start(self, serialized, input_str, **kwargs):
            self.started.append((serialized or {}).get("name") or kwargs.get("name"))

    seen = Tools()
    out = studio.graph.invoke({"image": str(photo)}, {"callbacks": [seen]})
    pred = Prediction.model_validate(out["prediction"])
    assert pred.image == str(photo) and pred.mode == "policy" and pred.candidates
    assert "retrieve" in seen.started  # the agent's tool calls show in the Studio run


def test_a_failed_studio_run_carries_its_real_message(tiny_env, monkeypatch, tmp_path):
    """LangGraph's API server masks every exception but a few builtin types as "An internal error
    occurred"; a failed run must reach Studio as one of those, with geoagent's message and fix."""
    import agent.studio as studio

    monkeypatch.setattr(studio, "_agent", None)
    missing = tmp_path / "no-such-photo.jpg"
    with pytest.raises(studio.StudioRunError) as info:
        studio.graph.invoke({"image": str(missing)})
    assert isinstance(info.value, RuntimeError)  # one of the types langgraph-api shows with their message
    text = str(info.value)
    assert text.startswith("ImageLoadError: ") and "no-such-photo.jpg" in text and "(fix: " in text
    assert info.value.__cause__ is not None
