"""Broken and hostile model folders, through the real command line: one line naming the folder, nothing run from it, nothing changed in it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .conftest import run_cli_here
from .faults import (
    assert_inprocess_error,
    assert_user_error,
    error_lines,
    eval_args,
    file_hash,
)


def test_a_corrupt_weights_file_is_one_line(tiny_model_dir, rgb_image_path, tmp_path):
    broken = Path(shutil.copytree(tiny_model_dir, tmp_path / "broken"))
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    before = file_hash(broken)
    assert_user_error(run_cli_here(["score", rgb_image_path, "a red square", "--model", broken]), str(broken))
    assert file_hash(broken) == before


def test_a_model_without_its_tokenizer_files_is_refused(tiny_model_dir, rgb_image_path, tmp_path):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "no-tokenizer"))
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    result = run_cli_here(["score", rgb_image_path, "a red square", "a blue circle", "--model", folder])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(error_lines(result)) == 1 and str(folder) in error_lines(result)[0]


def test_every_transformers_load_refuses_a_model_folders_own_code(cli, tiny_model_dir, rgb_image_path, monkeypatch):
    """A model folder never runs its Python: every load passes ``trust_remote_code=False``, so
    transformers' remote-code prompt cannot be answered "y" on a terminal."""
    import transformers

    seen: list[tuple[str, object]] = []

    def recording(owner, name):
        original = owner.from_pretrained.__func__

        def load(cls, *args, **kwargs):
            seen.append((name, kwargs.get("trust_remote_code", "not passed")))
            return original(cls, *args, **kwargs)

        monkeypatch.setattr(owner, "from_pretrained", classmethod(load))

    for name in ("AutoConfig", "AutoProcessor", "AutoModel", "CLIPModel"):
        recording(getattr(transformers, name), name)
    code, _, err = cli("score", rgb_image_path, "a red square", "--model", tiny_model_dir)
    assert code == 0, err
    assert seen and all(value is False for _, value in seen), seen


def test_a_model_folder_cannot_switch_on_the_llm_parser(tiny_model_dir, rgb_image_path, tmp_path):
    """A comclip.json with {"parser": "llm"} would send the captions, with the user's key, to
    their endpoint: refused in one line before any caption is parsed (the endpoint here is a
    port nothing listens on; a request would fail differently)."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "comclip.json").write_text(json.dumps({"parser": "llm"}))
    env = {"COMCLIP_LLM_BASE_URL": "http://127.0.0.1:9/v1", "COMCLIP_LLM_API_KEY": "secret", "COMCLIP_LLM_MODEL": "m"}
    result = run_cli_here(["score", rgb_image_path, "a red square", "--model", folder], env=env)
    assert_user_error(result, "parser", "cannot be set by a model folder")
    result = run_cli_here(["score", rgb_image_path, "a red square", "--model", tiny_model_dir], env=env)
    assert result.returncode == 0, result.stderr  # the same model without the file scores, parsing locally


def test_a_model_is_all_of_its_files(cli, tiny_model_dir, four_examples, rgb_image_path, tmp_path, monkeypatch):
    """Editing a model folder's processor (its normalisation) in place makes another model: the
    cache does not return the old embeddings, and ``--resume`` refuses to add its records to
    the old run's, naming the fingerprint."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cache = tmp_path / "cache"
    score = ["score", rgb_image_path, "a red square", "--model", model, "--json"]
    out = tmp_path / "run"
    assert cli(*eval_args(model, four_examples, out, cache=cache))[0] == 0

    def clip_cosine(folder):
        monkeypatch.setenv("COMCLIP_CACHE", str(folder))
        code, stdout, err = cli(*score)
        assert code == 0, err
        return json.loads(stdout)["results"][0]["clip"]

    before = clip_cosine(cache)
    config = json.loads((model / "processor_config.json").read_text())
    config["image_processor"]["image_mean"] = [0.1, 0.2, 0.3]
    (model / "processor_config.json").write_text(json.dumps(config))
    after, fresh = clip_cosine(cache), clip_cosine(tmp_path / "fresh")
    assert after == fresh != before
    assert_inprocess_error(
        cli(*eval_args(model, four_examples, out, "--resume", cache=cache)), str(out), "another run", "fingerprint"
    )


def test_a_device_that_cannot_run_a_model_is_one_line(cli, tiny_model_dir, four_examples, tmp_path):
    for device, words in [("meta", ["'meta'", "cannot run a model"]), ("mps", ["'mps'", "not available"])]:
        assert_inprocess_error(cli(*eval_args(tiny_model_dir, four_examples, tmp_path / device, "--device", device)), *words)
