"""Where conversations are kept: LangGraph checkpointers, chosen by ``GEOAGENT_DATABASE_URL``.

* unset (the embedded default): SQLite, a file under the data dir (``sqlite_checkpointer``);
* ``postgresql://user:pass@host:5432/db``: LangGraph's PostgreSQL checkpointer on a connection pool
  (``postgres_checkpointer``), so every ``geoagent serve`` replica on that database continues any
  thread. Its tables are created (and migrated) once, under an advisory lock, by whichever replica
  starts first.

Both serialise the graph state with LangGraph's ``JsonPlusSerializer`` with the state's own types
registered (``serializer``): every pydantic model, dataclass and enum the state types reach, found
by walking their annotations, so reading a thread back never logs "Deserializing unregistered type"
and keeps working when LangGraph blocks unregistered types.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import sqlite3
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from retrieval_service.core.errors import ConfigError

log = logging.getLogger(__name__)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_SETUP_LOCK_KEY = 0x67656F6167  # pg_advisory_lock key: one replica creates the tables at a time


def state_types() -> set[type]:
    """The pydantic models, dataclasses and enums the graph states can hold (at any depth)."""
    from agent.state import RagState

    found: set[type] = set()
    seen: set[int] = set()

    def walk(tp: Any) -> None:
        if id(tp) in seen:
            return
        seen.add(id(tp))
        for arg in typing.get_args(tp):
            walk(arg)
        if not isinstance(tp, type):
            return
        if typing.is_typeddict(tp):
            for hint in typing.get_type_hints(tp, include_extras=True).values():
                walk(hint)
        elif issubclass(tp, BaseModel):
            if not tp.__module__.startswith("langchain_core."):  # LangChain's messages are registered by LangGraph
                found.add(tp)
            for field in tp.model_fields.values():
                walk(field.annotation)
        elif dataclasses.is_dataclass(tp):
            found.add(tp)
            for hint in typing.get_type_hints(tp).values():
                walk(hint)
        elif issubclass(tp, enum.Enum):
            found.add(tp)

    walk(RagState)
    return found


def serializer() -> Any:
    """LangGraph's JsonPlusSerializer allowing exactly the state's types beside LangGraph's safe ones."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=sorted((t.__module__, t.__name__) for t in state_types()))


@contextmanager
def sqlite_checkpointer(path: str | Path) -> Iterator[Any]:
    """A LangGraph SqliteSaver on ``path`` (created with its folder), closed on exit; threads saved
    there survive the process."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"cannot open the sessions database {path} ({exc})", "set GEOAGENT_DATA_DIR to a writable folder"
        ) from exc
    try:
        yield SqliteSaver(conn, serde=serializer())
    finally:
        conn.close()


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith(POSTGRES_SCHEMES)


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{tail}" if ":" in creds else url


@contextmanager
def postgres_pool(url: str, *, max_size: int = 8) -> Iterator[Any]:
    """A psycopg connection pool on ``url`` (autocommit, dict rows), opened and checked now."""
    try:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool
    except ImportError as exc:
        raise ConfigError(
            "GEOAGENT_DATABASE_URL names PostgreSQL but psycopg is not installed",
            "pip install 'psycopg[binary]' psycopg-pool langgraph-checkpoint-postgres (geoagent's dependencies)",
        ) from exc
    try:  # one connection first: a refused port or bad credentials fail now, not after the pool's retries
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.Error as exc:
        raise ConfigError(
            f"cannot connect to the conversations database {redacted(url)} ({type(exc).__name__}: {exc})".replace(
                url, redacted(url)
            ),
            "check GEOAGENT_DATABASE_URL (postgresql://user:password@host:5432/database) and that the server is up",
        ) from exc
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    )
    try:
        pool.open(wait=True, timeout=30)
    except Exception as exc:  # psycopg_pool's PoolTimeout: the server stopped answering meanwhile
        pool.close()
        raise ConfigError(
            f"cannot open a connection pool on the conversations database {redacted(url)} ({type(exc).__name__})",
            "check GEOAGENT_DATABASE_URL (postgresql://user:password@host:5432/database) and that the server is up",
        ) from exc
    try:
        yield pool
    finally:
        pool.close()


SETUP_LOCK_WAIT_S = 300.0
"""How long a replica waits for another to finish creating the tables before it gives up."""


def _try_lock(conn: Any) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (_SETUP_LOCK_KEY,)).fetchone()
    return bool(row["got"] if isinstance(row, dict) else row[0])


@contextmanager
def advisory_lock(conn: Any, *, wait_s: float = SETUP_LOCK_WAIT_S) -> Iterator[Any]:
    """Hold the database-wide setup lock on ``conn`` (a psycopg connection in autocommit) for the block.

    Taken by polling ``pg_try_advisory_lock``, never by a blocking ``pg_advisory_lock``: a replica
    blocked in that call keeps a transaction open, and LangGraph's setup on the replica holding the
    lock runs ``CREATE INDEX CONCURRENTLY``, which waits for every open transaction to end. The two
    would wait for each other forever, a deadlock PostgreSQL cannot see (the lock's holder is idle)."""
    poll = Retrying(stop=stop_after_delay(wait_s), wait=wait_fixed(0.1), retry=retry_if_result(lambda got: not got))
    try:
        poll(_try_lock, conn)
    except RetryError as exc:
        raise ConfigError(
            f"another geoagent held the conversations database's setup lock for over {wait_s:.0f} s",
            "check for a geoagent serve process stuck while starting on the same database, stop it, and start again",
        ) from exc
    try:
        yield conn
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))


@contextmanager
def postgres_checkpointer(url: str, *, pool: Any = None) -> Iterator[Any]:
    """LangGraph's PostgresSaver on ``url`` (or on ``pool``), its tables set up; closed on exit."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with postgres_pool(url) if pool is None else _kept(pool) as conns:
        saver = PostgresSaver(conns, serde=serializer())
        with conns.connection() as conn, advisory_lock(conn):  # replicas starting together set up once
            saver.setup()
        yield saver


@contextmanager
def _kept(value: Any) -> Iterator[Any]:
    yield value


@contextmanager
def open_checkpointer(database_url: str | None, sqlite_path: str | Path) -> Iterator[Any]:
    """The checkpointer ``database_url`` names (PostgreSQL), else SQLite at ``sqlite_path``."""
    if not database_url:
        with sqlite_checkpointer(sqlite_path) as saver:
            yield saver
        return
    if not is_postgres(database_url):
        raise ConfigError(
            f"GEOAGENT_DATABASE_URL {redacted(database_url)!r} is not a PostgreSQL URL",
            "use postgresql://user:password@host:5432/database, or unset it for the embedded SQLite file",
        )
    with postgres_checkpointer(database_url) as saver:
        yield saver
