"""The web chat's uploaded photos, kept content-addressed where every replica finds them.

An upload is kept on the local disk under ``<data dir>/web/uploads/<hash>/<its name>`` (the name is
the chat's title; ``web.keep_upload``), and with a PostgreSQL conversations database also in that
database (table ``geoagent_uploads``, keyed by the sha256 of the bytes). A follow-up question on
another replica, whose disk lacks the file, first calls ``ensure(photo)``: the bytes come from the
database into that replica's content-addressed cache (``<cache dir>/images/<sha256>.<ext>``), where
``Photo.check_present(cache_dir)`` finds them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.conversation.checkpointers import advisory_lock
from agent.conversation.web import keep_upload
from retrieval_service.core.photo import Photo, store_bytes

log = logging.getLogger(__name__)

TABLE = "geoagent_uploads"


class Uploads:
    """Uploads on this machine's disk only (one server: SQLite conversations)."""

    def __init__(self, folder: Path, cache_dir: Path) -> None:
        self.folder = Path(folder)
        self.cache_dir = Path(cache_dir)

    def keep(self, photo: Photo, name: str) -> Photo:
        """The uploaded ``photo`` kept under its ``name`` (the same bytes; its ref and path are the kept file)."""
        path = keep_upload(photo.read_bytes(), name, self.folder)
        self._share(photo, name)
        return photo.model_copy(update={"ref": str(path), "path": str(path)})

    def _share(self, photo: Photo, name: str) -> None:
        """Make the bytes reachable from the other replicas (nothing to do on one server)."""

    def ensure(self, photo: Photo) -> Photo:
        """``photo``'s file on this machine (ImageLoadError when it is nowhere to be found)."""
        return photo.check_present(self.cache_dir)


class SharedUploads(Uploads):
    """Uploads also kept in the PostgreSQL conversations database, for every replica."""

    def __init__(self, folder: Path, cache_dir: Path, pool: Any) -> None:
        super().__init__(folder, cache_dir)
        self.pool = pool
        with pool.connection() as conn, advisory_lock(conn):
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, "
                "suffix TEXT NOT NULL, data BYTEA NOT NULL)"
            )

    def _share(self, photo: Photo, name: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"INSERT INTO {TABLE} (sha256, name, suffix, data) VALUES (%s, %s, %s, %s) ON CONFLICT (sha256) DO NOTHING",
                (photo.sha256, name, Path(photo.path).suffix or ".img", photo.read_bytes()),
            )

    def ensure(self, photo: Photo) -> Photo:
        try:
            return photo.check_present(self.cache_dir)
        except Exception:
            with self.pool.connection() as conn:
                row = conn.execute(f"SELECT suffix, data FROM {TABLE} WHERE sha256 = %s", (photo.sha256,)).fetchone()
            if row is None:
                raise
            store_bytes(bytes(row["data"]), photo.sha256, self.cache_dir, row["suffix"])
            log.info("fetched the upload %s from the conversations database", photo.sha256[:12])
            return photo.check_present(self.cache_dir)
