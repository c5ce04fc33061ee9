"""The former module names still import, as the very module at the new name, with a warning."""

from __future__ import annotations

import importlib
import sys

import pytest

from comclip._moved import MOVED, new_name


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_name_is_the_new_module_with_a_deprecation_warning(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old]  # the alias did not take over the module's spec


def test_a_moved_package_takes_its_submodules_along():
    assert new_name("comclip.eval.datasets.winoground") == "comclip.eval.benchmarks.datasets.winoground"
    assert new_name("comclip.eval.reports") is None  # not a former name
    assert new_name("comclip.eval.suite_run") == "comclip.eval.experiments.suite_run"  # not a prefix match of suite
    sys.modules.pop("comclip.eval.datasets.winoground", None)
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("comclip.eval.datasets.winoground")
    assert old is importlib.import_module("comclip.eval.benchmarks.datasets.winoground")


def test_no_module_of_comclip_uses_a_former_name():
    import pkgutil

    import comclip

    names = {m.name for m in pkgutil.walk_packages(comclip.__path__, "comclip.") if m.name != "comclip.__main__"}
    assert not {name for name in names if new_name(name)}, "a module still lives at a former name"
