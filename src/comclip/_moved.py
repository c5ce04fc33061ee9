"""The import paths that moved after 0.1.0 keep working for one release, with a DeprecationWarning.

``import comclip.eval.runner`` gives the very module ``comclip.eval.runs.runner`` (not a copy,
so a patched attribute is seen by both names); a moved package's submodules follow it
(``comclip.eval.datasets.winoground`` is ``comclip.eval.benchmarks.datasets.winoground``). A
finder on ``sys.meta_path`` does this from the table below, so no file stays behind per name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: Old module name -> new module name. A package's entry also covers its submodules.
MOVED = {
    "comclip.images": "comclip.imaging.files",
    "comclip.loading": "comclip.imaging.prefetch",
    "comclip.pixels": "comclip.imaging.pixels",
    "comclip.subimages": "comclip.imaging.subimages",
    "comclip.stored": "comclip.pipeline.memory",
    "comclip.backbones.registry": "comclip.backbones.factory",
    "comclip.backbones.patches": "comclip.backbones.vit.patches",
    "comclip.bpe": "comclip.text.bpe",
    "comclip.eval.datasets": "comclip.eval.benchmarks.datasets",
    "comclip.eval.kinds": "comclip.eval.benchmarks.kinds",
    "comclip.eval.metrics": "comclip.eval.benchmarks.metrics",
    "comclip.eval.evaluate": "comclip.eval.runs.evaluate",
    "comclip.eval.runner": "comclip.eval.runs.runner",
    "comclip.eval.retrieval": "comclip.eval.runs.recall",
    "comclip.eval.scorers": "comclip.eval.runs.scorers",
    "comclip.eval.store": "comclip.eval.runs.store",
    "comclip.eval.distributed": "comclip.eval.runs.process_group",
    "comclip.eval.progress": "comclip.eval.runs.progress",
    "comclip.eval.truncation": "comclip.eval.runs.truncation",
    "comclip.eval.report": "comclip.eval.reports.report",
    "comclip.eval.legend": "comclip.eval.reports.legend",
    "comclip.eval.tables": "comclip.eval.reports.tables",
    "comclip.eval.diagnosis": "comclip.eval.reports.diagnosis",
    "comclip.eval.word_order": "comclip.eval.reports.word_order",
    "comclip.eval.compare": "comclip.eval.reports.compare",
    "comclip.eval.grounding_accuracy": "comclip.eval.reports.grounding_accuracy",
    "comclip.eval.suite": "comclip.eval.experiments.suite",
    "comclip.eval.suite_run": "comclip.eval.experiments.suite_run",
    "comclip.eval.ablation": "comclip.eval.experiments.ablation",
}


def new_name(old: str) -> str | None:
    """Where a moved module lives now, or None for a name that did not move."""
    for prefix, target in MOVED.items():
        if old == prefix or old.startswith(prefix + "."):
            return target + old[len(prefix) :]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target}; the old name goes in the next release", DeprecationWarning, stacklevel=2
        )
        module = importlib.import_module(self.target)
        self._spec = module.__spec__  # the import system sets __spec__ to the alias's; put it back
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        moved = new_name(fullname)
        return None if moved is None else importlib.machinery.ModuleSpec(fullname, _Alias(moved))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
