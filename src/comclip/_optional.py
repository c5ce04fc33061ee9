"""Optional packages that are installed but cannot load never break comclip.

A package some library uses only where it is there (torchvision for transformers' image
processors, open_clip's transforms) can be installed and yet fail to import: a torchvision
built for another torch raises ``operator torchvision::nms does not exist``. transformers finds
it installed, imports it, and every command fails. :func:`hide_broken` tries such packages
once, before the libraries that may use them load; one that fails is hidden from the import
system for this process (it is then simply absent), and :func:`broken` says why, so a backend
that needs it can say so in one line with the fix.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys

#: Packages that libraries comclip uses import only where they are there.
OPTIONAL = ("torchvision",)

_BROKEN: dict[str, str] = {}
_CHECKED: set[str] = set()


class _Hiding(importlib.abc.MetaPathFinder):
    """The path finder, except that hidden top-level packages are not found."""

    def __init__(self, finder, hidden: set[str]):
        self.finder, self.hidden = finder, hidden

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.hidden:
            return None
        return self.finder.find_spec(fullname, path, target)

    def invalidate_caches(self) -> None:
        self.finder.invalidate_caches()

    def find_distributions(self, *args, **kwargs):
        """Installed distributions (``importlib.metadata``), the hidden ones left out."""
        for distribution in self.finder.find_distributions(*args, **kwargs):
            if (distribution.metadata["Name"] or "").lower() not in self.hidden:
                yield distribution


def hide_broken(names: tuple[str, ...] = OPTIONAL) -> dict[str, str]:
    """Try each optional package once (those installed); hide the ones that fail to import.
    Returns ``{package: why it failed}`` of every package hidden so far."""
    for name in names:
        if name in _CHECKED or name in sys.modules:
            continue
        _CHECKED.add(name)
        if importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # any failure, not only ImportError: the package is unusable here
            _BROKEN[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[module]
            _hide(name)
    return dict(_BROKEN)


def _hide(name: str) -> None:
    for n, finder in enumerate(sys.meta_path):
        if isinstance(finder, _Hiding):
            finder.hidden.add(name)
            return
        if finder is importlib.machinery.PathFinder:
            sys.meta_path[n] = _Hiding(finder, {name})
            return


def broken(name: str) -> str | None:
    """Why an optional package was hidden (its import error), or None if it was not."""
    return _BROKEN.get(name)
