"""The ablation grid (comclip ablate): configurations chosen on dev, reported on test."""

from __future__ import annotations

import json


def test_ablate_chooses_on_dev_and_reports_on_test(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "abl"
    code, stdout, err = cli(
        "ablate",
        "sandbox",
        "--model",
        tiny_model_dir,
        "--grid",
        "small",
        "--n",
        "3",
        "--task",
        "binding,substitution",
        "--out",
        out,
    )
    assert code == 0, err
    summary = json.loads((out / "ablation.json").read_text())
    dev = [json.loads(line) for line in (out / "dev.jsonl").read_text().splitlines()]
    assert summary["n_configs"] == len(dev) == 8 and summary["dev_split"] == "seed100" and summary["test_split"] == "seed200"
    assert summary["best"]["criterion"] == max(d["criterion"] for d in dev)
    test = json.loads((out / "test" / "report.json").read_text())
    assert len(test["runs"]) == 3 and test["runs"][0]["method"] == "clip"
    assert test["chosen_on"]["config"] == summary["best"]["config"]
    assert test["runs"][1]["config"]["score_mode"] == "comclip" and test["runs"][1]["config"]["subimage_fill"] == "black"
    code, _, err = cli(
        "ablate", "sandbox", "--model", tiny_model_dir, "--dev-seed", "5", "--test-seed", "5", "--out", tmp_path / "x"
    )
    assert code == 2 and "must differ" in err


def test_the_shipped_grids_are_data_and_a_users_grid_is_read_the_same_way(tmp_path):
    from comclip.eval.experiments.ablation import GRIDS, PAPER, grid

    assert {name: len(grid(name)) for name in GRIDS} == {"full": 240, "plus": 24, "small": 8, "spatial": 24}
    first = grid("small")[0]
    assert first.name == "comclip sum black default" and first.grounding == "default"
    assert first.pipeline_config({}) == PAPER.pipeline_config({})  # the grid starts at the paper's configuration
    mine = tmp_path / "mine.toml"
    mine.write_text(
        '[[axes]]\nname = "weighting"\nvalues = [{label = "sum", weighting = "sum"}, {label = "softmax", weighting = "softmax"}]\n'
        '[[axes]]\nname = "grounding"\nvalues = [{label = "joint", assignment = "joint"}]\n'
    )
    points = grid(str(mine))
    assert [p.name for p in points] == ["sum joint", "softmax joint"]
    assert [p.pipeline_config({}).weighting for p in points] == ["sum", "softmax"] and points[0].grounding == "joint"


def test_a_mistake_in_a_grid_is_one_line_before_the_model_loads(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    for text, words in [
        ('[[axes]]\nname = "w"\nvalues = [{label = "x", weighting = "nope"}]\n', ["bad.toml", "'x'", "'nope'"]),
        ('[[axes]]\nname = "w"\nvalues = [{label = "x", wieghting = "sum"}]\n', ["bad.toml", "wieghting"]),
        ("[[axes]]\n", ["bad.toml", "needs a name"]),
        ("x = [", ["bad.toml", "not valid TOML"]),
    ]:
        bad.write_text(text)
        code, _, err = cli("ablate", "sandbox", "--model", tmp_path / "no-such-model", "--grid", bad, "--out", tmp_path / "o")
        assert code == 2 and len(err.strip().splitlines()) == 1 and all(w in err for w in words), err
    code, _, err = cli("ablate", "sandbox", "--model", tmp_path / "no-such-model", "--grid", "huge", "--out", tmp_path / "o")
    assert code == 2 and "unknown grid 'huge'" in err


def test_ablates_former_seed_flag_is_the_bootstrap_seed_with_a_warning(cli, tmp_path):
    """``--seed`` is a data seed in every other command; here it once meant the bootstrap's."""
    code, _, err = cli(
        "ablate", "sandbox", "--seed", "3", "--model", tmp_path / "none", "--grid", "huge", "--out", tmp_path / "o"
    )
    assert code == 2 and "--seed is deprecated; use --bootstrap-seed" in err and "unknown grid 'huge'" in err
