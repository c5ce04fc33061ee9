"""Named choices of the pipeline (weightings, fills, score modes, parsers, grounders, datasets),
all kept the same way: a :class:`Registry` maps each name to the function that implements it.

A new choice is one function registered under its name in the module that owns the registry;
the command line takes its ``choices`` from the registry and the typed pipeline configuration
validates against it, so nothing else needs to change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from comclip.errors import InputError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Names -> implementations of one kind of choice, in registration order.

    Looking up an unknown name is an :class:`~comclip.errors.InputError` that lists the
    names there are, so a typo on the command line or in a config gets one clear line.

    An entry may be named lazily, as ``"package.module:attribute"`` (:meth:`add_lazy`), and
    imported the first time it is looked up; with ``plugins``, the entry points of that group
    (``[project.entry-points."comclip.datasets"]`` in a package's metadata) are added that way
    the first time the registry is read. Nothing registers by being imported, so a name
    resolves in a fresh interpreter whatever was imported before.
    """

    def __init__(self, kind: str, plugins: str | None = None):
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._plugins = plugins

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@FILLS.register("black")`` adds the function under that name."""

        def add(item: T) -> T:
            self._items[name] = item
            return item

        return add

    def add(self, name: str, item: T) -> None:
        self._items[name] = item

    def add_lazy(self, name: str, target: str) -> None:
        """Add ``"package.module:attribute"`` under ``name``, imported when first looked up."""
        self._items[name] = _Lazy(target)

    def check(self, name: str) -> str:
        """``name`` if registered, else the error naming the choices."""
        if name not in self:
            raise InputError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self)}")
        return name

    def __getitem__(self, name: str) -> T:
        item = self._entries()[self.check(name)]
        if isinstance(item, _Lazy):
            item = self._items[name] = item.load()
        return item

    def __contains__(self, name: object) -> bool:
        return name in self._entries()

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries())

    def __len__(self) -> int:
        return len(self._entries())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self)})"

    def _entries(self) -> dict[str, Any]:
        """The entries, with the plugins' added (lazily, without importing them) on first read;
        a name registered in code is not replaced by a plugin's."""
        if self._plugins is not None:
            group, self._plugins = self._plugins, None
            for point in entry_points(group=group):
                self._items.setdefault(point.name, _Lazy(point.value))
        return self._items


class _Lazy:
    """An entry named by ``"package.module:attribute"``, not imported yet."""

    def __init__(self, target: str) -> None:
        self.target = target

    def load(self) -> Any:
        module, _, attribute = self.target.partition(":")
        value: Any = importlib.import_module(module)
        for part in attribute.split(".") if attribute else ():
            value = getattr(value, part)
        return value
