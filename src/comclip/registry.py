"""Named choices of the pipeline (weightings, fills, score modes, parsers, grounders, datasets),
all kept the same way: a :class:`Registry` maps each name to the function that implements it.

A new choice is one function registered under its name in the module that owns the registry;
the command line takes its ``choices`` from the registry and the typed pipeline configuration
validates against it, so nothing else needs to change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from .errors import InputError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Names -> implementations of one kind of choice, in registration order.

    Looking up an unknown name is an :class:`~comclip.errors.InputError` that lists the
    names there are, so a typo on the command line or in a config gets one clear line.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@FILLS.register("black")`` adds the function under that name."""

        def add(item: T) -> T:
            self._items[name] = item
            return item

        return add

    def add(self, name: str, item: T) -> None:
        self._items[name] = item

    def check(self, name: str) -> str:
        """``name`` if registered, else the error naming the choices."""
        if name not in self._items:
            raise InputError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._items)}")
        return name

    def __getitem__(self, name: str) -> T:
        return self._items[self.check(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"
