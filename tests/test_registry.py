"""Registries: names looked up lazily ("module:attr" entries and entry-point plugins), nothing
registered by an import's side effect, and the flat API at the top of the package."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

import comclip
from comclip import registry
from comclip.errors import InputError
from comclip.registry import Registry


def test_a_lazy_entry_is_imported_when_first_looked_up():
    names = Registry("thing")
    names.add("now", len)
    names.add_lazy("later", "json:dumps")
    names.add_lazy("nested", "comclip.boxes:Box.iou")
    assert list(names) == ["now", "later", "nested"] and "later" in names
    import json

    from comclip.boxes import Box

    assert names["later"] is json.dumps and names["nested"] is Box.iou and names["now"] is len
    with pytest.raises(InputError, match="unknown thing 'missing'; choose one of now, later, nested"):
        names["missing"]


def test_plugins_are_read_from_entry_points_once_without_replacing_code(monkeypatch):
    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return [EntryPoint("dumps", "json:dumps", group), EntryPoint("mine", "json:loads", group)]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    names = Registry("thing", plugins="comclip.things")
    names.add("mine", len)
    assert calls == []  # nothing read before the registry is
    assert sorted(names) == ["dumps", "mine"] and names["mine"] is len
    import json

    assert names["dumps"] is json.dumps and calls == ["comclip.things"]


def test_the_sandbox_is_a_dataset_by_its_entry_point():
    from importlib.metadata import entry_points

    from comclip.eval.benchmarks.datasets import DATASETS, is_generated

    (point,) = [p for p in entry_points(group="comclip.datasets") if p.name == "sandbox"]
    assert point.value == "comclip.sandbox.dataset:SANDBOX"
    assert "sandbox" in DATASETS and is_generated("sandbox") and not is_generated("winoground")


def test_the_flat_api_names_what_an_open_clip_user_expects():
    from comclip.backbones import create_backbone
    from comclip.config import PipelineConfig
    from comclip.eval.benchmarks.datasets import load_dataset
    from comclip.pipeline import ComCLIP

    assert comclip.ComCLIP is ComCLIP and comclip.PipelineConfig is PipelineConfig
    assert comclip.create_backbone is create_backbone and comclip.load_dataset is load_dataset
    assert {"evaluate", "list_models", "register_backend", "register_dataset", "register_method", "register_model"} <= set(
        comclip.__all__
    )
    assert all(callable(getattr(comclip, name)) for name in comclip.__all__ if name != "__version__")
    with pytest.raises(AttributeError):
        comclip.not_a_name  # noqa: B018


def test_a_registered_backend_family_builds_its_registered_models(tiny_model_dir, monkeypatch):
    """A backend family is a registry entry: its models are then named like the packaged
    ones, and a model of a family nobody registered is refused."""
    from comclip.backbones import BACKENDS, BackendInfo, create_backbone, list_models, register_model
    from comclip.backbones.hf import HFBackbone

    built = []

    def factory(source, **options):
        built.append(source)
        return HFBackbone(source, **options)

    from comclip.backbones import factory as backbone_factory

    monkeypatch.setattr(BACKENDS, "_items", dict(BACKENDS._items))  # both registries as they were after the test
    monkeypatch.setattr(backbone_factory, "_EXTRA_ENTRIES", dict(backbone_factory._EXTRA_ENTRIES))
    comclip.register_backend(BackendInfo("mine", factory, None, "transformers", "mine:DIR", "a family of its own"))
    register_model("test/mine-tiny", "mine", str(tiny_model_dir))
    backbone = create_backbone("test/mine-tiny", device="cpu", batch_size=3)
    assert built == [str(tiny_model_dir)] and backbone.batch_size == 3 and "test/mine-tiny" in list_models()
    with pytest.raises(ValueError, match="unknown backend 'theirs'"):
        register_model("test/theirs", "theirs", "x")


def test_any_dataset_loads_in_a_fresh_interpreter():
    """A real new process: nothing imported before, yet the sandbox is found; importing the
    package alone does not import torch."""
    code = (
        "import sys, comclip; assert 'torch' not in sys.modules; "
        "from comclip import load_dataset; d = load_dataset('sandbox', task='binding', n=2); print(len(d), d.name)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "sandbox"]
