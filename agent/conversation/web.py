"""The web chat's conversations on ``agent.conversation.threads.Threads``: one thread per photo (ids ``chat-...``,
so the listing shows the chat's threads, not other users of the same checkpointer), the photo kept
on disk under its own file name (the listing's title, and what follow-ups look at again), and the
shapes the endpoints answer with."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from agent.conversation.threads import ThreadHistory, ThreadSummary, Turn, new_thread_id
from agent.prediction import Prediction, Usage

CHAT_PREFIX = "chat-"


def chat_thread_id() -> str:
    return new_thread_id(CHAT_PREFIX.rstrip("-"))


def title_of(image: str) -> str:
    """A short human title for a thread's photo reference (path, URL or content hash)."""
    if image.startswith("sha256:"):
        return f"photo {image[7:15]}"
    if image.startswith(("http://", "https://")):
        return image.split("?")[0].rstrip("/").rsplit("/", 1)[-1][:80] or image[:80]
    return Path(image).name


def keep_upload(data: bytes, name: str, folder: Path) -> Path:
    """Save an uploaded photo as ``folder/<hash>/<its name>`` (sanitised) and return the path."""
    stem = re.sub(r"[^\w.@+-]+", "_", Path(name).name)[:100].strip("._") or "photo"
    if not Path(stem).suffix:
        stem += ".jpg"
    target = folder / hashlib.sha256(data).hexdigest()[:16] / stem
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)
    return target


class ChatThread(ThreadSummary):
    """A conversation in the chat's listing."""

    title: str


class ChatHistory(ThreadHistory):
    """One conversation: the photo, its prediction, the question/answer turns and the LMM usage."""

    title: str


class FollowUpRequest(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    text: str = Field(min_length=1, max_length=4000, description="The question about the conversation's photo.")


class FollowUpReply(BaseModel):
    thread_id: str
    reply: str = Field(description="The answer in words.")
    changed: bool = Field(default=False, description="Whether the answer (the prediction) changed.")
    prediction: Prediction | None = Field(default=None, description="The conversation's prediction after the question.")
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None


def listing(summaries: list[ThreadSummary]) -> list[ChatThread]:
    return [ChatThread(**s.model_dump(), title=title_of(s.image)) for s in summaries]


def chat_history(history: ThreadHistory) -> ChatHistory:
    """The history with only the turns a chat shows (questions and replies, not tool traffic)."""
    shown: list[Turn] = [t for t in history.turns if t.kind in ("question", "reply") and t.text.strip()]
    return ChatHistory(**history.model_dump(exclude={"turns"}), turns=shown, title=title_of(history.image))
