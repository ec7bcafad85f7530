"""The listing of threads, kept beside the checkpoints: one row per thread that holds a photo (its
summary as JSON, created and updated times), written when a run on the thread ends, so listing the
threads is one indexed query instead of a walk over every checkpoint.

``index_for(checkpointer)`` gives the index that lives where the checkpoints live: a table in the
same SQLite file or PostgreSQL database (``geoagent_threads``, ordered by an index on
``updated_at``), or a dict beside an in-memory saver. A database whose table is new is filled once
from its existing checkpoints (``Threads`` does it on start).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.conversation.checkpointers import advisory_lock

if TYPE_CHECKING:
    from agent.conversation.threads import ThreadSummary

TABLE = "geoagent_threads"
Row = tuple[str, str, str]  # created_at, updated_at, the summary's JSON


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _like_prefix(prefix: str | None) -> str:
    escaped = (prefix or "").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


class ThreadIndex(ABC):
    """Summaries of threads, newest first."""

    created: bool = False
    """True when the index was created empty beside existing checkpoints (fill it from them once)."""

    @abstractmethod
    def record(self, summary: ThreadSummary) -> None:
        """Insert or replace the thread's row (``created_at`` kept from its first row)."""

    @abstractmethod
    def delete(self, thread_id: str) -> None: ...

    @abstractmethod
    def rows(self, prefix: str | None = None) -> list[Row]:
        """(created_at, updated_at, summary JSON) of the threads whose id starts with ``prefix``, newest first."""


class MemoryIndex(ThreadIndex):
    """Beside an in-memory saver: filled from its checkpoints when ``Threads`` starts."""

    created = True

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}
        self._lock = threading.Lock()

    def record(self, summary: ThreadSummary) -> None:
        with self._lock:
            first = self._rows.get(summary.thread_id)
            created = first[0] if first else summary.created_at or now_iso()
            self._rows[summary.thread_id] = (created, summary.updated_at or now_iso(), summary.model_dump_json())

    def delete(self, thread_id: str) -> None:
        with self._lock:
            self._rows.pop(thread_id, None)

    def rows(self, prefix: str | None = None) -> list[Row]:
        with self._lock:
            kept = [row for tid, row in self._rows.items() if tid.startswith(prefix or "")]
        return sorted(kept, key=lambda row: row[1], reverse=True)


class SqliteIndex(ThreadIndex):
    """The table in the SqliteSaver's own file, used under the saver's lock."""

    def __init__(self, conn: Any, lock: Any) -> None:
        self.conn, self.lock = conn, lock
        with self.lock:
            had = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone()
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (thread_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, "
                "updated_at TEXT NOT NULL, summary TEXT NOT NULL)"
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_updated ON {TABLE} (updated_at)")
            conn.commit()
        self.created = had is None

    def record(self, summary: ThreadSummary) -> None:
        with self.lock:
            self.conn.execute(
                f"INSERT INTO {TABLE} (thread_id, created_at, updated_at, summary) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (thread_id) DO UPDATE SET updated_at = excluded.updated_at, summary = excluded.summary",
                (summary.thread_id, summary.created_at or now_iso(), summary.updated_at or now_iso(), summary.model_dump_json()),
            )
            self.conn.commit()

    def delete(self, thread_id: str) -> None:
        with self.lock:
            self.conn.execute(f"DELETE FROM {TABLE} WHERE thread_id = ?", (thread_id,))
            self.conn.commit()

    def rows(self, prefix: str | None = None) -> list[Row]:
        with self.lock:
            found = self.conn.execute(
                f"SELECT created_at, updated_at, summary FROM {TABLE} WHERE thread_id LIKE ? ESCAPE '\\' "
                "ORDER BY updated_at DESC",
                (_like_prefix(prefix),),
            ).fetchall()
        return [(row[0], row[1], row[2]) for row in found]


class PostgresIndex(ThreadIndex):
    """The table in the PostgresSaver's database (on its connection or pool)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        with self._connection() as c, advisory_lock(c):  # one replica creates the table at a time
            had = c.execute("SELECT to_regclass(%s) AS t", (TABLE,)).fetchone()
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (thread_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, "
                "updated_at TEXT NOT NULL, summary JSONB NOT NULL)"
            )
            c.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_updated ON {TABLE} (updated_at DESC)")
            c.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_prefix ON {TABLE} (thread_id text_pattern_ops)")
        self.created = had is None or had["t"] is None

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection of the saver's pool (or its one connection)."""
        with self.conn.connection() if hasattr(self.conn, "connection") else nullcontext(self.conn) as c:
            yield c

    def record(self, summary: ThreadSummary) -> None:
        with self._connection() as c:
            c.execute(
                f"INSERT INTO {TABLE} (thread_id, created_at, updated_at, summary) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (thread_id) DO UPDATE SET updated_at = excluded.updated_at, summary = excluded.summary",
                (summary.thread_id, summary.created_at or now_iso(), summary.updated_at or now_iso(), summary.model_dump_json()),
            )

    def delete(self, thread_id: str) -> None:
        with self._connection() as c:
            c.execute(f"DELETE FROM {TABLE} WHERE thread_id = %s", (thread_id,))

    def rows(self, prefix: str | None = None) -> list[Row]:
        with self._connection() as c:
            found = c.execute(
                f"SELECT created_at, updated_at, summary::text AS s FROM {TABLE} WHERE thread_id LIKE %s "
                "ORDER BY updated_at DESC",
                (_like_prefix(prefix),),
            ).fetchall()
        return [(row["created_at"], row["updated_at"], row["s"]) for row in found]


def index_for(checkpointer: Any) -> ThreadIndex:
    """The index that lives with ``checkpointer``'s checkpoints."""
    kind = type(checkpointer).__name__
    if kind == "SqliteSaver":
        return SqliteIndex(checkpointer.conn, checkpointer.lock)
    if kind in ("PostgresSaver", "ShallowPostgresSaver"):
        return PostgresIndex(checkpointer.conn)
    return MemoryIndex()
