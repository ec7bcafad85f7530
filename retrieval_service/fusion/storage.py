"""Where a features folder lives: a local path, or any fsspec URL (``s3://``, ``gs://``, ``az://``,
``hf://``, ``http(s)://``, ``file://``, ``memory://``...; the filesystem's fsspec package must be
installed, e.g. ``s3fs`` for S3).

A remote folder is read lazily: the manifest and the row table at once, each shard file the first
time a batch needs it, streamed to a local cache (``cache_dir/<hash of the URL>/...``, written under
a temporary name and renamed, so processes sharing the cache never see half a file) and then
memory-mapped like a local one. Every later read, in this run or the next, is local. The cache keeps
every file it fetched (training reads every shard each epoch, so evicting would re-download the set
every epoch): give it the room of the features (27 KB a photo with the defaults).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

from retrieval_service.core.errors import DatasetError

logger = logging.getLogger(__name__)


def is_url(root: str | Path) -> bool:
    return isinstance(root, str) and "://" in root


class FeatureFiles:
    """Read access to the files of a features folder, local or remote (see the module docstring)."""

    def __init__(self, root: str | Path, cache_dir: Path | None = None) -> None:
        self.root = root
        self.fs: Any = None
        if is_url(root):
            try:
                import fsspec

                self.fs, self.path = fsspec.core.url_to_fs(str(root))
            except (ImportError, ValueError) as exc:
                raise DatasetError(
                    f"cannot open features at {root}: {exc}",
                    "install the fsspec package of that filesystem (s3fs, gcsfs, adlfs, ...) or copy the folder locally",
                ) from exc
            if cache_dir is None:
                raise DatasetError(f"features at {root} need a local cache folder", "set GEOAGENT_FUSION_CACHE_DIR")
            self.cache = Path(cache_dir) / hashlib.sha256(str(root).encode()).hexdigest()[:16]
        else:
            self.path = str(Path(root))

    @property
    def remote(self) -> bool:
        return self.fs is not None

    def _remote(self, relative: str) -> str:
        return f"{self.path.rstrip('/')}/{relative}"

    def read_text(self, relative: str) -> str | None:
        """The text of a small file (manifest, row table); None when it is absent."""
        if not self.remote:
            path = Path(self.path) / relative
            return path.read_text() if path.is_file() else None
        try:
            with self.fs.open(self._remote(relative), "r") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DatasetError(f"cannot read {self.root}/{relative}: {exc}", "check the URL and the credentials") from exc

    def shard_names(self) -> set[str]:
        """The names of the complete shard folders (``00000``, ...; never a ``.partial`` one)."""
        if not self.remote:
            folder = Path(self.path) / "shards"
            names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        else:
            try:
                names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self._remote("shards"), detail=False)]
            except FileNotFoundError:
                names = []
        return {n for n in names if n.isdigit()}

    def exists(self, relative: str) -> bool:
        if not self.remote:
            return (Path(self.path) / relative).is_file()
        return (self.cache / relative).is_file() or bool(self.fs.exists(self._remote(relative)))

    def local(self, relative: str) -> Path:
        """A local path of the file: itself, or its cached copy (fetched now when it is not cached)."""
        if not self.remote:
            return Path(self.path) / relative
        target = self.cache / relative
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")  # reader threads fetch at once
        try:
            self.fs.get_file(self._remote(relative), str(tmp))
        except FileNotFoundError as exc:
            raise DatasetError(f"feature file {self.root}/{relative} is missing", "precompute again into a new folder") from exc
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DatasetError(
                f"cannot fetch {self.root}/{relative}: {exc}", "check the URL, the credentials and the cache disk"
            ) from exc
        os.replace(tmp, target)
        logger.debug("cached %s/%s in %s", self.root, relative, target)
        return target
