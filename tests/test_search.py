"""The search index: scores equal the pipeline's, nothing decoded where the index holds it,
what it lacks computed and counted, resume after kill -9, refusals, add, and the CLI."""

from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from comclip.backbones import create_backbone
from comclip.imaging.files import load_image
from comclip.pipeline import ComCLIP
from comclip.search import Index
from comclip.search.benchmark import describes, render_gallery, sandbox_search
from comclip.search.sources import expand_sources
from comclip.search.stored_images import parse_sub_key

from .conftest import load_json_lines

QUERIES = [
    "a large purple triangle and a small orange diamond",
    "a red circle to the left of a blue square",
    "a small green cross above a large yellow circle",
    "a circle",
]
ALL = ["clip", "comclip", "comclip-plus"]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """12 sandbox images (binding and order-swap pairs) and one file that is not an image."""
    folder = tmp_path_factory.mktemp("gallery")
    render_gallery(["binding", "order-swap"], seed=3, n=3, folder=folder / "pictures")
    (folder / "pictures" / "broken.png").write_bytes(b"not a png")
    return folder / "pictures"


@pytest.fixture(scope="module")
def bow():
    return create_backbone("comclip/sandbox-bow", device="cpu")


@pytest.fixture(scope="module")
def built(gallery, bow, tmp_path_factory) -> Index:
    return Index.build([gallery], tmp_path_factory.mktemp("idx") / "index", bow, part_size=5, methods=ALL)


def reference(backbone, index: Index, method: str, images: list[str], query: str) -> list[float]:
    """What comclip score computes: the pipeline on decoded files, or CLIP's cosine."""
    loaded = [load_image(p) for p in images]
    config = index.method_config(method)
    if config is None:
        return backbone.similarity([im.image for im in loaded], [query])[:, 0].tolist()
    return [row[0].score for row in ComCLIP(backbone, config).score_details(loaded, [query])]


def test_scores_equal_the_pipeline_without_decoding(built, bow):
    results = built.search(QUERIES, top=12, candidates=12, method=ALL)
    assert [(r.query, r.method) for r in results] == [(q, m) for q in QUERIES for m in ALL]
    for result in results:
        assert len(result.hits) == 12 and [h.rank for h in result.hits] == list(range(1, 13))
        expected = reference(bow, built, result.method, [h.image for h in result.hits], result.query)
        assert [h.score for h in result.hits] == pytest.approx(expected, abs=1e-4)
        assert all(a.score >= b.score for a, b in zip(result.hits, result.hits[1:]))
        assert (result.computed, result.decoded) == (0, 0)


def test_depth_and_pointing_queries_read_their_views_from_the_files(bow, tmp_path):
    """An index holds no views of depth or pointing: a query that says "in front of",
    "behind" or "points at" makes them from the decoded files (counted), and scores as the
    pipeline does."""
    queries, _ = render_gallery(["depth", "direction"], seed=3, n=2, folder=tmp_path / "pictures")
    index = Index.build([tmp_path / "pictures"], tmp_path / "index", bow, methods=["clip", "comclip-plus"])
    texts = [query[1] for query in queries]
    assert any("points at" in text for text in texts) and any(w in text for text in texts for w in ("behind", "in front of"))
    results = index.search(texts, top=8, candidates=8, method="comclip-plus")
    for result in results:
        expected = reference(bow, index, "comclip-plus", [h.image for h in result.hits], result.query)
        assert [h.score for h in result.hits] == pytest.approx(expected, abs=1e-4)
    # the first query makes its images' views (a later one may find them made: one search, one cache)
    assert results[0].computed > 0 and results[0].decoded > 0


def test_arrays_opened_up_front_give_the_same_answers(built, bow):
    """open_arrays (what settle does for a serving process) maps the embedding tables and
    reads the small rest whole; searches answer as from a lazily opened index."""
    import numpy as np

    reopened = Index.open(built.folder, bow)
    reopened.open_arrays()
    for part in reopened.parts:
        assert set(part._arrays) == {p.stem for p in part.folder.glob("*.npy")}
        assert all(isinstance(array, np.memmap) == name.endswith(".vec") for name, array in part._arrays.items())
    hits = [[(h.image, h.score) for h in r.hits] for r in built.search(QUERIES, top=5, candidates=12, method=ALL)]
    assert [[(h.image, h.score) for h in r.hits] for r in reopened.search(QUERIES, top=5, candidates=12, method=ALL)] == hits


