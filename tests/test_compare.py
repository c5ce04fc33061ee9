"""Runs side by side (comclip.eval.reports.compare): `comclip report` over several run folders,
and a colour per run in its charts."""

from __future__ import annotations

import os

import pytest
from PIL import Image


def test_report_puts_runs_side_by_side(cli, tiny_model_dir, jsonl_data, tmp_path):
    for weighting in ("sum", "softmax"):
        assert (
            cli(
                "eval",
                "jsonl",
                "--data",
                jsonl_data,
                "--model",
                tiny_model_dir,
                "--out",
                tmp_path / weighting,
                "--weighting",
                weighting,
            )[0]
            == 0
        )
    code, out, err = cli("report", tmp_path / "sum", tmp_path / "softmax", "--out", tmp_path / "cmp")
    assert code == 0, err
    rows = {tuple(cell.strip() for cell in line.split("|")[1:7:4]): line for line in out.splitlines() if "| jsonl |" in line}
    assert set(rows) == {(run, method) for run in ("sum", "softmax") for method in ("clip", "comclip")}
    assert all("| 3 | 1 |" in row for row in rows.values())
    assert "| clip | - |" in rows["sum", "clip"]  # the same model, data and configuration
    assert "weighting=softmax" in rows["softmax", "comclip"] and "weighting=sum" in rows["sum", "comclip"]
    code, renamed, err = cli("report", tmp_path / "sum", tmp_path / "softmax", "--label", "paper", "--label", "mine")
    assert code == 0 and "| paper | jsonl |" in renamed and "| mine | jsonl |" in renamed, err
    code, _, err = cli("report", tmp_path / "sum", tmp_path / "softmax", "--label", "one")
    assert code == 2 and "--label given 1 times for 2 runs" in err
    assert (tmp_path / "cmp" / "comparison.md").read_text() == out.rstrip("\n") + "\n"
    with Image.open(tmp_path / "cmp" / "jsonl.png") as chart:
        assert chart.format == "PNG"
    # the report and its chart are written whole, with the mode any new file gets (0600 once)
    mask = os.umask(0o022)
    os.umask(mask)
    assert {(path.name, path.stat().st_mode & 0o777) for path in (tmp_path / "cmp").iterdir()} == {
        ("comparison.md", 0o666 & ~mask),
        ("jsonl.png", 0o666 & ~mask),
    }
    code, _, err = cli("report", tmp_path / "nowhere")
    assert code == 2 and "cannot read evaluation report" in err
    # what is in --out is the user's: a file of a name report writes is kept unless --force
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "comparison.md").write_text("my notes")
    (mine / "jsonl.png").write_text("my chart")
    runs = [tmp_path / "sum", tmp_path / "softmax"]
    code, _, err = cli("report", *runs, "--out", mine)
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(mine / "comparison.md") in err and "--force" in err, err
    assert (mine / "comparison.md").read_text() == "my notes" and (mine / "jsonl.png").read_text() == "my chart"
    assert cli("report", *runs, "--out", mine, "--force")[0] == 0 and (mine / "comparison.md").read_text() != "my notes"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out in (a_file, a_file / "under"):
        code, _, err = cli("report", *runs, "--out", out)
        assert code == 2 and len(err.strip().splitlines()) == 1 and str(out) in err, err
    assert a_file.read_text() == "x"


@pytest.mark.parametrize("labels,methods", [(1, 1), (3, 4), (10, 2), (11, 1), (2, 5)])
def test_every_run_in_a_chart_has_its_own_colour(labels, methods):
    from comclip.eval.reports.compare import run_colours

    runs = [(f"model-{m}", f"method-{k}") for m in range(labels) for k in range(methods)]
    assert len(set(run_colours(runs))) == len(runs)


def test_a_label_is_one_colour_family_and_a_method_one_shade_in_each():
    """A suite's models and methods never share a family: model A's bars are shades of one hue,
    model B's of another, and each method is the same shade in both."""
    from matplotlib import colormaps

    from comclip.eval.reports.compare import COLOUR_FAMILIES, run_colours

    runs = [(model, method) for model in ("A", "B", "C") for method in ("clip", "comclip", "comclip-plus")]
    colours = dict(zip(runs, run_colours(runs)))
    for number, model in enumerate(("A", "B", "C")):
        name, first = COLOUR_FAMILIES[number]
        family = [tuple(colormaps[name](first + shade)) for shade in range(4)]
        assert [family.index(colours[model, m]) for m in ("clip", "comclip", "comclip-plus")] == [0, 1, 2]


def test_a_bar_of_height_zero_is_marked():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from comclip.eval.reports.compare import draw_bars

    def run(value):
        block = {"group": {"value": value, "ci95": [value, value]}}
        return {"method": "clip", "metrics": block, "subsets": {"a": block, "b": {"group": {"value": 50.0, "ci95": None}}}}

    fig, ax = plt.subplots()
    draw_bars(ax, [({"label": "zero"}, run(0.0)), ({"label": "half"}, run(50.0))], ["a", "b"], "group")
    assert [(t.get_text(), round(t.get_position()[0], 2)) for t in ax.texts] == [("0", 0.0)]
    plt.close(fig)


def test_differs_names_the_tie_rule_the_runtime_and_refuses_one_label_twice(cli, tiny_model_dir, jsonl_data, tmp_path):
    """Runs that differ only by tie rule, or (for plain CLIP too) by precision or pixel path,
    say so in the differs column; one --label given to two runs is one line."""
    base = ["eval", "jsonl", "--data", jsonl_data, "--model", tiny_model_dir, "--method", "clip", "--bootstrap", "0"]
    for name, extra in {"strict": [], "ties": ["--ties", "first"], "pil": ["--pixels", "pil"]}.items():
        assert cli(*base, "--out", tmp_path / name, *extra)[0] == 0
    code, out, err = cli("report", tmp_path / "strict", tmp_path / "ties", tmp_path / "pil")
    assert code == 0, err
    rows = {line.split("|")[1].strip(): line.split("|")[6].strip() for line in out.splitlines() if "| jsonl |" in line}
    assert "ties=first" in rows["ties"] and "pixels=pil" in rows["pil"] and "ties=strict" in rows["strict"]
    code, _, err = cli("report", tmp_path / "strict", tmp_path / "ties", "--label", "same", "--label", "same")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'same'" in err


def test_a_chart_of_many_runs_holds_its_whole_legend_without_a_warning(tmp_path):
    import warnings

    from comclip.eval.reports.compare import LEGEND_ROWS, bar_charts

    metric = {"group": {"value": 50.0, "ci95": [40.0, 60.0]}}
    reports = [
        {"label": f"run-{n:02d}", "dataset": "d", "runs": [{"method": "clip", "metrics": metric, "subsets": {"a": metric}}]}
        for n in range(31)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [chart] = bar_charts(reports, tmp_path)
    with Image.open(chart) as image:
        assert image.height >= 0.2 * LEGEND_ROWS * 100  # one column of 20 entries at 100 dpi fits
        assert image.width > image.height  # the second column is beside the first
