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