def test_a_search_encodes_its_texts_in_one_model_call_and_restores_the_collector(built, bow, monkeypatch):
    """The query, its part phrases and the grounder's prompts go through the text tower once;
    the cycle collector is off while re-ranking and back on after (left off if it was off)."""
    import gc

    from comclip.cache.embeddings import MemoryCache

    calls: list[list[str]] = []
    original = bow._encode_text_batch
    monkeypatch.setattr(bow, "_encode_text_batch", lambda texts: calls.append(list(texts)) or original(texts))
    query = "a green triangle to the right of a yellow circle"  # words no earlier test searched
    seen: list[bool] = []
    monkeypatch.setattr(built, "shortlist", lambda *a, _s=built.shortlist: seen.append(gc.isenabled()) or _s(*a))
    fresh = MemoryCache()  # another cache to keep: a query cache of its own, no text seen before
    [result] = built.search(query, top=3, candidates=6, method="comclip-plus", keep=fresh)
    assert len(calls) == 1 and query in calls[0] and "a green triangle" in calls[0] and len(calls[0]) > 3
    assert seen == [False] and gc.isenabled() and len(result.hits) == 3
    gc.disable()
    try:
        built.search(query, top=3, candidates=6, method="comclip-plus")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_skipped_file_listed_with_its_reason(built, gallery):
    assert len(built) == 12
    skipped = built.skipped()
    assert [Path(r["path"]).name for r in skipped] == ["broken.png"]
    assert "not an image" in skipped[0]["skipped"]
    assert built.info()["counts"] == {"queued": 13, "indexed": 12, "skipped": 1}


def test_patch_grounder_and_union_cap(gallery, tiny_backbone, tmp_path):
    """A CLIP ViT grounds from patch tokens over grid windows; with no unions stored, a
    relation's sub-image is computed from the decoded file, counted, and scores still agree."""
    index = Index.build([gallery], tmp_path / "index", tiny_backbone, union_cap=0, methods=["clip", "comclip-plus"])
    query = "a red circle to the left of a blue square"
    [clip, plus] = index.search(query, top=4, candidates=6, method=["clip", "comclip-plus"])
    assert plus.computed > 0 and plus.decoded > 0 and clip.computed == 0
    expected = reference(tiny_backbone, index, "comclip-plus", [h.image for h in plus.hits], query)
    assert [h.score for h in plus.hits] == pytest.approx(expected, abs=1e-4)
    again = index.search(query, top=4, candidates=6, method="comclip-plus")[0]
    assert again.computed == 0 and [h.score for h in again.hits] == [h.score for h in plus.hits]


def test_changed_file_is_refused_when_read(gallery, tiny_backbone, tmp_path):
    import shutil

    pictures = tmp_path / "pictures"
    shutil.copytree(gallery, pictures)
    index = Index.build([pictures], tmp_path / "index", tiny_backbone, union_cap=0, methods=["comclip-plus"])
    for path in pictures.glob("*-0.png"):
        load_image(path).image.rotate(90).save(path)
    from comclip.errors import InputError

    with pytest.raises(InputError, match="changed since it was indexed"):
        index.search("a red circle to the left of a blue square", top=12, candidates=12, method="comclip-plus")


def test_add_indexes_only_new_images(gallery, bow, tmp_path):
    first = sorted(gallery.glob("binding*.png"))
    index = Index.build(first, tmp_path / "index", bow, methods=["clip"])
    assert len(index) == 6
    known = index.add([gallery])
    assert known == 6 and len(index) == 12
    assert {Path(h.image).name for h in index.search("a circle", top=12, candidates=12, method="clip")[0].hits} == {
        p.name for p in gallery.glob("*-*.png")
    }


