"""The photo as the LMM sees it: a langchain-core image content block (downscaled JPEG, base64),
attached to a conversation once.

Blocks are cached per photo (its content hash) and size limit, so that a run that calls the model
many times encodes the photo once. Chat Completions APIs are stateless, so
"once" means: the photo goes with the first request of a conversation only; later requests carry
a note in its place (the system prompt asks the model to write down what it sees first).
``llm_resend_photo`` attaches it to every request instead, for models that need to look again.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from PIL import Image

from retrieval_service.core.photo import Photo

MAX_SIDE = 1024
JPEG_QUALITY = 85
PHOTO_NOTE = "[The photo was attached here in the first request of this conversation; it is not sent again.]"


@lru_cache(maxsize=16)
def _encoded(photo: Photo, max_side: int, quality: int) -> str:
    img = photo.decode(max_side=max_side)  # a large JPEG is decoded at reduced scale, never below max_side
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def image_content_block(photo: Photo, max_side: int = MAX_SIDE, quality: int = JPEG_QUALITY) -> dict[str, Any]:
    """The photo downscaled to ``max_side`` px (longest side) as a langchain-core image block;
    encoded once per photo (its content hash) and size."""
    return {"type": "image", "base64": _encoded(photo, max_side, quality), "mime_type": "image/jpeg"}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


def with_photo(messages: list[Any], block: dict[str, Any], *, resend: bool = False, new_turn: bool = False) -> list[Any]:
    """The conversation as sent to the model: the photo in the first user message on the first
    request (no model reply yet), on the first request of a follow-up turn (``new_turn``), or on
    every request with ``resend``; the note in its place otherwise. The stored messages are not
    changed (the state never holds image bytes)."""
    first_request = not any(isinstance(m, AIMessage) for m in messages)
    attach = first_request or resend or new_turn
    out, done = [], False
    for msg in messages:
        if not done and isinstance(msg, HumanMessage):
            text = _text(msg.content)
            content: Any = [{"type": "text", "text": text}, block] if attach else f"{text}\n\n{PHOTO_NOTE}"
            out.append(HumanMessage(content=content, id=msg.id))
            done = True
        else:
            out.append(msg)
    return out
