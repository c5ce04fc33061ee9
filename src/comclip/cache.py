"""Embedding caches: never encode the same image, sub-image or text twice with the same model.

Keys are ``(model fingerprint, kind, content)``: an image's key is a hash of its pixels
(so a sub-image's key covers its box and fill, and an image is found again whatever its
path), a text's key is the text itself. Two stores share one small interface:

- :class:`MemoryCache`, a bounded in-process LRU;
- :class:`SQLiteCache`, a file that persists across runs and is safe with several
  processes writing at once (WAL journal, busy timeout, insert-or-ignore). A file that is
  not a comclip cache, or is damaged, is reported with a warning, moved aside and rebuilt;
  a row whose vector has the wrong length is dropped and recomputed, never returned.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np
from PIL import Image

FORMAT = "comclip-embedding-cache"
SCHEMA_VERSION = "1"


class CacheWarning(UserWarning):
    """A cache file was unusable and has been rebuilt."""


def image_digest(image: Image.Image) -> str:
    """A content hash of an image's pixels, size and mode."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.size}{image.mode}".encode())
    return digest.hexdigest()


def text_digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def default_cache_path() -> Path:
    """``$COMCLIP_CACHE/embeddings.sqlite`` (default ``~/.cache/comclip``)."""
    return Path(os.environ.get("COMCLIP_CACHE", Path.home() / ".cache" / "comclip")) / "embeddings.sqlite"


class EmbeddingCache(Protocol):
    """What the backbones need from a cache."""

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None: ...


class MemoryCache:
    """A bounded least-recently-used cache in this process."""

    def __init__(self, max_items: int = 100_000):
        self.max_items = max_items
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        found = {}
        for key in keys:
            if key in self._items:
                self._items.move_to_end(key)
                found[key] = self._items[key]
        return found

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        for key, vector in items:
            self._items[key] = np.asarray(vector, dtype=np.float32)
            self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class SQLiteCache:
    """A persistent cache in one SQLite file (see the module docstring for its guarantees)."""

    def __init__(self, path: str | Path, timeout: float = 60.0):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._db = self._open()

    # --- opening, checking, rebuilding ------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            db = self._connect()
            self._initialise(db)
            return db
        except (sqlite3.DatabaseError, ValueError) as exc:
            return self._rebuild(str(exc))

    def _initialise(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?), ('schema', ?)", (FORMAT, SCHEMA_VERSION))
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if meta.get("format") != FORMAT or meta.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"not a comclip embedding cache (format {meta.get('format')!r}, schema {meta.get('schema')!r})")
        db.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, dim INTEGER NOT NULL, vector BLOB NOT NULL)")
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise ValueError("the database failed SQLite's integrity check")

    def _rebuild(self, reason: str) -> sqlite3.Connection:
        aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
        warnings.warn(f"embedding cache {self.path} is unusable ({reason}); moved it to {aside.name} and started a new one",
                      CacheWarning, stacklevel=3)
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.replace(Path(f"{aside}{suffix}"))
        db = self._connect()
        self._initialise(db)
        return db

    # --- the cache interface ----------------------------------------------------------
    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        bad: list[str] = []
        unique = list(dict.fromkeys(keys))
        try:
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                rows = self._db.execute(
                    f"SELECT key, dim, vector FROM embeddings WHERE key IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                for key, dim, blob in rows:
                    if not isinstance(blob, bytes) or len(blob) != 4 * dim:
                        bad.append(key)
                        continue
                    found[key] = np.frombuffer(blob, dtype=np.float32).copy()
            if bad:
                self._db.execute(f"DELETE FROM embeddings WHERE key IN ({','.join('?' * len(bad))})", bad)
        except sqlite3.DatabaseError as exc:
            self._db = self._rebuild(str(exc))
            return {}
        return found

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [(key, int(v.size), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for key, v in items]
        if not rows:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                pass
            self._db = self._rebuild(str(exc))

    # --- maintenance ------------------------------------------------------------------
    def info(self) -> dict:
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(vector)), 0) FROM embeddings").fetchone()
        models = [row[0] for row in self._db.execute(
            "SELECT DISTINCT substr(key, 1, instr(key, '|') - 1) FROM embeddings ORDER BY 1")]
        return {"path": str(self.path), "entries": count, "vector_bytes": size,
                "file_bytes": self.path.stat().st_size if self.path.exists() else 0, "models": models}

    def clear(self) -> int:
        count = self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        self._db.execute("DELETE FROM embeddings")
        self._db.execute("VACUUM")
        return count

    def close(self) -> None:
        self._db.close()
