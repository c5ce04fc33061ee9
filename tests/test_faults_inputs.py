"""Odd inputs, through the real command line: options, output paths, captions, dataset files, images and reports, each one line naming it."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from PIL import Image

from .conftest import run_cli, run_cli_here
from .faults import (
    assert_inprocess_error,
    assert_user_error,
    file_hash,
    run_eval,
)


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--limit", "0", ["--limit", "at least 1"]),
        ("--limit", "-1", ["--limit"]),
        ("--bootstrap", "-1", ["--bootstrap"]),
        ("--temperature", "nan", ["--temperature", "finite"]),
        ("--evidence-weight", "nan", ["--evidence-weight"]),
        ("--union-margin", "-0.5", ["union_margin"]),
        ("--precision", "half", ["precision"]),
    ],
)
def test_bad_options_are_one_line_before_any_work(tiny_model_dir, four_examples, tmp_path, option, value, words):
    assert_user_error(run_eval(tiny_model_dir, four_examples, tmp_path / "out", option, value), *words)
    assert not (tmp_path / "out" / "per_example.jsonl").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "sandbox", "--n", "2"],
        ["demo", "--n", "2"],
        ["sandbox", "pairs", "--n", "2"],
        ["eval", "sandbox", "--n", "2", "--bootstrap-seed"],
    ],
)
def test_a_negative_seed_is_one_line(command, tmp_path):
    """numpy's generators refuse a negative seed with a traceback; the command line refuses it
    first, and the library's sandbox says which input was wrong."""
    from comclip import load_dataset
    from comclip.errors import InputError

    seed = [] if command[-1] == "--bootstrap-seed" else ["--seed"]
    assert_user_error(run_cli_here([*command, *seed, "-1", "--out", tmp_path / "o"]), "seed", "-1")
    assert not (tmp_path / "o").exists()
    with pytest.raises(InputError, match="sandbox's seed must be a whole number of at least 0, got -1"):
        load_dataset("sandbox", task="binding", n=2, seed=-1)


def test_one_image_given_alone_is_one_image_not_its_letters(tiny_backbone, rgb_image_path):
    """``score("a.png", texts)`` once read the path letter by letter; a path alone is one image,
    as a caption alone is one text."""
    from comclip import ComCLIP

    model = ComCLIP(tiny_backbone)
    alone = model.score(str(rgb_image_path), "a red square")
    assert alone.shape == (1, 1) and torch.allclose(alone, model.score([rgb_image_path], ["a red square"]), atol=1e-6)


def test_output_paths_are_checked_first(tiny_model_dir, four_examples, rgb_image_path, tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    assert_user_error(run_eval(tiny_model_dir, four_examples, a_file), str(a_file), "is a file")
    assert a_file.read_text() == "mine"
    assert_user_error(run_eval(tiny_model_dir, four_examples, "/proc/nope/out"), "/proc/nope/out")
    explain = ["explain", rgb_image_path, "a red square", "--model", tiny_model_dir]
    assert_user_error(run_cli_here([*explain, "--out", tmp_path]), str(tmp_path), "folder")
    assert_user_error(run_cli_here([*explain, "--out", "/proc/nope/fig.png"]), "/proc/nope")


def test_an_empty_caption_is_found_before_the_model_loads(rgb_image_path, tmp_path):
    result = run_cli_here(["explain", rgb_image_path, "  ", "--model", tmp_path / "no-such-model", "--json"])
    assert_user_error(result, "caption")


def test_a_malformed_dataset_is_one_line(tiny_model_dir, tmp_path):
    bad = tmp_path / "sc.json"
    bad.write_text('{"x": 5}')
    result = run_cli_here(["eval", "sugarcrepe", "--data", bad, "--model", tiny_model_dir, "--out", tmp_path / "o"])
    assert_user_error(result, str(bad), "'x'")


def test_files_with_a_utf8_byte_order_mark_load(tmp_path, four_examples):
    """JSON, JSONL and CSV written by tools that add a BOM read as without one."""
    from comclip.eval.benchmarks.datasets import load_dataset

    rows = four_examples.read_text()
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + rows.encode())
    for n in range(3):
        shutil.copy(four_examples.parent / f"{n}.png", tmp_path / f"{n}.png")
    assert len(load_dataset("jsonl", bom).examples) == 4
    csv = tmp_path / "pairs.csv"
    csv.write_bytes(b"\xef\xbb\xbfimage_0,image_1,caption_0,caption_1\n0.png,1.png,a red square,a blue square\n")
    assert load_dataset("minimal_pairs", csv).examples[0].texts == ["a red square", "a blue square"]
    captions = tmp_path / "captions.json"
    captions.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"image": "0.png", "captions": ["a red square"]}]).encode())
    assert load_dataset("retrieval", captions).captions == ["a red square"]


