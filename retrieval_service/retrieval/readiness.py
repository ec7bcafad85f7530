"""Collections that are built once and shared: readiness recorded in the store itself.

A derived collection (the GPS gallery) is named by the fingerprint of what it is built from, and a
build records ``{"geoagent": {"complete": true, "fingerprint": ..., "points": n}}`` in the
collection's own metadata once every point is written and counted. So any client of the store
(another data dir, another host) knows whether the collection is usable with one call, and:

* of concurrent first starts, the one whose ``create_collection`` succeeds builds it (creation is
  atomic at the store); the others wait for the metadata, watching the point count grow;
* a build that stops making progress for ``stall_s`` (its process died) is taken over by a waiter,
  which writes the same points again (ids are fixed, so upserts are idempotent) and completes it;
* a process deletes only a collection it created itself (a build that failed in that process).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from retrieval_service.core.errors import StoreError
from retrieval_service.retrieval.stores import VectorStore
from retrieval_service.retrieval.stores.base import CollectionInfo

logger = logging.getLogger(__name__)

META_KEY = "geoagent"


def completion(info: CollectionInfo | None) -> dict[str, Any]:
    """The completion record of a collection ({} when absent or unfinished)."""
    if info is None:
        return {}
    record = info.metadata.get(META_KEY)
    return record if isinstance(record, dict) and record.get("complete") is True else {}


def is_complete(info: CollectionInfo | None, fingerprint: str) -> bool:
    return completion(info).get("fingerprint") == fingerprint


def _build(store: VectorStore, name: str, fingerprint: str, expected: int, fill: Callable[[str], None]) -> int:
    started = time.perf_counter()
    fill(name)
    store.finish_writes(name)
    count = store.count(name)
    if count != expected:
        raise StoreError(
            f"collection {name!r} has {count} points after the build, expected {expected}",
            "check the store has room and is healthy, then start again",
        )
    store.set_metadata(name, {META_KEY: {"complete": True, "fingerprint": fingerprint, "points": count}})
    logger.warning("built collection %s (%d points) in %.1f s", name, count, time.perf_counter() - started)
    return count


def ensure_built(
    store: VectorStore,
    name: str,
    *,
    dim: int,
    fingerprint: str,
    expected: int,
    fill: Callable[[str], None],
    stall_s: float = 120.0,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Make sure ``name`` is complete for ``fingerprint``; build it (``fill(name)`` upserts every
    point with fixed ids) when no one else is. Returns the point count."""
    info = store.describe(name)
    if is_complete(info, fingerprint):
        return int(completion(info)["points"])
    if info is not None and completion(info):
        raise StoreError(
            f"collection {name!r} was completed for fingerprint {completion(info).get('fingerprint')}, not {fingerprint}",
            "collections are named by their fingerprint: use another collection name for this build",
        )
    last_state: int | None = None  # the build's point count as last seen (None: not there yet)
    last_change = clock()
    while True:
        if store.create_collection(name, dim):
            logger.warning("building collection %s (%d points, once for every client of this store)", name, expected)
            try:
                return _build(store, name, fingerprint, expected, fill)
            except BaseException:
                store.delete_collection(name)  # created by this call: let the next start begin afresh
                raise
        # another client created it: wait for its completion record while its point count grows
        while True:
            info = store.describe(name, fresh=True)
            if is_complete(info, fingerprint):
                return int(completion(info)["points"])
            state = None if info is None else info.points
            if state != last_state:
                last_state, last_change = state, clock()
            elif clock() - last_change > stall_s:
                if info is None:
                    raise StoreError(
                        f"collection {name!r} was claimed by a build that never created it ({stall_s:.0f} s ago)",
                        f"delete the leftover (embedded store: the empty folder {name} under the data dir's qdrant/)",
                    )
                logger.warning(
                    "the build of %s made no progress for %.0f s (its process stopped?): completing it here", name, stall_s
                )
                return _build(store, name, fingerprint, expected, fill)
            sleep(poll_s)
            if info is None:
                break  # not there (yet): its builder may have failed and removed it, so try to create it
