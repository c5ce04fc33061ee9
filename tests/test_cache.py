"""The embedding cache: same vectors with or without it and at any batch size, nothing
encoded twice, damaged or foreign files rebuilt with a warning, concurrent writers safe."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comclip.backbones import create_backbone
from comclip.backbones.cached import CachedEncoder
from comclip.cache.embeddings import CacheWarning, MemoryCache, SQLiteCache
from comclip.errors import InputError
from comclip.pipeline import ComCLIP

from .conftest import load_json_lines  # noqa: F401  (shared helpers live there)

IMAGES = [Image.new("RGB", (40 + 3 * k, 36), (30 * k, 200 - 20 * k, 90)) for k in range(5)]
TEXTS = ["a red circle", "a blue square left of a cat", "two dogs", "a red circle", "a green thing on a mat"]


class CountingCache(MemoryCache):
    def __init__(self):
        super().__init__()
        self.stored = 0

    def put_many(self, items):
        items = list(items)
        self.stored += len(items)
        super().put_many(items)


def test_identical_with_and_without_cache_and_any_batch_size(tiny_model_dir, tmp_path):
    plain = create_backbone(str(tiny_model_dir), batch_size=1)
    wide = create_backbone(str(tiny_model_dir), batch_size=64)
    cached = CachedEncoder(create_backbone(str(tiny_model_dir), batch_size=64), SQLiteCache(tmp_path / "c.sqlite"))
    reference = plain.similarity(IMAGES, TEXTS)
    for backbone in (wide, cached, cached):  # the second cached call is served from the file
        assert torch.allclose(backbone.similarity(IMAGES, TEXTS), reference, atol=1e-5)
    pipelines = [ComCLIP(b, grounder="clip") for b in (plain, cached)]
    a, b = (p.score(IMAGES[:2], TEXTS[:3]) for p in pipelines)
    assert torch.allclose(a, b, atol=1e-5)


def test_nothing_is_encoded_twice(tiny_backbone):
    cache = CountingCache()
    encoder = CachedEncoder(tiny_backbone, cache)
    encoder.encode_texts(TEXTS)
    assert cache.stored == 4  # "a red circle" twice in the batch, encoded once
    encoder.encode_texts(TEXTS + ["new words"])
    encoder.encode_images(IMAGES + [IMAGES[0].copy()])
    assert cache.stored == 4 + 1 + 5
    assert tiny_backbone.cache is None  # the backbone itself keeps nothing


def test_an_image_encoded_whole_is_grounded_without_a_second_pass(tiny_model_dir, monkeypatch):
    """Re-ranking CLIP's shortlist grounds images CLIP has just encoded: their patch grids,
    kept from that pass, are read instead of running it again, and go to the cache as though
    computed then (so a warm run finds them); the rows equal a direct computation."""
    backbone = create_backbone(str(tiny_model_dir), batch_size=2)
    passes = []
    real = backbone._encode_with_patches
    monkeypatch.setattr(backbone, "_encode_with_patches", lambda batch: passes.extend(batch) or real(batch))
    encoder = CachedEncoder(backbone, CountingCache())
    whole = encoder.encode_images(IMAGES)
    assert len(passes) == len(IMAGES)
    global_rows, grids = encoder.encode_with_patches(IMAGES)
    assert len(passes) == len(IMAGES)  # no second pass
    direct_rows, direct_grids = real(IMAGES)
    assert torch.allclose(global_rows, direct_rows, atol=1e-5) and torch.allclose(whole, direct_rows, atol=1e-5)
    assert all(torch.allclose(a.embeddings, b.embeddings, atol=1e-5) for a, b in zip(grids, direct_grids))
    patch_keys = [k for k in encoder.cache._items if "|patches|" in k]
    assert len(patch_keys) == len(IMAGES)


def test_a_memory_cache_keeps_at_most_its_bytes():
    cache = MemoryCache(max_bytes=3 * 400)
    cache.put_many((f"k{n}", np.zeros(100, np.float32)) for n in range(5))  # 400 bytes each
    assert list(cache.get_many([f"k{n}" for n in range(5)])) == ["k2", "k3", "k4"]
    cache.put_many([("k3", np.zeros(200, np.float32))])  # replaced, not counted twice
    assert list(cache.get_many([f"k{n}" for n in range(5)])) == ["k3", "k4"]


def test_without_a_cache_one_call_still_encodes_each_image_once(tiny_model_dir, monkeypatch):
    """The patch-token grounder's forward pass gives the global embeddings; with no persistent
    cache a scratch one carries them to the pipeline for the call, and is dropped after it."""
    backbone = create_backbone(str(tiny_model_dir))
    encoded = []
    real = backbone._encode_image_batch
    monkeypatch.setattr(backbone, "_encode_image_batch", lambda batch: encoded.extend(batch) or real(batch))
    model = ComCLIP(backbone, grounder_options={"region": "patches"})
    details = model.score_details(IMAGES[:2], ["a red circle", "two dogs"])
    sub_images = {(i, tuple(p.boxes)) for i, row in enumerate(details) for d in row for p in d.parts}
    assert len(encoded) == len(sub_images)  # no global image went through encode_images again
    assert backbone.cache is None
    with_cache = CachedEncoder(create_backbone(str(tiny_model_dir)), MemoryCache())
    assert torch.allclose(
        model.score(IMAGES[:2], ["a red circle", "two dogs"]),
        ComCLIP(with_cache, grounder_options={"region": "patches"}).score(IMAGES[:2], ["a red circle", "two dogs"]),
        atol=1e-5,
    )


def test_keys_change_with_the_weights(tmp_path):
    from comclip.testing import make_tiny_clip

    a = create_backbone(str(make_tiny_clip(tmp_path / "m", seed=0)))
    fingerprint = a.fingerprint
    make_tiny_clip(tmp_path / "m", seed=1)  # retrained in the same folder
    assert create_backbone(str(tmp_path / "m")).fingerprint != fingerprint


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_garbage_file_is_an_error_and_left_as_it_is(tmp_path):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    before = _digest(path)
    with pytest.raises(InputError, match="not an SQLite database.*left as it is"):
        SQLiteCache(path)
    assert _digest(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["cache.sqlite"]


@pytest.mark.parametrize(
    "schema",
    [
        ["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)", "INSERT INTO meta VALUES ('format', 'someone-else')"],
        ["CREATE TABLE photos (id INTEGER, path TEXT)", "INSERT INTO photos VALUES (1, 'a.jpg')"],
        [
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
            "CREATE TABLE embeddings (key TEXT)",
            "CREATE TABLE notes (t TEXT)",
        ],
    ],
)
def test_another_programs_database_is_an_error_and_left_byte_identical(tmp_path, schema):
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    for statement in schema:
        db.execute(statement)
    db.commit()
    db.close()
    before = _digest(path)
    with pytest.raises(InputError, match=f"{path}.*not a comclip embedding cache"):
        SQLiteCache(path)
    assert _digest(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite"]


def test_a_folder_given_as_the_cache_holds_embeddings_sqlite(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    cache = SQLiteCache(folder)
    cache.put_many([("k", np.ones(2, np.float32))])
    assert cache.path == folder / "embeddings.sqlite" and folder.is_dir()
    assert (folder / "notes.txt").read_text() == "keep me" and not list(tmp_path.glob("mine.broken-*"))


def test_damaged_rows_are_dropped_and_recomputed(tmp_path):
    cache = SQLiteCache(tmp_path / "c.sqlite")
    cache.put_many([("good", np.arange(4, dtype=np.float32))])
    cache._db.execute("INSERT INTO embeddings VALUES ('bad', 4, ?)", (b"\x00" * 7,))
    found = cache.get_many(["good", "bad", "missing"])
    assert set(found) == {"good"}  # a damaged row is never returned...
    assert cache.get_many(["bad"]) == {}  # ...and is deleted, so it will be recomputed
    assert cache._db.execute("SELECT COUNT(*) FROM embeddings WHERE key='bad'").fetchone()[0] == 0


def test_a_damaged_comclip_cache_is_moved_aside_saying_where(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = SQLiteCache(path)
    cache.put_many([(f"k{i}", np.ones(64, np.float32)) for i in range(200)])
    cache._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.close()
    data = bytearray(path.read_bytes())
    data[4096 : 3 * 4096] = b"\xff" * (2 * 4096)  # scribble over the second and third pages
    path.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match="moved it to .*c.sqlite.broken-"):
        fresh = SQLiteCache(path)
    assert fresh.get_many(["k1"]) == {} and list(tmp_path.glob("c.sqlite.broken-*"))


def test_a_read_only_cache_is_read_and_never_written(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = SQLiteCache(path)
    cache.put_many([("k", np.ones(3, np.float32))])
    cache._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.close()
    path.chmod(0o444)
    before = _digest(path)
    try:
        with pytest.warns(CacheWarning, match="read-only"):
            ro = SQLiteCache(path)
        assert ro.get_many(["k"])["k"].tolist() == [1, 1, 1]
        ro.put_many([("new", np.ones(3, np.float32))])
        assert ro.get_many(["new"]) == {}
        ro.close()
        assert _digest(path) == before
    finally:
        path.chmod(0o644)


def test_a_busy_cache_is_waited_for_then_not_used_never_moved(tmp_path):
    path = tmp_path / "c.sqlite"
    SQLiteCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.warns(CacheWarning, match="not used for the rest of this run.*locked") as caught:
            cache = SQLiteCache(path, timeout=0.2)
            cache.put_many([("k", np.ones(3, np.float32))])
            cache.put_many([("k2", np.ones(3, np.float32))])  # one warning only: the cache is off now
        assert len([w for w in caught if w.category is CacheWarning]) == 1
        assert cache.get_many(["k"]) == {} and cache.disabled
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert path.exists() and not list(tmp_path.glob("*.broken-*"))


def test_an_impossible_cache_place_is_an_error(tmp_path):
    with pytest.raises(InputError, match="cannot create the embedding cache"):
        SQLiteCache("/proc/nope/c.sqlite")


def _writer(path: str, worker: int) -> None:
    cache = SQLiteCache(path)
    for batch in range(20):
        cache.put_many([(f"w{worker}-{batch}-{i}", np.full(8, worker, np.float32)) for i in range(10)])
        cache.put_many([(f"shared-{i}", np.full(8, 7, np.float32)) for i in range(10)])


def test_concurrent_writers(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    SQLiteCache(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    info = SQLiteCache(path).info()
    assert info["entries"] == 3 * 20 * 10 + 10


def test_cache_cli(cli, tiny_model_dir, tmp_path):
    path = tmp_path / "cli.sqlite"
    data = tmp_path / "d.jsonl"
    IMAGES[0].save(tmp_path / "a.png")
    data.write_text('{"image": "a.png", "positive": "a red circle", "negatives": ["a blue square"]}\n')
    assert (
        cli(
            "eval",
            "jsonl",
            "--data",
            data,
            "--model",
            tiny_model_dir,
            "--cache",
            path,
            "--out",
            tmp_path / "o",
            "--method",
            "clip",
        )[0]
        == 0
    )
    import json

    code, out, _ = cli("cache", "info", "--cache", path)
    assert code == 0 and json.loads(out)["entries"] == 3
    code, _, err = cli("cache", "clear", "--cache", path)
    assert code == 0 and "removed 3" in err


@pytest.mark.parametrize("pixels", ["torch", "pil"])
def test_a_warm_run_makes_no_subimage_grounds_parses_and_encodes_nothing(tiny_model_dir, tmp_path, monkeypatch, pixels):
    """Keys come without pixels: a second run (a fresh backbone and pipeline, as a new process)
    reads every embedding, ranking and parse back, uploads and renders nothing, and gives the
    same scores, on either pixel path."""
    from comclip.imaging.subimages import SubimageMaker

    texts = ["a red circle and a blue square", "two dogs on a mat", "it is"]
    cold_backbone = CachedEncoder(create_backbone(str(tiny_model_dir), pixels=pixels), SQLiteCache(tmp_path / "c.sqlite"))
    cold = ComCLIP(cold_backbone).score(IMAGES[:3], texts)

    warm_backbone = create_backbone(str(tiny_model_dir), pixels=pixels)  # patched below: it must never be called
    warm_model = ComCLIP(CachedEncoder(warm_backbone, SQLiteCache(tmp_path / "c.sqlite")))

    def never(*args, **kwargs):
        raise AssertionError("a warm run did work it had done before")

    for name in ("canvas", "whole", "sub"):
        monkeypatch.setattr(SubimageMaker, name, never)
    for obj, name in (
        (warm_model.grounder, "prepare"),
        (warm_model.grounder, "ground"),
        (warm_model.parser, "parse_many"),
        (warm_backbone, "_encode_image_batch"),
        (warm_backbone, "_encode_text_batch"),
        (warm_backbone, "_encode_with_patches"),
    ):
        monkeypatch.setattr(obj, name, never)
    warm = warm_model.score(IMAGES[:3], texts)
    assert torch.equal(cold, warm)


def test_stored_rankings_are_exact_records_not_embeddings(tmp_path):
    import json

    from comclip.grounding import Box, Detection
    from comclip.pipeline.memory import detections_record, read_detections

    detections = [
        Detection((Box(13 / 0.2, 1 / 3, 100.000001, 64.5),), 0.123456789),
        Detection((Box(0, 0, 1, 1), Box(2, 2, 3, 3)), -0.5),
        Detection((Box(5, 6, 7, 8),), 1e-12),
    ]
    cache = SQLiteCache(tmp_path / "c.sqlite")
    cache.put_records([("k", detections_record(detections))])
    assert read_detections(cache.get_records(["k"])["k"]) == [Detection(d.boxes, d.score) for d in detections]
    assert read_detections(detections_record([])) == [] and cache.get_many(["k"]) == {}  # a record, not a vector
    # a cache written before rankings were packed keeps them as JSON: still read, exactly
    legacy = json.dumps([[d.score, [[b.x1, b.y1, b.x2, b.y2] for b in d.boxes]] for d in detections])
    assert read_detections(legacy) == detections and read_detections(legacy)[-1] == detections[-1]


def test_a_stored_ranking_makes_only_the_detections_asked_for():
    """A warm run reads thousands of rankings of 78 candidates each, and argmax asks each for
    its first two (the pick and its margin): only those are made, each once; the ranking still
    equals the list it was written from, whole or sliced."""
    from comclip.grounding import Box, Detection
    from comclip.grounding.assignment import assign
    from comclip.pipeline.memory import detections_record, read_detections

    written = [Detection((Box(k, k, k + 10, k + 10),), 1.0 - k / 100) for k in range(78)]
    ranking = read_detections(detections_record(written))
    (grounded,) = assign([ranking], ["dog"], joint=False)
    assert grounded.detection == written[0] and grounded.margin == pytest.approx(0.01)
    assert sum(made is not None for made in ranking._made) == 2 and ranking[0] is ranking[0]
    assert ranking == written and ranking[5:8] == written[5:8] and ranking[-1] == written[-1] and ranking != written[:-1]


def test_an_llm_parser_is_asked_once_per_caption_across_runs(tiny_model_dir, tmp_path):
    import json

    import httpx

    from comclip.parsing.llm import LLMParser

    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        caption = json.loads(request.content)["messages"][-1]["content"].removeprefix("Caption: ").strip()
        reply = {"entities": [{"id": 0, "head": caption.split()[-1], "phrase": caption}], "relations": []}
        return httpx.Response(200, json={"choices": [{"message": {"content": json.dumps(reply)}}]})

    scores = []
    for _ in range(2):  # two runs, as two processes: a fresh backbone and parser on the same cache file
        backbone = CachedEncoder(create_backbone(str(tiny_model_dir)), SQLiteCache(tmp_path / "c.sqlite"))
        parser = LLMParser(base_url="http://llm.test/v1", model="m", transport=httpx.MockTransport(handler))
        scores.append(ComCLIP(backbone, parser=parser).score(IMAGES[:2], ["a red circle", "two dogs", "a red circle"]))
    assert len(calls) == 2 and torch.equal(scores[0], scores[1])
