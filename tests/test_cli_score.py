"""`comclip score` and `comclip models` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from .conftest import run_cli


def test_score_json_single_image(cli, tiny_model_dir, rgb_image_path):
    code, out, err = cli("score", "--model", tiny_model_dir, "--json", rgb_image_path, "a dog", "a cat")
    assert code == 0, err
    data = json.loads(out)
    assert data["model"] == str(tiny_model_dir)
    assert data["image"] == str(rgb_image_path)
    assert [r["text"] for r in data["results"]] == ["a dog", "a cat"]
    for r in data["results"]:
        assert -1.0 <= r["clip"] <= 1.0
        assert r["clip_logit"] == pytest.approx(r["clip"] * 1 / 0.07, rel=1e-4)


def test_score_matches_python_api(cli, tiny_model_dir, tiny_backbone, rgb_image_path):
    code, out, _ = cli("score", "--model", tiny_model_dir, "--json", rgb_image_path, "a dog", "a cat")
    expected = tiny_backbone.similarity([rgb_image_path], ["a dog", "a cat"])[0]
    got = [r["clip"] for r in json.loads(out)["results"]]
    assert got == pytest.approx(expected.tolist(), abs=1e-6)


def test_score_several_images_gives_matrix(cli, tiny_model_dir, rgb_image_path, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, colour in enumerate([(0, 255, 0), (9, 9, 9)]):
        Image.new("RGB", (20, 20), colour).save(folder / f"{i}.png")
    code, out, err = cli(
        "score", "--model", tiny_model_dir, "--json", "--image", rgb_image_path, "--image", folder, "a dog", "a cat", "a tree"
    )
    assert code == 0, err
    data = json.loads(out)
    assert len(data["images"]) == 3 and data["texts"] == ["a dog", "a cat", "a tree"]
    assert [len(r["results"]) for r in data["results"]] == [3, 3, 3]
    assert data["results"][1]["image"].endswith("0.png")


def test_score_plain_text_output(cli, tiny_model_dir, rgb_image_path):
    code, out, _ = cli("score", "--model", tiny_model_dir, rgb_image_path, "a dog")
    assert code == 0
    assert "clip" in out and "a dog" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["/definitely/missing.jpg", "a dog"], "image not found: /definitely/missing.jpg"),
        (["IMAGE", "   "], "caption #0 is empty or whitespace only"),
        (["IMAGE"], "needs an image and at least one caption"),
    ],
)
def test_score_usage_errors_exit_2(cli, tiny_model_dir, rgb_image_path, args, message):
    args = [str(rgb_image_path) if a == "IMAGE" else a for a in args]
    code, out, err = cli("score", "--model", tiny_model_dir, *args)
    assert code == 2
    assert message in err
    assert out == ""


def test_unknown_model_exits_2_with_suggestion(cli, rgb_image_path):
    code, _, err = cli("score", "--model", "openai/clip-vit-base-patch23", rgb_image_path, "a dog")
    assert code == 2
    assert "Did you mean: openai/clip-vit-base-patch32" in err


def test_long_caption_warns_on_stderr(cli, tiny_model_dir, rgb_image_path):
    code, out, err = cli("score", "--model", tiny_model_dir, "--json", rgb_image_path, "a red ball " * 40)
    assert code == 0
    assert "warning" in err and "truncated" in err
    assert len(json.loads(out)["results"]) == 1


def test_models_lists_backbones(cli):
    code, out, _ = cli("models")
    assert code == 0
    assert "openai/clip-vit-base-patch32" in out and "open_clip:ViT-B-32/openai" in out
    assert "comclip[openclip]" in out or "[openclip] (installed)" in out
    code, out, _ = cli("models", "--json")
    entries = {e["name"]: e for e in json.loads(out)}
    assert entries["open_clip:ViT-B-32/openai"]["extra"] == "openclip"
    assert entries["openai/clip-vit-base-patch32"]["extra"] is None
    families = {e["backend"]: e for e in entries.values() if e["pattern"]}
    assert set(families) == {"hf", "open_clip", "slip", "blip2"}  # every family the registry loads
    assert families["slip"]["name"] == "slip:PATH" and families["slip"]["extra"] == "slip"
    assert families["open_clip"]["extra"] == "openclip" and "slip:PATH" in cli("models")[1]


def test_console_script_end_to_end(tiny_model_dir, rgb_image_path):
    """The installed program, in its own process, as the README shows it."""
    proc = run_cli(["score", "--model", tiny_model_dir, "--json", rgb_image_path, "a dog", "a cat"])
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["results"]) == 2
    proc = run_cli(["score", "--model", tiny_model_dir, rgb_image_path, ""])
    assert proc.returncode == 2 and "empty" in proc.stderr and "Traceback" not in proc.stderr


def _bad_images(folder):
    import numpy as np

    (folder / "text.jpg").write_text("not a picture")
    full = folder / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full)
    (folder / "truncated.jpg").write_bytes(full.read_bytes()[:300])
    return {"text.jpg": "not an image file", "truncated.jpg": "corrupt or truncated image", "missing.jpg": "image not found"}


def test_bad_image_files_exit_2_naming_the_file(cli, tiny_model_dir, tmp_path):
    for name, message in _bad_images(tmp_path).items():
        code, out, err = cli("score", "--model", tiny_model_dir, tmp_path / name, "a dog")
        assert code == 2, name
        assert message in err and name in err
        assert out == ""


def test_every_image_mode_is_scored(cli, tiny_model_dir, tmp_path):
    """Grayscale, palette, RGBA, CMYK and 16-bit files in one folder all get scores."""
    import numpy as np

    Image.new("L", (20, 20), 90).save(tmp_path / "gray.png")
    Image.new("RGB", (20, 20), (9, 99, 199)).convert("P").save(tmp_path / "palette.png")
    Image.new("RGBA", (20, 20), (9, 99, 199, 128)).save(tmp_path / "rgba.png")
    Image.new("CMYK", (20, 20), (0, 120, 200, 10)).save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(tmp_path / "sixteen.png")
    code, out, err = cli("score", "--model", tiny_model_dir, "--json", "--image", tmp_path, "a blue square")
    assert code == 0, err
    data = json.loads(out)
    assert [Path(p).name for p in data["images"]] == ["cmyk.jpg", "gray.png", "palette.png", "rgba.png", "sixteen.png"]
    assert all(-1 <= r["results"][0]["clip"] <= 1 for r in data["results"])


def test_both_pixel_paths_score_alike_and_a_bad_one_exits_2(cli, tiny_model_dir, rgb_image_path):
    scores = {}
    for pixels in ("torch", "pil"):
        code, out, err = cli(
            "score",
            "--model",
            tiny_model_dir,
            "--method",
            "clip,comclip",
            "--pixels",
            pixels,
            "--json",
            rgb_image_path,
            "a red square beside a blue square",
            "a dog",
        )
        assert code == 0, err
        scores[pixels] = [r[key] for r in json.loads(out)["results"] for key in ("clip", "comclip")]
    assert scores["torch"] == pytest.approx(scores["pil"], abs=0.01)
    code, out, err = cli("score", "--model", tiny_model_dir, "--pixels", "gpu", rgb_image_path, "a dog")
    assert code == 2 and "--pixels" in err and len(err.strip().splitlines()) == 1 and out == ""


def test_the_command_line_sets_its_thread_wait_where_the_user_has_not(monkeypatch, capsys):
    """``GOMP_SPINCOUNT`` (how long torch's OpenMP threads spin before they sleep) is set by a
    command for itself and the workers it starts, unless the user set it."""
    import os

    from comclip.cli import PROCESS_ENVIRONMENT, main

    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert main(["methods"]) == 0
    assert os.environ["GOMP_SPINCOUNT"] == PROCESS_ENVIRONMENT["GOMP_SPINCOUNT"] == "1000"
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")
    assert main(["methods"]) == 0
    assert os.environ["GOMP_SPINCOUNT"] == "300000"