@pytest.mark.parametrize(
    "name, content",
    [("sugarcrepe", "{}"), ("jsonl", ""), ("minimal_pairs", "image_0,image_1,caption_0,caption_1\n"), ("valse", "{}")],
)
def test_an_empty_dataset_is_one_line_before_the_model_loads(name, content, tmp_path):
    """No examples is the user's file's problem, found before any model loads (the model named
    here does not exist: a later check would name it instead)."""
    data = tmp_path / ("data.csv" if name == "minimal_pairs" else "data.jsonl" if name == "jsonl" else "data.json")
    data.write_text(content)
    result = run_cli_here(["eval", name, "--data", data, "--model", tmp_path / "no-such-model", "--out", tmp_path / "out"])
    assert_user_error(result, str(data), "no examples")
    assert not (tmp_path / "out" / "run.json").exists()


def test_a_reports_dataset_name_never_writes_outside_the_output_folder(tmp_path):
    """``comclip report`` names each chart after the report's dataset field: made safe first."""
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    metric = {"value": 50.0, "ci95": [40.0, 60.0], "n": 10}
    report = {
        "dataset": "../../../escaped",
        "split": "test",
        "model": "m",
        "seed": 0,
        "runs": [{"method": "clip", "n_scored": 10, "n_failed": 0, "metrics": {"accuracy": metric}, "subsets": {}}],
    }
    (run / "report.json").write_text(json.dumps(report))
    out = tmp_path / "deep" / "er" / "charts"
    result = run_cli_here(["report", run, "--out", out])
    assert result.returncode == 0, result.stderr
    assert (out / "escaped.png").exists()
    assert not list(tmp_path.rglob("escaped.png"))[1:] and not (tmp_path / "escaped.png").exists()


@pytest.mark.parametrize(
    "box, problem",
    [
        ("[0, 0, NaN, 10]", "not a finite number"),
        ("[0, 0, Infinity, 10]", "not a finite number"),
        ("[-Infinity, 0, 5, 10]", "not a finite number"),
        ("[5000, 5000, 6000, 6000]", "zero area inside"),
    ],
)
def test_a_regions_file_with_a_non_finite_or_outside_box_is_one_line_naming_it(
    box, problem, cli, tiny_model_dir, rgb_image_path, tmp_path
):
    """JSON allows NaN and Infinity; a box holding one is refused naming the file, never used
    (NaN read as 0, infinity as the whole image); so is a box outside the image, found later."""
    regions = tmp_path / "regions.json"
    regions.write_text('{"square": [' + box + "]}")
    result = cli(
        *[
            "score",
            rgb_image_path,
            "a red square",
            "--model",
            tiny_model_dir,
            "--grounder",
            "regions",
            "--regions-file",
            regions,
            "--method",
            "comclip",
        ]
    )
    assert_inprocess_error(result, str(regions), problem)


def test_explain_never_overwrites_and_writes_only_png(cli, tiny_model_dir, rgb_image_path, tmp_path):
    """``explain --out`` refuses an existing file (the input photo here) without --force, a
    path that is not .png, and a path ending in a separator; nothing is written."""
    photo = tmp_path / "photo.png"
    shutil.copy(rgb_image_path, photo)
    before = file_hash(photo)
    explain = ["explain", photo, "a red square", "--model", tiny_model_dir]
    assert_inprocess_error(cli(*explain, "--out", photo), str(photo), "exists", "--force")
    assert_inprocess_error(cli(*explain, "--out", tmp_path / "fig.jpg"), "fig.jpg", ".png")
    assert_inprocess_error(cli(*explain, "--out", f"{tmp_path / 'newdir'}/"), "newdir", "folder")
    assert file_hash(photo) == before and not (tmp_path / "newdir").exists() and not (tmp_path / "fig.jpg").exists()
    figure = tmp_path / "fig.png"
    assert cli(*explain, "--out", figure)[0] == 0
    assert cli(*explain, "--out", figure)[0] == 2
    assert cli(*explain, "--out", figure, "--force")[0] == 0


