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
