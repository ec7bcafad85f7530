"""A graph run as the events a caller watches (``GeoAgent.stream``), each ``{"type": ...}``:

* ``node`` (``node``): a graph step finished; ``tool_start`` (``tool``): a tool call begins;
  ``tool`` (a trace entry: ``tool``, ``args``, ``summary``, ``latency_ms``, ``error``, ``tokens``;
  ``tool == "lmm"`` for an LMM request);
* ``token`` (``node``, ``text``): LMM text as it is generated (usage is kept in the trace);
* ``prediction`` (``prediction``): the Prediction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.messages import AIMessageChunk

from agent.lmm.answer import message_text
from agent.prediction import Prediction

Event = dict[str, Any]
STREAM_MODES = ["custom", "updates", "messages"]


def events(chunks: Iterator[tuple[str, Any]]) -> Iterator[Event]:
    """The events of a graph's ``stream(..., stream_mode=STREAM_MODES)`` chunks."""
    for mode, chunk in chunks:
        if mode == "custom":
            yield chunk
        elif mode == "messages":
            message, meta = chunk
            if isinstance(message, AIMessageChunk) and (text := message_text(message.content)):
                yield {"type": "token", "node": meta.get("langgraph_node"), "text": text}
        else:
            for node, update in chunk.items():
                yield {"type": "node", "node": node}
                if isinstance(update, dict) and isinstance(update.get("prediction"), Prediction):
                    yield {"type": "prediction", "prediction": update["prediction"]}
