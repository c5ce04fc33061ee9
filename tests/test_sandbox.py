"""The sandbox: deterministic scenes with exact boxes, minimal pairs that differ exactly as
their task says, a tokenizer that matches CLIP's, training that writes a loadable model,
the oracle grounder, and `comclip eval sandbox` / `comclip sandbox` end to end."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from comclip.sandbox.pairs import ALL_TASKS, make_pair, minimal_pairs
from comclip.sandbox.scenes import IMAGE_SIZE, SHAPES, random_scene, relation_between, training_example


def test_scenes_are_deterministic_with_boxes_inside_and_apart():
    a, b = (random_scene(np.random.default_rng(5), 3) for _ in range(2))
    assert a == b and np.array_equal(np.asarray(a.render()), np.asarray(b.render()))
    for scene in (random_scene(np.random.default_rng(s), 3) for s in range(30)):
        boxes = scene.boxes()
        assert all(0 <= x.x1 < x.x2 <= IMAGE_SIZE and 0 <= x.y1 < x.y2 <= IMAGE_SIZE for x in boxes)
        assert all(p.iou(q) == 0 for i, p in enumerate(boxes) for q in boxes[i + 1 :])


def test_objects_are_drawn_inside_their_boxes():
    scene = random_scene(np.random.default_rng(3), 2)
    pixels = np.asarray(scene.render(), dtype=np.float32)
    background = np.array(scene.background, dtype=np.float32)
    differs = np.linalg.norm(pixels - background, axis=-1) > 60  # well above the pixel noise
    inside = np.zeros_like(differs)
    for box in scene.boxes():
        x1, y1, x2, y2 = box.pixels()
        inside[y1:y2, x1:x2] = True
    assert differs[inside].sum() > 100 and differs[~inside].sum() == 0


def test_relations_follow_the_geometry():
    from comclip.grounding import Box
    from comclip.sandbox.scenes import SceneObject

    left = SceneObject("circle", "red", "small", Box(2, 30, 14, 42))
    right = SceneObject("square", "blue", "small", Box(40, 28, 52, 40))
    assert relation_between(left, right) == "to the left of" and relation_between(right, left) == "to the right of"
    top = SceneObject("star", "red", "small", Box(30, 2, 42, 14))
    assert relation_between(top, SceneObject("cross", "red", "small", Box(30, 40, 42, 52))) == "above"
    assert relation_between(top, SceneObject("cross", "red", "small", Box(34, 6, 46, 18))) is None  # too close


def _bag(caption: str) -> Counter:
    return Counter(caption.replace(",", " ").split())


@pytest.mark.parametrize("task", ALL_TASKS)
def test_minimal_pairs_differ_as_their_task_says(task):
    for pair in minimal_pairs(task, seed=11, n=25):
        c0, c1 = pair.captions
        assert c0 != c1 and pair.scenes[0] != pair.scenes[1]
        if task == "substitution":
            w0, w1 = c0.split(), c1.split()
            assert len(w0) == len(w1) and sum(a != b for a, b in zip(w0, w1)) == 1
        else:  # same words, different order: a bag of words cannot tell them apart
            assert _bag(c0) == _bag(c1)
        for scene, caption in zip(pair.scenes, pair.captions):
            for obj in scene.objects:
                assert (obj.phrase in caption) == obj.named  # each caption names its own scene's objects
    assert make_pair(task, 11, 3) == minimal_pairs(task, 11, 5)[3]  # items don't depend on n


def test_order_swap_moves_objects_not_attributes():
    pair = make_pair("order-swap", 2, 0)
    (a, b), (a2, b2) = pair.scenes[0].objects, pair.scenes[1].objects
    assert (a.phrase, b.phrase) == (a2.phrase, b2.phrase)
    centre = lambda o: ((o.box.x1 + o.box.x2) / 2, (o.box.y1 + o.box.y2) / 2)  # noqa: E731
    assert centre(a2) == pytest.approx(centre(b)) and centre(b2) == pytest.approx(centre(a))


def test_training_captions_cover_the_grammar():
    rng = np.random.default_rng(0)
    captions = [training_example(rng)[1] for _ in range(400)]
    assert any(" and " in c for c in captions) and any("to the left of" in c for c in captions)
    assert any(c in {f"a {s}" for s in SHAPES} for c in captions)  # bare nouns, for grounding queries
    assert all(c.startswith("a ") for c in captions)


def test_sandbox_tokenizer_matches_clip(tmp_path):
    from transformers import CLIPTokenizer

    from comclip.sandbox.training import write_sandbox_tokenizer
    from comclip.testing import clip_bpe_files

    small = write_sandbox_tokenizer(tmp_path / "small")
    full = CLIPTokenizer(*map(str, clip_bpe_files(tmp_path / "full")))
    assert len(small) < 1000
    for caption in ("a small red circle to the left of a large blue square", "a white star, a green cross and a purple diamond"):
        assert small.tokenize(caption) == full.tokenize(caption)
    assert small.tokenize("a zebra")  # unknown words still tokenise (as characters)


def test_training_writes_a_loadable_model(tmp_path):
    from comclip.backbones import create_backbone
    from comclip.sandbox.quality import model_quality
    from comclip.sandbox.training import TrainingConfig, train_sandbox_model

    training = TrainingConfig(steps=3, batch_size=8, warmup_steps=1, pixel_share=0.5)
    out = train_sandbox_model(tmp_path / "m", training, log=lambda _: None)
    record = json.loads((out / "training.json").read_text())
    assert record["samples_seen"] == 24 and len(record["history"]) == 2 and record["training"]["pixel_share"] == 0.5
    backbone = create_backbone(str(out))
    assert backbone.image_size == IMAGE_SIZE and backbone.encode_texts(["a red circle"]).shape[1] == 128
    quality = model_quality(str(out), n=100, backbone=backbone)
    assert set(quality["substitution"]) == {"colour", "size", "shape"} and 0 <= quality["r@1_i2t"]["value"] <= 100
    (out / "comclip.json").write_text('{"entity_prompt": "the {}"}')  # a parent's own defaults carry over
    on = train_sandbox_model(tmp_path / "on", TrainingConfig(steps=1, batch_size=4, init=str(out)), log=lambda _: None)
    lineage = json.loads((on / "training.json").read_text())
    assert lineage["samples_seen"] == 4 and lineage["continued_from"]["samples_seen"] == 24
    assert (on / "comclip.json").read_text() == '{"entity_prompt": "the {}"}'
    (out / "training.json").unlink()  # a parent trained elsewhere has no record: the run still saves
    elsewhere = train_sandbox_model(tmp_path / "on2", TrainingConfig(steps=1, batch_size=4, init=str(out)), log=lambda _: None)
    assert json.loads((elsewhere / "training.json").read_text())["continued_from"] == {"training": "unknown"}


def test_training_continues_from_a_model_with_fewer_words(tmp_path):
    """``--init``: every weight of the earlier model carries over, each word it knew keeps its
    embedding row wherever the larger vocabulary puts it, and a word it lacked starts fresh."""
    import torch
    from transformers import CLIPModel

    from comclip.sandbox.training import SandboxModelConfig, continue_from, new_sandbox_model

    arch = SandboxModelConfig(width=32, vision_layers=1, text_layers=1, heads=2, projection_dim=16)
    fresh, processor = new_sandbox_model(tmp_path / "new", arch, seed=2)
    vocab = processor.tokenizer.get_vocab()
    known = [token for token in sorted(vocab, key=vocab.get) if token != "front</w>"][::-1]  # other ids
    old_config = fresh.config.to_dict()
    old_config["text_config"]["vocab_size"] = len(known)
    torch.manual_seed(3)
    old = CLIPModel(type(fresh.config).from_dict(old_config))
    old.save_pretrained(tmp_path / "old")
    (tmp_path / "old" / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(known)}))
    front_before = fresh.text_model.embeddings.token_embedding.weight[vocab["front</w>"]].clone()

    continue_from(fresh, processor.tokenizer, tmp_path / "old")
    rows, old_rows = fresh.text_model.embeddings.token_embedding.weight, old.text_model.embeddings.token_embedding.weight
    assert all(torch.equal(rows[vocab[t]], old_rows[i]) for i, t in enumerate(known))
    assert torch.equal(rows[vocab["front</w>"]], front_before)
    kept = {k: v for k, v in old.state_dict().items() if "token_embedding" not in k}
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in kept.items())


def test_training_refuses_to_continue_from_what_is_not_a_sandbox_model(cli, tmp_path):
    code, _, err = cli("sandbox", "train", "--out", tmp_path / "m", "--init", tmp_path / "nothing")
    assert code == 2 and "not a sandbox model to continue from" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()  # refused before anything was written


def test_training_refuses_to_continue_from_another_architecture(tmp_path):
    from comclip.errors import InputError
    from comclip.sandbox.training import SandboxModelConfig, TrainingConfig, model_directory, train_sandbox_model

    shipped = model_directory("comclip/sandbox")
    with pytest.raises(InputError, match="width 128 \\(not 64\\)"):
        train_sandbox_model(tmp_path / "m", TrainingConfig(steps=1, init=str(shipped)), SandboxModelConfig(width=64))
    assert not (tmp_path / "m").exists()


def test_oracle_grounder_is_exact():
    from comclip.eval.benchmarks.datasets import load_dataset
    from comclip.eval.reports.grounding_accuracy import grounding_hits, oracle_grounder

    dataset = load_dataset("sandbox", task="binding,substitution", seed=4, n=5)
    oracle = oracle_grounder(dataset)
    hits = grounding_hits(oracle, dataset)
    assert len(hits) == 10 * 2 * 2 and all(hits)
    assert oracle.ground(dataset.examples[0].images[0], ["zebra"]) == [[]]
    # a grounder asked by the whole phrase (comclip-plus's --ground-by phrase) finds the object it names
    example = dataset.examples[0]
    (shape, box), *_ = example.boxes[0]
    heads, phrases = oracle.ground(example.images[0], [shape, f"a large red {shape}"])
    assert [d.boxes for d in phrases] == [d.boxes for d in heads] and (box,) in [d.boxes for d in heads]
    assert oracle.ground(example.images[0], [f"{shape}s"]) == [[]]  # a word of its own, not a part of one


def test_eval_sandbox_cli(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "sb"
    code, stdout, err = cli(
        "eval", "sandbox", "--task", "binding,order-swap", "--n", "4", "--seed", "3", "--model", tiny_model_dir, "--out", out
    )
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "sandbox" and report["split"] == "seed3"
    for run in report["runs"]:
        assert run["n_scored"] == 8 and set(run["metrics"]) == {"text", "image", "group", "pairwise"}
        assert set(run["subsets"]) == {"binding", "order-swap"}
    assert report["grounding"]["oracle"]["value"] == 100.0 and report["grounding"]["clip"]["n"] == 32
    by_task = report["grounding"]["clip"]["subsets"]  # each task's objects apart (crowded scenes, say)
    assert set(by_task) == {"binding", "order-swap"} and [m["n"] for m in by_task.values()] == [16, 16]
    markdown = (out / "report.md").read_text()
    assert "Grounding accuracy" in markdown and "| grounder | binding | order-swap |" in markdown
    assert markdown.startswith("# sandbox (seed 3, tasks binding, order-swap, 4 items per task), model")
    code, _, err = cli("eval", "sandbox", "--task", "colour", "--model", tiny_model_dir, "--out", tmp_path / "x")
    assert code == 2 and "unknown sandbox task" in err
    code, _, err = cli(
        "eval",
        "sandbox",
        "--task",
        "binding",
        "--n",
        "2",
        "--grounder",
        "oracle",
        "--model",
        tiny_model_dir,
        "--out",
        tmp_path / "o",
    )
    assert code == 0, err
    code, _, err = cli(  # the true masks of what shows: comclip-plus grounds every depth entity to its own pixels
        "eval", "sandbox", "--task", "depth", "--n", "2", "--method", "comclip-plus", "--parser", "given",
        "--grounder", "oracle-masks", "--model", tiny_model_dir, "--out", tmp_path / "m",
    )  # fmt: skip
    assert code == 0, err
    grounding = json.loads((tmp_path / "m" / "report.json").read_text())["grounding"]
    assert grounding["oracle-masks joint"]["value"] == 100.0 and grounding["oracle-masks joint"]["n"] == 8


def test_sandbox_pairs_export(cli, tmp_path):
    code, _, err = cli("sandbox", "pairs", "--task", "object-swap", "--n", "2", "--out", tmp_path / "p")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "p" / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all((tmp_path / "p" / name).exists() for r in rows for name in r["images"])
    assert rows[0]["boxes"][0][0][0].startswith("a ")


def test_sandbox_pairs_export_the_boxes_of_what_shows(cli, tmp_path):
    """Depth pairs: each named object's shown box is the scene's (``Scene.shown_boxes``,
    checked against the masks in ``test_pixel_pairs``), by phrase beside its whole box; the
    one behind's differs from its whole box in at least one image."""
    code, _, err = cli("sandbox", "pairs", "--task", "depth", "--n", "3", "--seed", "7", "--out", tmp_path / "p")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "p" / "pairs.jsonl").read_text().splitlines()]
    differs = 0
    for n, row in enumerate(rows):
        for scene, whole, shown in zip(make_pair("depth", 7, n).scenes, row["boxes"], row["shown_boxes"]):
            assert [phrase for phrase, _ in shown] == [phrase for phrase, _ in whole]
            assert [box for _, box in shown] == [b.as_list() for b in scene.shown_boxes()]  # both objects named
            differs += any(np.abs(np.subtract(seen, box)).max() > 1 for (_, seen), (_, box) in zip(shown, whole))
    assert differs >= 1