def test_sources_folders_globs_and_lists(gallery, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"# two images\n{gallery / 'binding_3_0-0.png'}\n\n{os.path.relpath(gallery / 'binding_3_0-1.png', tmp_path)}\n"
    )
    assert expand_sources([listing]) == [
        str(gallery / "binding_3_0-0.png"),
        str(tmp_path / os.path.relpath(gallery / "binding_3_0-1.png", tmp_path)),
    ]
    assert len(expand_sources([gallery])) == 13
    assert len(expand_sources([str(gallery / "order-swap*.png"), gallery])) == 13
    from comclip.errors import InputError

    with pytest.raises(InputError, match="no such file"):
        expand_sources([tmp_path / "missing"])
    with pytest.raises(InputError, match="matches no image"):
        expand_sources([str(tmp_path / "*.jpg")])


def test_sub_keys_read_back():
    assert parse_sub_key("sub:abc|mean|1,2,3,4;5,6,7,8") == ("abc", "mean", frozenset({(1, 2, 3, 4), (5, 6, 7, 8)}))
    assert parse_sub_key("abc") is None


def test_cli_search_equals_comclip_score(built, cli):
    code, out, err = cli(
        "search", built.folder, QUERIES[1], "--top", "3", "--candidates", "12", "--method", ",".join(ALL), "--json", "--no-cache"
    )
    assert code == 0, err
    rows = load_json_lines(out)
    assert [r["method"] for r in rows] == ALL
    for row in rows:
        assert set(row) >= {"query", "method", "results"} and len(row["results"]) == 3
        for hit in row["results"]:
            code, scored, err = cli(
                "score", hit["image"], row["query"], "--method", ",".join(ALL), "--json", "--model", "comclip/sandbox-bow"
            )
            assert code == 0, err
            expected = json.loads(scored)["results"][0]
            assert hit["score"] == pytest.approx(expected[row["method"]], abs=1e-4)
            assert hit["clip"] == pytest.approx(expected["clip"], abs=1e-4)