def test_a_figure_that_cannot_be_written_whole_leaves_the_old_one(cli, tiny_model_dir, rgb_image_path, tmp_path, monkeypatch):
    """A full disk while ``explain --out F --force`` draws: one line naming F, exit 1, the old
    figure byte-identical and no partial file beside it (matplotlib writes in place; the
    figure goes through the atomic writer). A figure written whole gets the umask's mode."""
    import errno

    from matplotlib.figure import Figure

    figure = tmp_path / "fig.png"
    explain = ["explain", rgb_image_path, "a red square", "--model", tiny_model_dir, "--out", figure]
    old_mask = os.umask(0o027)
    try:
        assert cli(*explain)[0] == 0
    finally:
        os.umask(old_mask)
    assert figure.stat().st_mode & 0o777 == 0o640
    before = file_hash(figure)

    def full_disk(self, file, **kwargs):
        file.write(b"\x89PNG half a figure")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full_disk)
    code, _, err = cli(*explain, "--force")
    assert code == 1 and str(figure) in err and "No space left" in err and len(err.strip().splitlines()) == 1, err
    assert file_hash(figure) == before and sorted(p.name for p in tmp_path.iterdir() if "fig" in p.name) == ["fig.png"]


def test_a_fifo_given_as_an_image_is_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result = run_cli(["explain", fifo, "a red square", "--model", tmp_path / "no-such-model", "--json"], timeout=60)
    assert_user_error(result, str(fifo), "not a regular file")


def test_a_fifo_or_a_device_given_as_data_is_one_line_not_a_hang(tiny_model_dir, tmp_path):
    """``--data`` naming a FIFO once hung an eval and a suite's --dry-run, and ``/dev/zero``
    was read until memory ran out: every input file is checked as a regular file of bounded
    size before it is read (a real process for the FIFO: a hang must fail, not block)."""
    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    result = run_cli(["eval", "jsonl", "--data", fifo, "--model", tiny_model_dir, "--out", tmp_path / "o"], timeout=60)
    assert_user_error(result, str(fifo), "not a regular file")
    suite = tmp_path / "suite.toml"
    suite.write_text(f'models = ["m"]\n[[datasets]]\nname = "sugarcrepe"\ndata = "{fifo}"\n')
    result = run_cli(["suite", suite, "--out", tmp_path / "s", "--dry-run"], timeout=60)
    assert (
        result.returncode != 0
        and str(fifo) in result.stdout + result.stderr
        and "not a regular file" in result.stdout + result.stderr
    )
    if os.path.exists("/dev/zero"):
        result = run_cli_here(["eval", "sugarcrepe", "--data", "/dev/zero", "--model", tiny_model_dir, "--out", tmp_path / "z"])
        assert_user_error(result, "/dev/zero", "not a regular file")
    assert not (tmp_path / "o").exists() and not (tmp_path / "z").exists()


def test_a_newline_in_a_path_stays_on_the_error_line(tmp_path):
    odd = tmp_path / "two\nlines.png"
    result = run_cli_here(["explain", odd, "a red square", "--model", tmp_path / "no-such-model", "--json"])
    assert_user_error(result, "two\\nlines.png", "image not found")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("caption", [5, None, ["a dog"]])
def test_a_caption_of_the_wrong_type_is_one_line_before_the_model_loads(caption, tmp_path):
    """A Winoground row whose caption is a number, null or a list: one line naming the file and
    the example, before any model loads (the model named here does not exist)."""
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    row = {"id": 7, "caption_0": caption, "caption_1": "a cat", "image_0": "a", "image_1": "a"}
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    result = run_cli_here(
        [
            "eval",
            "winoground",
            "--data",
            tmp_path / "rows.jsonl",
            "--image-dir",
            tmp_path,
            "--model",
            tmp_path / "no-such-model",
            "--out",
            tmp_path / "out",
        ]
    )
    assert_user_error(result, "rows.jsonl", "example '7'", "not text")


