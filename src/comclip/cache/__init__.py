"""Persistent and in-memory stores of what a model computed, so nothing is computed twice.

- :mod:`comclip.cache.embeddings`: the embedding caches (SQLite on disk, or memory), keyed by
  model fingerprint, kind and content digest (:mod:`comclip.digests`).
- :mod:`comclip.pipeline.memory`: the results kept besides embeddings (a grounder's rankings,
  a caption's parse), so a warm run repeats no work.
"""

from comclip.cache.embeddings import CacheWarning, EmbeddingCache, MemoryCache, SQLiteCache, default_cache_path

__all__ = ["CacheWarning", "EmbeddingCache", "MemoryCache", "SQLiteCache", "default_cache_path"]
