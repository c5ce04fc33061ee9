"""Exceptions that carry a message meant for the user.

The CLI turns :class:`InputError` into exit code 2 (a usage error, as argparse does) and
any other :class:`ComclipError` into exit code 1, printing only the message: a user who
passed a bad image or an unknown model name should read what is wrong, not a traceback.
"""

from __future__ import annotations


class ComclipError(Exception):
    """Base class for errors whose message is written for the person running comclip."""


class InputError(ComclipError):
    """Something the user supplied (an image, a caption, a model name, a data row) is unusable.

    Its own branch, not a :class:`ValueError`: code that catches ``ValueError`` (a library's
    parsing error) never swallows a user's mistake, and a bug's ``ValueError`` is never read
    as one."""


class ModelNotFoundError(InputError):
    """A model name that resolves to nothing: not registered, not a directory, not reachable."""
