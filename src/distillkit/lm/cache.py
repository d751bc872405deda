"""An on-disk response cache keyed by the hash of a request, shared safely by threads and processes.

Built on `diskcache` (SQLite in WAL mode, one connection per thread and per process, writes retried while
another process holds the lock), with a size cap: the least recently stored entries go first. Values are
stored as JSON text, never pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import diskcache

from distillkit.errors import UserError

DEFAULT_SIZE_MB = 2048
SIZE_ENV = "DISTILLKIT_RESPONSE_CACHE_MB"
MARKER = "cache.db"  # the file diskcache keeps in every cache folder


def request_key(request: dict[str, Any]) -> str:
    """Stable SHA-256 of a JSON-serialisable request (keys sorted)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def default_size_mb() -> int:
    """The size cap: `$DISTILLKIT_RESPONSE_CACHE_MB` or 2048 MB."""
    raw = os.environ.get(SIZE_ENV, "")
    try:
        return int(raw) if raw else DEFAULT_SIZE_MB
    except ValueError:
        raise UserError(f"{SIZE_ENV} must be a whole number of megabytes, got {raw!r}") from None


def _corrupt(folder: Path, err: Exception) -> UserError:
    return UserError(
        f"the response cache at {folder} is unreadable ({err}); empty it with "
        f"`dialogbench cache clear {folder}` (or delete the folder) and run again"
    )


class ResponseCache:
    """key -> JSON value in one cache folder; safe to share between threads, processes and runs."""

    def __init__(self, folder: Path, size_mb: int | None = None):
        self.folder = Path(folder)
        size = default_size_mb() if size_mb is None else size_mb
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(self.folder), size_limit=size * 1024 * 1024)
        except (sqlite3.Error, OSError) as e:
            raise _corrupt(self.folder, e) from None

    def get(self, key: str) -> Any | None:
        """The stored value, or None."""
        try:
            raw = self._cache.get(key)
        except sqlite3.Error as e:
            raise _corrupt(self.folder, e) from None
        return None if raw is None else json.loads(raw)

    def put(self, key: str, value: Any) -> None:
        """Store `value` (JSON-serialisable) under `key`."""
        try:
            self._cache.set(key, json.dumps(value, ensure_ascii=False))
        except sqlite3.Error as e:
            raise _corrupt(self.folder, e) from None

    def __len__(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        self._cache.close()


def find_cache_folder(path: Path) -> Path | None:
    """The cache folder at `path` or at `path/responses` (what `cache_dir` points to), or None."""
    path = Path(path)
    for folder in (path, path / "responses"):
        if (folder / MARKER).exists():
            return folder
    return None


def clear_cache(path: Path) -> tuple[Path, int | None]:
    """Empty the cache folder at `path`; returns it and the number of entries removed.

    A folder diskcache cannot read is emptied file by file (the count is then None). A folder that holds
    no cache is refused, so a wrong path never deletes anything.
    """
    path = Path(path)
    folder = find_cache_folder(path)
    if folder is None:
        if not path.exists() or not any(path.iterdir()):
            return path, 0
        raise UserError(f"{path} holds no response cache (no {MARKER}); check the path")
    try:
        with diskcache.Cache(str(folder)) as cache:
            return folder, cache.clear()
    except sqlite3.Error:
        for child in folder.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        return folder, None
