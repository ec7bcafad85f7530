"""What ``geoagent serve`` keeps its conversations in, chosen by ``GEOAGENT_DATABASE_URL``: the
checkpointer (threads), the listing beside it (``Threads`` opens it) and the uploads.

* unset: SQLite at ``<data dir>/web/threads.sqlite``, uploads on the local disk (one server);
* ``postgresql://...``: the PostgreSQL checkpointer and the uploads in the same database, on one
  connection pool, so any replica on that database continues any thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agent.conversation.checkpointers import is_postgres, open_checkpointer, postgres_checkpointer, postgres_pool
from agent.conversation.uploads import SharedUploads, Uploads
from agent.settings import Settings


@dataclass(frozen=True)
class ConversationStore:
    checkpointer: Any
    uploads: Uploads
    shared: bool  # PostgreSQL: every replica on the database sees the same conversations


@contextmanager
def open_conversations(settings: Settings) -> Iterator[ConversationStore]:
    """The web chat's conversations store (closed on exit); ConfigError names a database it cannot use."""
    web = settings.data_dir / "web"
    url = settings.database_url
    if url and is_postgres(url):
        with postgres_pool(url) as pool, postgres_checkpointer(url, pool=pool) as saver:
            yield ConversationStore(saver, SharedUploads(web / "uploads", settings.cache_dir, pool), shared=True)
        return
    with open_checkpointer(url, web / "threads.sqlite") as saver:  # refuses a URL that is not PostgreSQL
        yield ConversationStore(saver, Uploads(web / "uploads", settings.cache_dir), shared=False)
