"""Every option is declared once: each declared field of PipelineConfig, RuntimeOptions and
EvalOptions is found, under its declared flag, in the commands that take it, in the suite
file's schema where a suite sets it, and in the web app's option table where a request has it."""

from __future__ import annotations

import argparse

import pytest

from comclip.backbones.runtime import RuntimeOptions
from comclip.config import PipelineConfig
from comclip.declared import Option, check, declared, flag
from comclip.errors import InputError
from comclip.eval.runs.options import EvalOptions

#: Where each family of options applies: the commands whose flags take it, and whether a suite
#: file and the app's option table hold it.
FAMILIES = {
    PipelineConfig: {"commands": ("eval", "score", "explain", "app"), "suite": True, "app": True},
    RuntimeOptions: {"commands": ("eval", "score", "explain", "app", "suite"), "suite": False, "app": True},
    EvalOptions: {"commands": ("eval", "suite"), "suite": True, "app": False},
}


def _flags(command: str) -> set[str]:
    from comclip.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(subparsers.choices[command]._option_string_actions)


def _a_value(name: str, option: Option, default):
    """A valid value of the option for a suite file (TOML has no null)."""
    if default is not None:
        return default
    if option.choices is not None:
        return list(option.choices)[0]
    return {"number": 1.0, "integer": 1, "bool": True}.get(option.kind, "a {}" if option.template else "x")


@pytest.mark.parametrize("cls", list(FAMILIES), ids=lambda cls: cls.__name__)
def test_every_declared_option_is_a_flag_of_each_command_that_takes_it(cls):
    for command in FAMILIES[cls]["commands"]:
        flags = _flags(command)
        missing = [flag(name, option) for name, option in declared(cls).items() if flag(name, option) not in flags]
        assert not missing, f"comclip {command} lacks {missing}"


@pytest.mark.parametrize("cls", [cls for cls, where in FAMILIES.items() if where["suite"]], ids=lambda cls: cls.__name__)
def test_every_declared_option_is_a_key_of_the_suite_file(cls, tmp_path):
    from comclip.eval.experiments.suite import read_suite

    values = {name: _a_value(name, option, getattr(cls(), name)) for name, option in declared(cls).items()}
    lines = [f"{name} = {_toml(value)}" for name, value in values.items()]
    table = "\n".join(lines) if cls is EvalOptions else "pipeline = {" + ", ".join(lines) + "}"
    suite = tmp_path / "suite.toml"
    suite.write_text(f'models = ["m"]\n{table}\n[[datasets]]\nname = "jsonl"\n', encoding="utf-8")
    (entry,) = {cell.entry for cell in read_suite(suite)}
    held = entry.eval_options if cls is EvalOptions else entry.pipeline_options
    assert held == values


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else repr(value)


def test_every_pipeline_and_runtime_option_is_a_row_of_the_apps_option_table(tiny_backbone):
    from comclip.app.session import Scored
    from comclip.app.tables import config_html
    from comclip.imaging.files import load_image

    scored = Scored(image=load_image(_an_image()), texts=[], clip=[], results=[])
    html = config_html(scored, tiny_backbone)
    for cls in (c for c, where in FAMILIES.items() if where["app"]):
        for name in declared(cls):
            assert f'data-option="{name}"' in html, name


def _an_image():
    from PIL import Image

    return Image.new("RGB", (8, 8))


def test_a_declared_integer_is_checked_as_one():
    option = Option("how many", kind="integer", bound="positive")
    check("n", 3, option)
    for wrong, words in [(2.5, "whole number"), ("3", "whole number"), (True, "whole number"), (0, "positive")]:
        with pytest.raises(InputError, match=words):
            check("n", wrong, option)


def test_runtime_and_evaluation_options_are_checked_when_made():
    with pytest.raises(InputError, match="precision"):
        RuntimeOptions(precision="fp8")
    with pytest.raises(InputError, match="ties"):
        EvalOptions(ties="sometimes")
    with pytest.raises(InputError, match="rerank_top must be positive"):
        EvalOptions(rerank_top=0)


def test_the_command_lines_defaults_are_the_declared_ones():
    from comclip.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    actions = {a.dest: a for a in subparsers.choices["eval"]._actions}
    for cls in (RuntimeOptions, EvalOptions):
        for name, option in declared(cls).items():
            expected = option.command_default if option.command_default is not None else getattr(cls(), name)
            assert actions[name].default == expected, name