def test_json_nested_too_deeply_is_one_line(tmp_path):
    """Python's JSON reader runs out of recursion on ``[[[[...]]]]``: one line naming the file."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    result = run_cli_here(["eval", "sugarcrepe", "--data", deep, "--model", tmp_path / "no-such-model", "--out", tmp_path / "o"])
    assert_user_error(result, str(deep), "nested too deeply")


_METRIC = {"value": 50.0, "ci95": [40.0, 60.0]}


_RUN = {"method": "clip", "n_scored": 10, "n_failed": 0, "metrics": {"accuracy": _METRIC}, "subsets": {}}


_REPORT = {"dataset": "d", "split": "test", "model": "m", "runs": [_RUN]}


@pytest.mark.parametrize(
    "content, words",
    [
        ("", ["Expecting value"]),
        ("\x00\xff binary", ["cannot read"]),
        ("[1, 2]", ["no JSON object"]),
        ("[" * 50_000 + "]" * 50_000, ["nested too deeply"]),
        (json.dumps({**_REPORT, "runs": None}), ["'runs' is not a list"]),
        (json.dumps({**_REPORT, "dataset": 7}), ["'dataset' is not text"]),
        (json.dumps({**_REPORT, "runs": ["clip"]}), ["run 1", "not an object"]),
        (json.dumps({**_REPORT, "runs": [{**_RUN, "n_scored": "ten"}]}), ["run 1", "'n_scored'"]),
        (json.dumps({**_REPORT, "runs": [{**_RUN, "metrics": []}]}), ["metrics", "not an object of metrics"]),
        (json.dumps({**_REPORT, "runs": [{**_RUN, "metrics": {"accuracy": {"value": "high"}}}]}), ["'accuracy'", "numeric"]),
        (json.dumps({**_REPORT, "runs": [{**_RUN, "metrics": {"accuracy": {"value": 1, "ci95": [1]}}}]}), ["'ci95'"]),
        (json.dumps({**_REPORT, "runs": [{**_RUN, "subsets": {"a": {"accuracy": None}}}]}), ["subset 'a'"]),
    ],
)
def test_a_malformed_report_given_to_comclip_report_is_one_line(content, words, cli, tmp_path):
    """``comclip report`` reads files anyone may have edited: each way a report can be wrong
    is one line naming the file and the field, exit 2, and nothing is written."""
    path = tmp_path / "report.json"
    path.write_bytes(content.encode("latin-1") if "\x00" in content else content.encode())
    code, out, err = cli("report", tmp_path, "--out", tmp_path / "charts")
    assert code == 2 and str(path) in err and len(err.strip().splitlines()) == 1, err
    assert all(word in err for word in words), err
    assert out == "" and not (tmp_path / "charts").exists()


def test_a_20000_pixel_png_is_scored_at_reduced_scale_and_a_larger_header_refused(cli, tiny_model_dir, tmp_path):
    """The README says very large images are decoded at reduced scale: a real 20000 x 20000
    PNG (past PIL's bomb limit) is scored; a PNG whose header claims 30000 x 30000 (past
    comclip's ceiling) is one line naming it, before anything is decoded."""
    import struct
    import zlib

    from PIL import Image as PILImage

    huge = tmp_path / "scan.png"
    picture = PILImage.new("RGB", (20000, 20000), (10, 120, 200))
    picture.paste((250, 0, 0), (1000, 1000, 9000, 9000))
    picture.save(huge, compress_level=1)
    del picture
    code, out, err = cli("score", "--model", tiny_model_dir, "--json", huge, "a red square")
    assert code == 0 and "scan.png" in out, err

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    claimed = tmp_path / "claims.png"
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    claimed.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    code, _, err = cli("score", "--model", tiny_model_dir, "--json", claimed, "a red square")
    assert code == 2 and str(claimed) in err and "too large" in err and "30000x30000" in err, err


def test_libtiffs_own_messages_stay_inside_the_one_error_line(tmp_path):
    """A damaged compressed TIFF makes libtiff print to the process's stderr itself, and PIL
    warn about its EXIF: stderr holds one line, comclip's, with libtiff's words in it."""
    from PIL import Image as PILImage

    whole = tmp_path / "whole.tif"
    PILImage.new("RGB", (300, 200), (200, 10, 10)).save(whole, compression="tiff_deflate")
    data = bytearray(whole.read_bytes())
    for i in range(8, 60):
        data[i] ^= 0x5A
    mangled, cut = tmp_path / "mangled.tif", tmp_path / "cut.tif"
    mangled.write_bytes(bytes(data))
    cut.write_bytes(whole.read_bytes()[: len(data) // 2])
    for path, words in [(mangled, ["corrupt", "ZIPDecode"]), (cut, ["not an image file"])]:
        result = run_cli(["explain", path, "a red square", "--model", tmp_path / "no-such-model", "--json"])
        assert_user_error(result, str(path), *words)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_caption_past_the_character_bound_fails_its_example_and_the_run_goes_on(cli, tmp_path):
    """A 1.2-million-character caption (past spaCy's own limit) is one failed example with its
    reason, for CLIP as for ComCLIP; the run scores the rest. Through the API: one line."""
    from comclip.backbones import create_backbone
    from comclip.errors import InputError
    from comclip.pipeline import ComCLIP
    from comclip.text import MAX_CAPTION_CHARS

    Image.new("RGB", (40, 30), (200, 20, 20)).save(tmp_path / "red.png")
    rows = [
        {"id": "a", "image": "red.png", "positive": "a red square", "negatives": ["a blue square"]},
        {"id": "b", "image": "red.png", "positive": "x" * 1_200_000, "negatives": ["a circle"]},
        {"id": "c", "image": "red.png", "positive": "y" * 5_000, "negatives": ["a circle"]},  # parsed by none
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    code, stdout, stderr = cli(
        "eval",
        "jsonl",
        "--data",
        str(tmp_path / "data.jsonl"),
        "--model",
        "comclip/sandbox",
        "--method",
        "clip,comclip",
        "--out",
        str(out),
    )
    said = stdout + stderr
    assert code == 0 and "clip: 2 scored, 1 failed" in said and "comclip: 1 scored, 2 failed" in said
    failed = [json.loads(line) for line in (out / "per_example.jsonl").read_text().splitlines() if '"failed"' in line]
    assert {(r["id"], r["method"]) for r in failed} == {("b", "clip"), ("b", "comclip"), ("c", "comclip")}
    assert all("1,200,000 characters" in r["error"] for r in failed if r["id"] == "b")
    assert "too long to parse" in next(r["error"] for r in failed if r["id"] == "c")
    with pytest.raises(InputError, match="characters") as caught:
        ComCLIP(create_backbone("comclip/sandbox")).score(tmp_path / "red.png", ["a " * MAX_CAPTION_CHARS])
    assert "\n" not in str(caught.value)


def test_explain_json_gives_boxes_in_the_input_images_own_frame(cli, tmp_path):
    """A 4096x2560 photo is analysed at 2048 pixels; the boxes explain --json prints are the
    input's, so a regions file's boxes (read in original pixels) come back as they were."""
    image = tmp_path / "large.png"
    Image.new("RGB", (4096, 2560), (30, 30, 30)).save(image)
    regions = {"red circle": [[400.0, 600.0, 1600.0, 1800.0]], "blue square": [[2400.0, 400.0, 3600.0, 2000.0]]}
    (tmp_path / "regions.json").write_text(json.dumps(regions))
    args = ["explain", str(image), "a red circle and a blue square", "--model", "comclip/sandbox", "--method", "comclip"]
    code, out, _ = cli(*args, "--grounder", "regions", "--regions-file", str(tmp_path / "regions.json"), "--json")
    assert code == 0
    boxes = {p["phrase"]: p["boxes"] for p in json.loads(out)["parts"] if p["kind"] == "entity"}
    given = {tuple(b) for bs in regions.values() for b in bs}
    assert boxes and all(tuple(b) in given for bs in boxes.values() for b in bs)  # at half size they were not


def test_an_output_in_a_folder_nothing_can_be_written_to_is_one_line_before_the_model_loads(cli, rgb_image_path, monkeypatch):
    """/proc looks writable to root's access() but takes no new file: found by trying, exit 2."""
    import comclip.cli.explain as explain_command

    monkeypatch.setattr(explain_command, "create_model", lambda args: pytest.fail("the model loaded before the check"))
    code, _, err = cli("explain", rgb_image_path, "a red square", "--model", "comclip/sandbox", "--out", "/proc/x.png")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "/proc/x.png" in err, err


@pytest.mark.parametrize("option", [["--weighting", "softmax"], ["--grounder", "oracle"], ["--union-margin", "-1"]])
def test_an_option_no_requested_method_reads_is_one_line(option, cli, rgb_image_path, tmp_path):
    """Plain CLIP reads no pipeline option: one given with --method clip alone is a mistake,
    said in one line naming the methods that would read it (it ran plain CLIP and exited 0)."""
    code, _, err = cli("score", rgb_image_path, "a red square", "--model", "comclip/sandbox", *option)
    assert code == 2 and len(err.strip().splitlines()) == 1 and option[0] in err and "comclip-plus" in err, err
    code, _, err = cli("eval", "sandbox", "--n", "1", "--method", "clip", "--out", tmp_path / "o", *option)
    assert code == 2 and option[0] in err and not (tmp_path / "o").exists(), err


def test_an_array_given_as_an_image_is_one_line_saying_what_would_be(tiny_backbone):
    import numpy as np

    from comclip.errors import InputError
    from comclip.pipeline import ComCLIP

    model = ComCLIP(tiny_backbone)
    for images in (np.zeros((10, 10, 3), dtype=np.uint8), [np.zeros((10, 10, 3), dtype=np.uint8)]):
        with pytest.raises(InputError, match="not ndarray .*fromarray"):
            model.score(images, ["a red square"])
