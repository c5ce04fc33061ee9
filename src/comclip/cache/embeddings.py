"""Embedding caches: never encode the same image, sub-image or text twice with the same model.

Keys are ``(model fingerprint, kind, content)``: an image's key is a hash of its pixels
(so a sub-image's key covers its box and fill, and an image is found again whatever its
path), a text's key is the text itself. Two stores share one small interface:

- :class:`MemoryCache`, a bounded in-process LRU;
- :class:`SQLiteCache`, a file that persists across runs and is safe with several
  processes writing at once (WAL journal, busy timeout, insert-or-ignore). It only ever
  touches its own files: a folder given as the cache holds ``embeddings.sqlite``; a file
  that is not a comclip cache (another program's database, anything else) is an error that
  names it and leaves it byte-identical; a read-only cache is read, never written; a cache
  locked by another process past the timeout is not used for the rest of the run, with one
  warning. Only a file carrying comclip's marker that fails SQLite's integrity check is
  moved aside (the warning says where) and started afresh. A row whose vector has the
  wrong length is dropped and recomputed, never returned.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from comclip.errors import InputError

FORMAT = "comclip-embedding-cache"
SCHEMA_VERSION = "1"
#: The file a folder given as the cache holds.
CACHE_FILE = "embeddings.sqlite"
#: comclip's tables: its marker, the embeddings (vectors) and records (text: parses).
TABLES = {
    "meta": "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "embeddings": "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, dim INTEGER NOT NULL, vector BLOB NOT NULL)",
    "records": "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
}


class CacheWarning(UserWarning):
    """A cache file was unusable and has been rebuilt."""


def default_cache_path() -> Path:
    """``$COMCLIP_CACHE/embeddings.sqlite`` (default ``~/.cache/comclip``)."""
    return Path(os.environ.get("COMCLIP_CACHE", Path.home() / ".cache" / "comclip")) / CACHE_FILE


class EmbeddingCache(Protocol):
    """What an encoder needs from a cache: vectors by key, and text records by key (a
    grounder's rankings, a parse) kept apart from them."""

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None: ...

    def get_records(self, keys: list[str]) -> dict[str, str]: ...

    def put_records(self, items: Iterable[tuple[str, str]]) -> None: ...


def read_through(cache: EmbeddingCache, keys: list[str], items, encode) -> np.ndarray:
    """Rows of ``keys`` from ``cache`` where present; the rest encoded, each distinct key once
    (``items[n]`` is what key ``n`` encodes from, read only for missing keys; ``encode(todo)``
    returns their rows) and stored. ``[len(keys), width]`` float32, every row flat as a cache
    keeps it: fresh rows of a multi-vector backbone (``[Q, D]``) and cached ones (``[Q * D]``)
    meet in one call, and :meth:`~comclip.backbones.base.Backbone.image_rows` shapes them back."""
    found = cache.get_many(keys)
    missing = list(dict.fromkeys(k for k in keys if k not in found))
    if missing:
        first = {k: n for n, k in reversed(list(enumerate(keys)))}
        todo = [items[first[k]] for k in missing]
        fresh = dict(zip(missing, encode(todo)))
        cache.put_many(fresh.items())
        found.update(fresh)
    return np.stack([found[k].reshape(-1) for k in keys]).astype(np.float32)


class MemoryCache:
    """A bounded least-recently-used cache in this process: at most ``max_items`` vectors and,
    where given, ``max_bytes`` of them."""

    def __init__(self, max_items: int = 100_000, max_bytes: int | None = None):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._records: dict[str, str] = {}
        self._bytes = 0

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        found = {}
        for key in keys:
            if key in self._items:
                self._items.move_to_end(key)
                found[key] = self._items[key]
        return found

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        for key, vector in items:
            if key in self._items:
                self._bytes -= self._items[key].nbytes
            self._items[key] = np.asarray(vector, dtype=np.float32)
            self._bytes += self._items[key].nbytes
            self._items.move_to_end(key)
        while len(self._items) > self.max_items or (self.max_bytes is not None and self._bytes > self.max_bytes):
            self._bytes -= self._items.popitem(last=False)[1].nbytes

    def __len__(self) -> int:
        return len(self._items)

    def get_records(self, keys: list[str]) -> dict[str, str]:
        return {key: self._records[key] for key in keys if key in self._records}

    def put_records(self, items: Iterable[tuple[str, str]]) -> None:
        self._records.update(items)


class SQLiteCache:
    """A persistent cache in one SQLite file (see the module docstring for its guarantees).

    ``path`` may name a folder, which then holds ``embeddings.sqlite``. ``busy_timeout`` is how
    long a write waits for another process's lock before this run goes on without storing.
    """

    def __init__(self, path: str | Path, timeout: float = 60.0):
        path = Path(path).expanduser()
        self.path = path / CACHE_FILE if path.is_dir() else path
        self.timeout = timeout
        self.read_only = False
        self.disabled: str | None = None  # why this run stopped using the cache
        _check_place(self.path)
        self._db = self._open()

    # --- opening and checking ---------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self.path.exists() and self.path.stat().st_size:
            problem = _foreign(self.path)
            if problem == IMMUTABLE:  # a healthy cache on a read-only file system
                return self._open_read_only(immutable=True)
            if problem == "damaged" and not _writable(self.path.parent):
                raise InputError(
                    f"the embedding cache {self.path} is damaged and its folder is read-only; pass --no-cache or another --cache"
                )
            if problem == "damaged":
                self._move_aside("it failed SQLite's integrity check")
            elif problem:
                raise InputError(
                    f"{self.path} is {problem}, not a comclip embedding cache; it was left as it is. "
                    "Pass --cache a folder or a new file name (or --no-cache)"
                )
        if not _writable(self.path.parent) or (self.path.exists() and not _writable(self.path)):
            return self._open_read_only()
        try:
            db = self._connect()
            _initialise(db)
            return db
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                self._disable(f"it is locked by another process ({exc})")
                return sqlite3.connect(":memory:")
            raise InputError(f"cannot open the embedding cache {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        return db

    def _open_read_only(self, immutable: bool = False) -> sqlite3.Connection:
        """A cache file (or folder) this process may not write: embeddings are read, never stored
        (``immutable``: on a read-only file system, see :func:`read_only_uri`)."""
        self.read_only = True
        warnings.warn(
            f"embedding cache {self.path} is read-only: cached embeddings are used, new ones are not stored",
            CacheWarning,
            stacklevel=4,
        )
        if not self.path.exists():
            return sqlite3.connect(":memory:")
        return sqlite3.connect(read_only_uri(self.path, immutable), uri=True, check_same_thread=False)

    def _move_aside(self, reason: str) -> None:
        """Only a file that carries comclip's marker and is damaged is moved; the message says where."""
        aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.replace(Path(f"{aside}{suffix}"))
        warnings.warn(
            f"embedding cache {self.path} is damaged ({reason}): moved it to {aside} and started a new one",
            CacheWarning,
            stacklevel=4,
        )

    def _disable(self, reason: str) -> None:
        if self.disabled is None:
            self.disabled = reason
            warnings.warn(
                f"embedding cache {self.path} is not used for the rest of this run: {reason}", CacheWarning, stacklevel=4
            )

    # --- the cache interface ----------------------------------------------------------
    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        if self.disabled:
            return {}
        found: dict[str, np.ndarray] = {}
        bad: list[str] = []
        unique = list(dict.fromkeys(keys))
        try:
            for key, dim, blob in self._select("SELECT key, dim, vector FROM embeddings", unique):
                if not isinstance(blob, bytes) or len(blob) != 4 * dim:
                    bad.append(key)
                    continue
                found[key] = np.frombuffer(blob, dtype=np.float32).copy()
            if bad and not self.read_only:
                self._db.execute(f"DELETE FROM embeddings WHERE key IN ({','.join('?' * len(bad))})", bad)
        except sqlite3.DatabaseError as exc:
            self._failed(exc)
            return {key: found[key] for key in found if key not in bad}
        return found

    def _select(self, query: str, keys: list[str]) -> list[tuple]:
        """The rows of ``query`` whose key is one of ``keys``, asked 500 keys at a time (SQLite
        bounds the number of parameters of one statement)."""
        rows = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows += self._db.execute(f"{query} WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return rows

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [(key, int(v.size), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for key, v in items]
        self._insert("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?)", rows)

    def _insert(self, statement: str, rows: list) -> None:
        """One transaction of inserts; a lock held too long or damage turns the cache off for the run."""
        if not rows or self.disabled or self.read_only:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(statement, rows)
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.DatabaseError:
                pass
            self._failed(exc)

    def get_records(self, keys: list[str]) -> dict[str, str]:
        """Text values stored besides the embeddings (parses, as JSON)."""
        if self.disabled or not keys:
            return {}
        try:
            return dict(self._select("SELECT key, value FROM records", list(dict.fromkeys(keys))))
        except sqlite3.DatabaseError as exc:
            if "no such table" not in str(exc):  # a read-only cache from before records were kept
                self._failed(exc)
            return {}

    def put_records(self, items: Iterable[tuple[str, str]]) -> None:
        self._insert("INSERT OR IGNORE INTO records VALUES (?, ?)", list(items))

    def _failed(self, exc: sqlite3.DatabaseError) -> None:
        """A lock held past the timeout, or damage found mid-run: go on without the cache
        (a damaged file is moved aside the next time a run opens it)."""
        self._disable(f"it is locked by another process ({exc})" if _busy(exc) else f"it failed ({exc})")

    # --- maintenance ------------------------------------------------------------------
    def info(self) -> dict:
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(vector)), 0) FROM embeddings").fetchone()
        models = [
            row[0] for row in self._db.execute("SELECT DISTINCT substr(key, 1, instr(key, '|') - 1) FROM embeddings ORDER BY 1")
        ]
        return {
            "path": str(self.path),
            "entries": count,
            "vector_bytes": size,
            "file_bytes": self.path.stat().st_size if self.path.exists() else 0,
            "models": models,
            "read_only": self.read_only,
        }

    def clear(self) -> int:
        if self.read_only:
            raise InputError(f"cannot clear {self.path}: it is read-only")
        if self.disabled:
            raise InputError(f"cannot clear {self.path}: {self.disabled}")
        count = self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        self._db.execute("DELETE FROM embeddings")
        self._db.execute("VACUUM")
        return count

    def close(self) -> None:
        self._db.close()


def _check_place(path: Path) -> None:
    """The cache file's folder exists or can be made, and the path is not something else."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the embedding cache {path}: {exc.strerror or exc}") from None
    if path.exists() and not path.is_file():
        raise InputError(f"the embedding cache {path} is not a regular file")


def _writable(path: Path) -> bool:
    """Whether this process may write ``path`` and its owner left it writable (root may write
    anything, but a file marked read-only is read-only to comclip too)."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _busy(exc: Exception) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def read_only_uri(path: Path, immutable: bool = False) -> str:
    """An SQLite URI that opens ``path`` without writing a byte; ``immutable`` also without the
    ``-shm`` file a WAL database needs, which a read-only file system cannot hold (what a
    ``-wal`` file not yet checkpointed holds is then not seen: a closed cache has none)."""
    return f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")


def _foreign(path: Path) -> str | None:
    """Why ``path`` is not a comclip cache ("damaged" for one of comclip's that is), or None.
    Read without writing a byte: an SQLite file opened read-only, its tables and marker read.
    One that cannot be opened so (a read-only file system) is read as immutable: failing to
    open a file is not damage in it (:data:`IMMUTABLE` where it is healthy read so)."""
    problem = _foreign_as(path, immutable=False)
    if problem is not None and problem.startswith(UNOPENED):
        again = _foreign_as(path, immutable=True)
        return IMMUTABLE if again is None else again
    return problem


#: What :func:`_foreign` says of a healthy cache that can only be read as immutable, and the
#: start of what it says of a file SQLite could not open.
IMMUTABLE, UNOPENED = "readable only as immutable", "unreadable"


def _foreign_as(path: Path, immutable: bool) -> str | None:
    try:
        db = sqlite3.connect(read_only_uri(path, immutable), uri=True)
    except sqlite3.Error as exc:
        return f"{UNOPENED} ({exc})"
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return None  # an empty database: nothing to lose
        if not tables <= set(TABLES) or "meta" not in tables:
            return f"an SQLite database with other tables ({', '.join(sorted(tables))})"
        marker = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('format', 'schema')"))
        if marker.get("format") != FORMAT:
            return f"an SQLite database of another format ({marker.get('format')!r})"
        if marker.get("schema") != SCHEMA_VERSION:
            return f"a comclip cache of another schema version ({marker.get('schema')!r}; this comclip reads {SCHEMA_VERSION})"
        return None if db.execute("PRAGMA quick_check").fetchone()[0] == "ok" else "damaged"
    except sqlite3.OperationalError as exc:
        return "damaged" if _corrupt(exc) else f"{UNOPENED} ({exc})"
    except sqlite3.DatabaseError as exc:
        return "not an SQLite database" if "not a database" in str(exc) else "damaged"
    finally:
        db.close()


def _corrupt(exc: Exception) -> bool:
    return "malformed" in str(exc) or "not a database" in str(exc)


def _initialise(db: sqlite3.Connection) -> None:
    """The tables and the marker of a new (or empty) cache, and any table a newer comclip added
    to its own cache; a complete cache is left as it is."""
    if {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == set(TABLES):
        return
    for statement in TABLES.values():
        db.execute(statement)
    db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?), ('schema', ?)", (FORMAT, SCHEMA_VERSION))
