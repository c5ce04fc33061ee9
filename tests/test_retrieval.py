"""Retrieval: both file formats, Recall@K against the reference metric, re-ranking, failed
images and captions counted with reasons, resumable runs, and coco-mini end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from comclip.errors import InputError
from comclip.eval.benchmarks import metrics
from comclip.eval.benchmarks.datasets import load_dataset
from comclip.eval.runs.recall import run_retrieval, strict_rank
from comclip.results import GroupScores

from .conftest import shared_data

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 30), (200, 30, 200)]


@pytest.fixture
def gallery(tmp_path):
    rows = []
    for n, colour in enumerate(COLOURS):
        Image.new("RGB", (48, 40), colour).save(tmp_path / f"im{n}.png")
        rows.append({"image": f"im{n}.png", "captions": [f"a flat colour number {n}", f"colour {n} everywhere"]})
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(rows))
    return path


def test_strict_rank_counts_ties_against_the_target():
    assert strict_rank(np.array([0.1, 0.9, 0.5]), 1) == 0
    assert strict_rank(np.array([0.5, 0.9, 0.5]), 0) == 2  # the tie and the higher one
    assert strict_rank(np.array([0.3, 0.9, 0.8]), [0, 2]) == 1


def test_caption_and_karpathy_formats(tmp_path, gallery):
    data = load_dataset("retrieval", gallery)
    assert len(data.images) == 5 and len(data.captions) == 10 and data.caption_image[:4] == [0, 0, 1, 1]
    karpathy = {
        "images": [
            {"filepath": "val", "filename": "a.jpg", "split": "test", "sentences": [{"raw": "a cat"}, {"tokens": ["a", "dog"]}]},
            {"filepath": "val", "filename": "b.jpg", "split": "train", "sentences": [{"raw": "a bird"}]},
        ]
    }
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps(karpathy))
    test = load_dataset("retrieval", path)
    assert test.split == "test" and test.captions == ["a cat", "a dog"] and test.images[0].endswith("val/a.jpg")
    assert load_dataset("retrieval", path, split="train").captions == ["a bird"]
    path.write_text(json.dumps([{"image": "x.jpg"}]))
    with pytest.raises(InputError, match="item 0: needs 'image'"):
        load_dataset("retrieval", path)
    with pytest.raises(InputError, match="takes no option split"):
        load_dataset("jsonl", path, split="test")


class _CLIPAsReranker:
    """Re-scores with the backbone's own cosine similarity: re-ranking must then change nothing."""

    def __init__(self, backbone):
        self.backbone = backbone

    def score(self, images, texts):
        return self.backbone.similarity([im.image for im in images], texts)


def test_recall_matches_reference_and_identity_rerank(tiny_backbone, gallery, tmp_path):
    data = load_dataset("retrieval", gallery)
    results = run_retrieval(data, tiny_backbone, tmp_path / "out", reranker=_CLIPAsReranker(tiny_backbone), rerank_top=3)
    images = [Image.open(p).convert("RGB") for p in data.images]
    similarity = tiny_backbone.similarity(images, data.captions).numpy()
    for k in (1, 5, 10):
        hits = metrics.retrieval_hits(similarity, data.caption_image, k)
        for direction, n in (("t2i", 10), ("i2t", 5)):
            ours = [results[("clip", f"{direction}/{q}")]["correct"][f"r@{k}_{direction}"] for q in range(n)]
            assert ours == hits[direction].tolist()
    for key, record in results.items():
        if key[0] == "comclip":
            assert record["rank"] == results[("clip", key[1])]["rank"] == record["clip_rank"]


def test_missing_image_fails_its_queries_with_reason(tiny_backbone, gallery, tmp_path):
    (gallery.parent / "im2.png").unlink()
    data = load_dataset("retrieval", gallery)
    results = run_retrieval(data, tiny_backbone, tmp_path / "out")
    failed = {key[1]: r["error"] for key, r in results.items() if r["status"] == "failed"}
    assert set(failed) == {"i2t/2", "t2i/4", "t2i/5"}
    assert "image not found" in failed["i2t/2"] and failed["t2i/4"].startswith("its image failed")
    assert sum(r["status"] == "ok" for r in results.values()) == 4 + 8


