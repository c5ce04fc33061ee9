"""Faults around the embedding cache (comclip.cache.embeddings), through the real command line: it never touches what is not its own."""

from __future__ import annotations

import sqlite3

from .conftest import run_cli_here
from .faults import (
    assert_user_error,
    file_hash,
    run_eval,
)


def test_a_folder_given_as_the_cache_is_never_renamed(tiny_model_dir, four_examples, tmp_path):
    folder = tmp_path / "my-cache"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert run_cli_here(["cache", "clear", "--cache", folder]).returncode == 0
    assert run_eval(tiny_model_dir, four_examples, tmp_path / "out", cache=folder).returncode == 0
    assert folder.is_dir() and (folder / "notes.txt").read_text() == "mine" and (folder / "embeddings.sqlite").is_file()
    assert not list(tmp_path.glob("my-cache.broken-*"))


def test_another_programs_database_is_refused_and_left_byte_identical(tiny_model_dir, four_examples, tmp_path):
    other = tmp_path / "photos.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE photos (id INTEGER, path TEXT)")
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('format', 'lightroom')")
    db.commit()
    db.close()
    before = file_hash(other)
    assert_user_error(run_cli_here(["cache", "info", "--cache", other]), str(other), "not a comclip embedding cache")
    assert_user_error(run_eval(tiny_model_dir, four_examples, tmp_path / "out", cache=other), str(other))
    assert file_hash(other) == before and not (tmp_path / "out" / "per_example.jsonl").exists()
    # no -wal, no -shm, nothing moved; the output folder made for the run is gone with it (#27)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos.db"]


def test_a_read_only_cache_is_used_and_not_written(tiny_model_dir, four_examples, tmp_path):
    cache = tmp_path / "c.sqlite"
    assert run_eval(tiny_model_dir, four_examples, tmp_path / "first", "--method", "clip", cache=cache).returncode == 0
    con = sqlite3.connect(cache)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    cache.chmod(0o444)
    before = file_hash(cache)
    try:
        result = run_eval(tiny_model_dir, four_examples, tmp_path / "second", cache=cache)
        assert result.returncode == 0 and "read-only" in result.stderr and "Traceback" not in result.stderr
        assert file_hash(cache) == before
    finally:
        cache.chmod(0o644)


def test_a_busy_cache_is_waited_for_then_skipped_never_moved(tiny_model_dir, four_examples, tmp_path):
    cache = tmp_path / "c.sqlite"
    assert run_cli_here(["cache", "info", "--cache", cache]).returncode == 0
    holder = sqlite3.connect(cache, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = run_eval(tiny_model_dir, four_examples, tmp_path / "out", cache=cache, env={"COMCLIP_CACHE_TIMEOUT": "0.5"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 0 and result.stderr.count("not used for the rest of this run") == 1, result.stderr
    assert cache.exists() and not list(tmp_path.glob("c.sqlite.broken-*"))


def test_an_impossible_cache_path_is_one_line(tiny_model_dir):
    assert_user_error(run_cli_here(["cache", "info", "--cache", "/proc/nope/c.sqlite"]), "/proc/nope/c.sqlite")


def test_a_healthy_cache_on_a_read_only_file_system_is_read_never_moved(tmp_path, monkeypatch):
    """On a read-only file system SQLite cannot make a WAL database's -shm file, so even a
    read-only open fails ("unable to open database file"): that is not damage. The cache is
    read as immutable, used, and left where it is. (The file system is simulated: every open
    that is not immutable fails, and nothing may be written.)"""
    import warnings

    import numpy as np

    from comclip.cache import embeddings

    path = tmp_path / "c.sqlite"
    cache = embeddings.SQLiteCache(path)
    cache.put_many([("k", np.ones(4, dtype=np.float32))])
    cache.close()
    before = file_hash(path)
    connect = sqlite3.connect

    def read_only_fs(target, *args, **kwargs):
        if "immutable=1" not in str(target):
            raise sqlite3.OperationalError("unable to open database file")
        return connect(target, *args, **kwargs)

    monkeypatch.setattr(embeddings.sqlite3, "connect", read_only_fs)
    monkeypatch.setattr(embeddings, "_writable", lambda p: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reopened = embeddings.SQLiteCache(path)
    assert reopened.read_only and reopened.get_many(["k"])["k"].tolist() == [1.0] * 4
    assert [str(w.message) for w in caught if "damaged" in str(w.message)] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sqlite"] and file_hash(path) == before