def test_cli_refusals_are_one_line(built, gallery, tmp_path, cli):
    code, _, err = cli("index", "build", gallery, "--out", built.folder, "--model", "comclip/sandbox-bow")
    assert code == 2 and "already holds an index" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("index", "build", gallery, "--out", built.folder, "--model", "comclip/sandbox", "--resume", "-q")
    assert code == 2 and "built another way" in err and "fingerprint" in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    code, _, err = cli("index", "build", gallery, "--out", tmp_path / "mine")
    assert code == 2 and "not empty" in err and (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    code, _, err = cli("index", "build", tmp_path / "nothing", "--out", tmp_path / "new")
    assert code == 2 and "no such file" in err and not (tmp_path / "new").exists()
    code, _, err = cli("search", tmp_path / "mine", "a circle")
    assert code == 2 and "not a comclip index" in err
    code, _, err = cli("search", built.folder)
    assert code == 2 and "needs a query" in err
    code, out, err = cli("index", "info", built.folder)
    assert code == 0 and "12 images indexed, 1 skipped" in out and "broken.png" in out


def test_an_index_of_other_grounders_is_refused_in_one_line(built, tmp_path, cli):
    """An index whose stored candidates are of grounders this comclip no longer makes (one built
    before comclip-plus changed its grounder) is refused with what to do, not searched wrongly."""
    import shutil

    copy = tmp_path / "older"
    shutil.copytree(built.folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    grounders = manifest["identity"]["side"]["grounders"]
    manifest["identity"]["side"]["grounders"] = {"0" * len(key): value for key, value in grounders.items()}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = cli("search", copy, "a circle", "--method", "comclip-plus")
    assert code == 2 and "build it again" in err and len(err.strip().splitlines()) == 1


def test_sheet_is_drawn(built, tmp_path, cli):
    sheet = tmp_path / "sheet.png"
    code, _, err = cli("search", built.folder, QUERIES[0], "--top", "2", "--sheet", sheet, "--no-cache")
    assert code == 0, err
    from PIL import Image

    assert Image.open(sheet).size[0] > 200


def test_resume_after_kill_gives_the_same_index(gallery, tmp_path, cli, capsys):
    """A real build killed with SIGKILL once its first part is written, then resumed, equals a
    build that ran through; a build given no --method serves the methods comclip search uses
    by default, and refuses the paper's comclip in one line that says how to get it."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    args = ["index", "build", gallery, "--model", "comclip/sandbox-bow", "--part-size", "2", "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "comclip", *map(str, args), "--out", str(killed)], env=env)
    deadline = time.time() + 120
    while not list((killed / "parts").glob("0*")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    parts_before = len(list((killed / "parts").glob("0*")))
    assert 1 <= parts_before < 7, "the build was not killed part-way"
    from comclip.cli import main

    assert main([*map(str, args), "--out", str(clean)]) == 0
    assert Index.open(clean).manifest["identity"]["methods"] == ["clip", "comclip-plus"]
    capsys.readouterr()  # the build's own lines
    code, _, err = cli("search", clean, "a circle", "--method", "comclip")
    assert code == 2 and "--method including comclip" in err and len(err.strip().splitlines()) == 1
    assert main([*map(str, args), "--out", str(killed)]) == 2  # without --resume: refused
    assert main([*map(str, args), "--out", str(killed), "--resume"]) == 0
    compared = filecmp.dircmp(clean, killed, ignore=[".comclip.lock", ".comclip.lock.pid"])
    files = sorted(str(p.relative_to(clean)) for p in clean.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(killed)) for p in killed.rglob("*") if p.is_file())
    assert not compared.diff_files
    _, mismatch, errors = filecmp.cmpfiles(clean, killed, files, shallow=False)
    assert mismatch == [] and errors == []


def test_describes_reads_the_scene():
    from comclip.sandbox.pairs import make_pair

    pair = make_pair("order-swap", 0, 0)
    assert describes(pair.graphs[0], pair.scenes[0]) and not describes(pair.graphs[0], pair.scenes[1])


def test_sandbox_search_benchmark(bow, tmp_path):
    report = sandbox_search(bow, tmp_path / "run", tasks=["binding", "order-swap"], seed=11, n=6, candidates=12)
    assert (tmp_path / "run" / "report.md").read_text().count("| binding |") == 3
    plus, clip = report["recall"]["order-swap/comclip-plus"], report["recall"]["order-swap/clip"]
    assert plus["queries"] == 12 and plus["R@10"] == 100.0
    assert plus["twin"] > clip["twin"]


def test_app_search_tab_requests(built):
    from comclip.app.search_tab import api_search, search_request

    message, clip, plus, table = search_request(built, QUERIES[0], 3)
    assert "12 images" in message and len(clip) == 3 and len(plus) == 3
    assert table.count('data-method="comclip-plus"') == 3 and table.count('data-method="clip"') == 3
    rows = api_search(built, QUERIES[0], 3, "clip,comclip-plus")
    expected = built.search(QUERIES[0], top=3, candidates=100, method=["clip", "comclip-plus"])
    assert rows == [r.to_dict() for r in expected]
    message, *_ = search_request(built, "   ", 3)
    assert message.startswith("**Error:**")


def test_app_page_has_a_search_tab(built):
    from comclip.app import AppSession
    from comclip.app.page import build_page

    page = build_page(AppSession(built.backbone), [], built)
    names = {d.get("api_name") for d in page.config["dependencies"]}
    assert {"score", "search"} <= names


def test_two_processes_build_one_index(gallery, tmp_path):
    """torchrun: each process computes every other part into one folder; the index searches as
    one built by a single process."""
    from .test_distributed import torchrun

    args = [
        "index",
        "build",
        gallery,
        "--model",
        "comclip/sandbox-bow",
        "--part-size",
        "3",
        "-q",
        "--method",
        "clip,comclip-plus",
    ]
    command, env = torchrun([*args, "--out", tmp_path / "two"])
    two = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    from comclip.cli import main

    assert main([*map(str, args), "--out", str(tmp_path / "one")]) == 0
    one, both = Index.open(tmp_path / "one"), Index.open(tmp_path / "two")
    assert [p.records for p in one.parts] == [p.records for p in both.parts]
    for a, b in zip(
        one.search(QUERIES, top=5, method=["clip", "comclip-plus"]), both.search(QUERIES, top=5, method=["clip", "comclip-plus"])
    ):
        assert [h.image for h in a.hits] == [h.image for h in b.hits]
        assert [h.score for h in a.hits] == pytest.approx([h.score for h in b.hits], abs=1e-5)


def test_coco_photos_search_as_the_pipeline_scores(tiny_backbone, tmp_path):
    """Real photos (JPEG, many sizes): text-to-image search over shared COCO photos with a CLIP
    ViT (patch tokens, grid windows), each hit scored as the pipeline scores it."""
    from .conftest import shared_data

    captions = json.loads(shared_data("coco-mini", "captions.json").read_text())[:10]
    photos = [shared_data("coco-mini", row["image"]) for row in captions]
    index = Index.build(photos, tmp_path / "index", tiny_backbone, methods=["clip", "comclip", "comclip-plus"])
    assert len(index) == 10 and not index.skipped()
    query = captions[0]["captions"][0]
    for result in index.search(query, top=10, candidates=10, method=ALL):
        expected = reference(tiny_backbone, index, result.method, [h.image for h in result.hits], query)
        assert [h.score for h in result.hits] == pytest.approx(expected, abs=1e-4)
        assert result.decoded <= result.computed  # a file is read only for a pair past the union cap


def test_float16_and_a_trained_faiss_index(gallery, bow, tmp_path):
    """Half the bytes, scores within 1e-2 of float32; an IVF index is trained and searched."""
    small = Index.build([gallery], tmp_path / "half", bow, dtype="float16", faiss="IVF2,Flat", methods=["clip", "comclip-plus"])
    full = Index.build([gallery], tmp_path / "full", bow, methods=["clip", "comclip-plus"])
    assert small.info()["bytes"] < 0.75 * full.info()["bytes"]
    for a, b in zip(
        small.search(QUERIES, top=12, candidates=12, method="comclip-plus"),
        full.search(QUERIES, top=12, candidates=12, method="comclip-plus"),
    ):
        assert sorted(h.score for h in a.hits) == pytest.approx(sorted(h.score for h in b.hits), abs=1e-2)
    from comclip.errors import InputError

    with pytest.raises(InputError, match="cannot be trained"):
        Index.build([gallery], tmp_path / "big", bow, faiss="IVF4096,Flat", methods=["clip"])


def test_the_search_gallery_takes_a_folder_named_by_a_string(tmp_path):
    from comclip.search.benchmark import render_gallery

    queries, scenes = render_gallery(["binding"], 1, 2, str(tmp_path / "gallery"))
    assert len(queries) == 4 and len(scenes) == 4 and len(list((tmp_path / "gallery").glob("*.png"))) == 4


def test_a_build_leaves_the_garbage_collectors_frozen_objects_as_it_found_them():
    """While images are indexed, objects older than the build are left out of full scans;
    afterwards none stays frozen, and a process that froze its own keeps them frozen."""
    import gc

    from comclip.search.build import _older_objects_unscanned

    before = gc.get_freeze_count()  # another test may have settled an index (frozen for good)
    gc.unfreeze()
    try:
        with _older_objects_unscanned():
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() == 0
        gc.freeze()
        called = []  # the count itself drops as frozen objects die, so the calls are watched
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(gc, "freeze", lambda: called.append("freeze"))
            patch.setattr(gc, "unfreeze", lambda: called.append("unfreeze"))
            with _older_objects_unscanned():
                pass
        assert called == [] and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        if before:
            gc.freeze()


def test_an_index_of_another_format_version_is_refused_with_what_to_do(tmp_path):
    """An index written before the layout changed is one line: its version, and to rebuild."""
    from comclip.errors import InputError
    from comclip.search.layout import FORMAT, VERSION, read_manifest

    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT, "version": VERSION - 1, "identity": {}}))
    with pytest.raises(InputError, match="build the index again") as caught:
        read_manifest(tmp_path)
    assert "\n" not in str(caught.value) and f"version {VERSION - 1}" in str(caught.value)