class _Refuses(_CLIPAsReranker):
    """Scores groups in batches, but refuses any batch holding one given caption."""

    def __init__(self, backbone, refused: str):
        super().__init__(backbone)
        self.refused, self.batches = refused, []

    def score_groups(self, groups):
        self.batches.append(len(groups))
        if any(self.refused in texts for _, texts in groups):
            raise InputError(f"refused caption: {self.refused}")
        return [GroupScores(self.score(images, texts), {}, []) for images, texts in groups]


def test_reranking_is_batched_across_queries_and_failures_traced(tiny_backbone, gallery, tmp_path):
    from comclip.eval.runs.recall import Gallery
    from comclip.pipeline import ComCLIP

    data = load_dataset("retrieval", gallery)
    one = run_retrieval(data, tiny_backbone, tmp_path / "one", reranker=ComCLIP(tiny_backbone), rerank_top=3, chunk=1)
    many = run_retrieval(
        data, tiny_backbone, tmp_path / "many", reranker=ComCLIP(tiny_backbone), rerank_top=3, chunk=32, workers=1
    )
    assert one == many
    refusing = _Refuses(tiny_backbone, data.captions[3])
    results = run_retrieval(data, tiny_backbone, tmp_path / "refused", reranker=refusing, rerank_top=5)
    failed = {key[1]: r["error"] for key, r in results.items() if r["status"] == "failed"}
    # the caption's own query fails, and the image queries whose candidates hold it; no other
    assert "t2i/3" in failed and all(key.startswith("i2t/") for key in set(failed) - {"t2i/3"})
    assert all("refused caption" in error for error in failed.values())
    assert sum(r["status"] == "ok" and r["method"] == "comclip" for r in results.values()) == 15 - len(failed) >= 10
    assert refusing.batches[0] >= 10  # the chunk's queries (those with a target in the top 5) in one call
    small = Gallery(data.images, keep=2)
    ids, embeddings = small.encode(tiny_backbone, chunk=2)
    assert ids == list(range(5)) and embeddings.shape[0] == 5
    assert small._get.cache_info().currsize == 0  # encoding streams; nothing is kept decoded
    assert small[4].image.size == (48, 40)
    sizes = [Image.open(path).size for path in data.images[:4]]
    assert [small[n].image.size for n in range(4)] == sizes and small._get.cache_info().currsize == 2


def test_retrieval_cli_resumes_to_the_same_report(cli, tiny_model_dir, gallery, tmp_path):
    full, partial = tmp_path / "full", tmp_path / "partial"
    args = ["eval", "retrieval", "--data", gallery, "--model", tiny_model_dir, "--rerank-top", "2"]
    assert cli(*args, "--out", full)[0] == 0
    lines = (full / "per_example.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 15
    partial.mkdir()
    (partial / "per_example.jsonl").write_text("\n".join(lines[:20]) + "\n" + lines[20][:10])
    (partial / "run.json").write_text((full / "run.json").read_text())  # written when the run started
    assert cli(*args, "--out", partial, "--resume")[0] == 0
    a, b = (json.loads((d / "report.json").read_text()) for d in (full, partial))
    assert a["runs"] == b["runs"]
    assert a["runs"][1]["config"]["rerank_top"] == 2
    assert cli(*args, "--out", tmp_path / "bad", "--rerank-top", "0")[0] == 2


def test_coco_mini_retrieval_end_to_end(cli, tiny_model_dir, tmp_path):
    """The issue's done-when: coco-mini (239 images, 1,195 captions), both methods, complete report."""
    captions = shared_data("coco-mini", "captions.json")
    out = tmp_path / "coco"
    code, stdout, err = cli("eval", "retrieval", "--data", captions, "--model", tiny_model_dir, "--rerank-top", "3", "--out", out)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert [r["method"] for r in report["runs"]] == ["clip", "comclip"]
    for run in report["runs"]:
        assert run["n_scored"] + run["n_failed"] == 239 + 1195
        assert set(run["metrics"]) == {f"r@{k}_{d}" for k in (1, 5, 10) for d in ("t2i", "i2t")}
        for metric in run["metrics"].values():
            assert metric["ci95"][0] <= metric["value"] <= metric["ci95"][1]
    assert "| comclip |" in (out / "report.md").read_text()
